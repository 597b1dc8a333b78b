"""The chat types a Telegram Desktop export names (``chats.list[].type``), and those prepare reads by default."""

from __future__ import annotations

ALL_CHAT_TYPES = (
    "personal_chat",
    "private_group",
    "private_supergroup",
    "public_supergroup",
    "private_channel",
    "public_channel",
    "bot_chat",
    "saved_messages",
    "replies",
    "verification_codes",
)
# Conversations the owner takes part in: channels are broadcasts, bots and saved messages are not dialogue.
DEFAULT_CHAT_TYPES = ("personal_chat", "private_group", "private_supergroup")
