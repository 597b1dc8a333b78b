"""``doppel chat``: a terminal chat with a persona over the engine (``cli``), one conversation at a time
(``session``: its turns, ``/persona``, ``/as``, ``/reset``, and how a streamed reply is shown)."""
