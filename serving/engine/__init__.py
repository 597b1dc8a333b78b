"""The reply engine: given a conversation and a persona, the persona's next turn (the engine issue builds it)."""
