"""Turn one raw Telegram message into what doppel learns from, or a reason to drop it.

Rules (the defaults of ``doppel prepare``):
- text may be a string or a list of strings and entity objects; its flat text is the concatenation;
- a sticker becomes its emoji; media with a caption keep the caption;
- media without a caption, polls, contacts, locations, games, invoices, dice, service messages (calls
  included), messages sent ``via_bot`` and forwarded messages are dropped, each counted by reason;
- ``from: null`` is a deleted account; an edited message already carries its final text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import msgspec

from training.telegram.stream import RawMessage

DELETED_ACCOUNT = "Deleted Account"


class Drop(StrEnum):
    """Why a message was not kept. The values appear in the report and the manifest."""

    SERVICE = "service message"
    FORWARDED = "forwarded"
    VIA_BOT = "sent via a bot"
    MEDIA_WITHOUT_TEXT = "media without caption"
    STICKER_WITHOUT_EMOJI = "sticker without emoji"
    POLL = "poll"
    CONTACT = "contact"
    LOCATION = "location"
    OTHER_MEDIA = "game, invoice or dice"
    EMPTY = "empty text"
    MALFORMED = "malformed"
    DUPLICATE = "duplicate"
    OUT_OF_RANGE = "outside --since/--until"
    BLOCKLISTED = "blocklisted"


class Message(msgspec.Struct, frozen=True, gc=False):
    """A message worth learning from. (A struct, not a dataclass: a million are made per run.)"""

    id: int
    date: int  # unix seconds
    speaker_id: str
    speaker_name: str
    text: str


def message_date(raw: RawMessage) -> int | None:
    """Unix seconds: ``date_unixtime`` when present, else ``date`` read as UTC (older exports lack the former)."""
    stamp = raw.date_unixtime
    if isinstance(stamp, str):
        try:
            return int(stamp)
        except ValueError:
            return None
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        return stamp
    if isinstance(raw.date, str):
        try:
            return int(datetime.fromisoformat(raw.date).replace(tzinfo=UTC).timestamp())
        except ValueError:
            return None
    return None


def flat_text(text: object) -> str | None:
    """The plain text of a ``text`` field, or None when it has neither of Telegram's two shapes."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        parts: list[str] = []
        for part in text:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                return None
        return "".join(parts)
    return None


def speaker_of(raw: RawMessage) -> tuple[str, str] | None:
    """``(speaker id, display name)``; None when the message names no sender at all."""
    sender = raw.sender
    from_id = raw.from_id
    if isinstance(from_id, int) and not isinstance(from_id, bool):
        from_id = f"user{from_id}"
    if sender is None:
        name = DELETED_ACCOUNT
    elif isinstance(sender, str):
        name = sender
    elif sender is msgspec.UNSET:
        name = ""
    else:
        return None
    if isinstance(from_id, str) and from_id:
        return from_id, name
    if name and name != DELETED_ACCOUNT:
        return f"name:{name}", name  # no from_id: old exports; the name is all we have
    return None


def normalise(raw: RawMessage, *, keep_forwarded: bool = False) -> Message | Drop:
    """Apply the rules in the module docstring."""
    if raw.type == "service" or raw.action is not None:
        return Drop.SERVICE
    if raw.type != "message" or not isinstance(raw.id, int) or isinstance(raw.id, bool):
        return Drop.MALFORMED
    if not keep_forwarded and (raw.forwarded_from is not msgspec.UNSET or raw.saved_from is not msgspec.UNSET):
        return Drop.FORWARDED
    if raw.via_bot is not msgspec.UNSET:
        return Drop.VIA_BOT
    date = message_date(raw)
    speaker = speaker_of(raw)
    text = flat_text(raw.text)
    if date is None or speaker is None or text is None:
        return Drop.MALFORMED
    if raw.media_type == "sticker":
        if raw.sticker_emoji and isinstance(raw.sticker_emoji, str):
            text = raw.sticker_emoji
        else:
            return Drop.STICKER_WITHOUT_EMOJI
    elif not text.strip():
        return _drop_for_empty(raw)
    return Message(id=raw.id, date=date, speaker_id=speaker[0], speaker_name=speaker[1], text=text)


def _drop_for_empty(raw: RawMessage) -> Drop:
    if raw.poll is not None:
        return Drop.POLL
    if raw.contact_information is not None:
        return Drop.CONTACT
    if raw.location_information is not None or raw.place_name is not None:
        return Drop.LOCATION
    if raw.game_title is not None or raw.invoice_information is not None or raw.dice is not None:
        return Drop.OTHER_MEDIA
    if raw.media_type is not None or raw.photo is not None or raw.file is not None:
        return Drop.MEDIA_WITHOUT_TEXT
    return Drop.EMPTY
