"""Who speaks: one identity per ``from_id``, one clean ChatML role name each, and the owner.

A person who renamed keeps their latest name. Names become ChatML roles, so they are made safe: one
line, no control tokens, bounded length, never empty, and unique (a collision gets `` (2)``, `` (3)``
in order of message count, so the busiest keeps the plain name and the owner always does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from doppel.chatml import neutralise
from doppel.errors import InputError
from training.telegram.messages import DELETED_ACCOUNT

MAX_NAME_LENGTH = 48
_WHITESPACE_RUN = re.compile(r"\s+")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def clean_role_name(name: str) -> str:
    """A display name made usable as a ChatML role."""
    name = _UNPRINTABLE.sub(" ", neutralise(name))
    name = _WHITESPACE_RUN.sub(" ", name).strip()
    if len(name) > MAX_NAME_LENGTH:
        name = name[:MAX_NAME_LENGTH].rstrip()
    return name


@dataclass(slots=True)
class Speaker:
    """Everything known about one sender; ``name`` is filled in by :meth:`SpeakerRegistry.finalise`."""

    id: str
    latest_name: str = ""
    latest_date: int = -1
    messages: int = 0
    turns: int = 0
    chats: set[int] = field(default_factory=set)
    names_seen: set[str] = field(default_factory=set)
    name: str = ""


class SpeakerRegistry:
    def __init__(self) -> None:
        self.speakers: dict[str, Speaker] = {}

    def observe(self, speaker_id: str, name: str, date: int, chat_index: int, messages: int = 1) -> None:
        """Count ``messages`` messages sent by ``speaker_id`` under ``name`` at ``date`` in a chat."""
        speaker = self.speakers.get(speaker_id)
        if speaker is None:
            speaker = self.speakers[speaker_id] = Speaker(speaker_id)
        speaker.messages += messages
        speaker.chats.add(chat_index)
        if name not in speaker.names_seen:
            speaker.names_seen.add(name)
        # A later "Deleted Account" must not overwrite the last real name we saw.
        if date >= speaker.latest_date and (name != DELETED_ACCOUNT or not speaker.latest_name):
            speaker.latest_name, speaker.latest_date = name, date

    def finalise(self, owner_id: str | None) -> dict[str, str]:
        """Assign unique role names; returns ``{speaker id: role name}``."""
        ordered = sorted(self.speakers.values(), key=lambda s: (s.id != owner_id, -s.messages, s.id))
        taken: set[str] = set()
        names: dict[str, str] = {}
        for speaker in ordered:
            base = clean_role_name(speaker.latest_name) or f"User {speaker.id.removeprefix('user')}"
            name, suffix = base, 2
            while name.casefold() in taken:
                name, suffix = f"{base} ({suffix})", suffix + 1
            taken.add(name.casefold())
            speaker.name = names[speaker.id] = name
        return names


def resolve_owner(registry: SpeakerRegistry, me: str | None, export_owner_ids: set[str], source: str) -> str:
    """The owner's speaker id: ``--me`` if given, else the exports' ``personal_information.user_id``.

    Raises an :class:`InputError` that lists the likeliest candidates when neither settles it.
    """
    speakers = registry.speakers
    if me is not None:
        wanted = me.strip()
        for candidate in (wanted, f"user{wanted}"):
            if candidate in speakers:
                return candidate
        folded = wanted.casefold()
        matches = [s.id for s in speakers.values() if any(n.casefold() == folded for n in s.names_seen)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise InputError(
                f"{source}: --me {me!r} matches several people: {_describe(registry, matches)}; pass the id instead"
            )
        raise InputError(f"{source}: --me {me!r} matches nobody in the export; candidates: {_candidates(registry)}")
    if len(export_owner_ids) == 1:
        return next(iter(export_owner_ids))
    if len(export_owner_ids) > 1:
        raise InputError(
            f"{source}: the exports belong to different accounts ({', '.join(sorted(export_owner_ids))}); "
            "prepare them separately or pass --me"
        )
    raise InputError(
        f"{source}: cannot tell whose export this is; pass --me NAME_OR_ID, one of: {_candidates(registry)}"
    )


def _candidates(registry: SpeakerRegistry, limit: int = 5) -> str:
    # The owner is in every chat of their export: rank by chats, then by messages.
    ranked = sorted(registry.speakers.values(), key=lambda s: (-len(s.chats), -s.messages, s.id))[:limit]
    return _describe(registry, [s.id for s in ranked]) or "(no speakers found)"


def _describe(registry: SpeakerRegistry, ids: list[str]) -> str:
    parts = []
    for speaker_id in ids:
        speaker = registry.speakers[speaker_id]
        parts.append(
            f"{speaker.latest_name!r} ({speaker_id}, {speaker.messages} messages in {len(speaker.chats)} chats)"
        )
    return "; ".join(parts)
