"""doppel: turn a Telegram history into a bot that writes like its owner.

This is the core every stage shares, and it imports no stage (its CLI loads them lazily):

- ``doppel.cli``: the ``doppel`` command, one subcommand per stage (``doppel --help``);
- ``doppel.paths``: the one data directory (``$DOPPEL_HOME``); ``doppel.system``: facts about the machine;
- ``doppel.errors``: :class:`~doppel.errors.InputError`, bad input shown as one line and exit code 2;
- ``doppel.settings``: the settings pattern of every stage (a pydantic schema, ``--config FILE``, flags);
- ``doppel.chatml``: the one ChatML rendering, for training, evaluation and serving alike;
- ``doppel.formats``: the files between stages: the prepared dataset, the run directory, GGUF metadata;
- ``doppel.llama_loader``: the only way the project opens a GGUF with llama.cpp.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
