"""doppel: turn a Telegram history into a bot that writes like its owner.

The shared core every stage uses: the program version and where state lives (``doppel.paths``).
The command line is ``doppel.cli``; run ``doppel --help``.
"""

__version__ = "0.1.0"
