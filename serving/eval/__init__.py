"""``doppel eval``: fine-tuning against in-context examples, on the owner's held-out chats (its issue builds it)."""
