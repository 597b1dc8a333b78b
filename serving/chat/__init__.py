"""``doppel chat``: a terminal chat with a persona, over the engine (the engine issue builds it)."""
