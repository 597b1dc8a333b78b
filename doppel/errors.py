"""Errors that mean "the input is wrong", as opposed to a bug.

The CLI turns an :class:`InputError` into one line on stderr and exit code 2, never a traceback.
The message names the file and, where it applies, the chat and message.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input a user can fix: the message is shown to them verbatim."""


def where(file: object, chat: object | None = None, message_id: object | None = None) -> str:
    """A location prefix such as ``export.json: chat 'Anna' (id 42): message 17``."""
    parts = [str(file)]
    if chat is not None:
        parts.append(f"chat {chat}")
    if message_id is not None:
        parts.append(f"message {message_id}")
    return ": ".join(parts)
