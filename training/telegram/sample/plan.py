"""What a chat to write is made of: its members, their styles, its size and timing, and its edge cases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from training.telegram.sample.templates import Style
from training.telegram.sample.vocabulary import TOPICS, Topic
from training.telegram.sample.writer import Chat, Peer

NO_NAME = object()  # saved_messages, replies and verification_codes chats have no "name" key at all
#: Writes one scripted message (an edge case) into a chat.
Special = Callable[[Chat], Any]


@dataclass
class Member:
    """One speaker in a chat: who, in which style, how often (relative to the others), and whether they react."""

    peer: Peer
    style: Style
    weight: float = 1.0
    reacts: bool = True


@dataclass
class Plan:
    """One chat to write: who speaks how, how big it is, and which edge cases it must contain."""

    name: object  # str, None (a deleted account), or NO_NAME
    type: str
    id: int
    members: list[Member]
    weight: float
    alternate: bool = False  # personal and bot chats: speakers take turns
    opener: int | None = None  # the member who always starts a conversation (the owner, in a bot chat)
    turns: tuple[int, int] = (2, 10)
    span_days: int = 240
    min_conv_gap: int = 2 * 3600  # below this, two conversations would read as one
    conv_len: float = 10.0
    first_id: int = 1
    skip_rate: float = 0.05
    skip_max: int = 3
    reply_rate: float = 0.04
    reaction_rate: float = 0.01
    call_rate: float = 0.0
    edit_rate: float = 0.02
    decorate_rate: float = 0.03
    topics: tuple[Topic, ...] = TOPICS
    reply_peer: str = ""
    left: bool = False
    first: Sequence[Special] = ()
    specials: Sequence[Special] = ()
    on_midpoint: Callable[[Chat], None] | None = None

    @property
    def minimum(self) -> int:
        """The fewest messages the chat can have: its scripted ones plus two ordinary ones."""
        return len(self.first) + len(self.specials) + 2
