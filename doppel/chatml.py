"""The one ChatML rendering of a conversation, shared by training, evaluation and serving.

A turn is one speaker's burst of consecutive messages, each on its own ``>>> `` line::

    <|im_start|>Anna
    >>> hi
    >>> are you coming tonight?<|im_end|>

A message that itself spans several lines keeps its inner newlines; only a message's first line carries
the ``>>> `` marker, and :func:`neutralise` turns a ``>>> `` that the text itself starts a line with into a
look-alike, so a message always reads back as one message. Speaker names are the roles. Any change here
changes every stage at once, which is the point: the trainer's loss mask, the evaluator and the bot's prompt
builder all call these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
MESSAGE_PREFIX = ">>> "
TURN_SEPARATOR = "\n"

# Anything shaped like a special token of the ChatML family (<|im_start|>, <|endoftext|>, <|eot_id|>...)
# plus the sentencepiece-style sentence markers. Text that contains them could forge a turn or end one.
_CONTROL_TOKEN = re.compile(r"<\|([^<>|\n]{0,48})\|>|</?s>")
_FULLWIDTH_BAR = "\uff5c"  # "｜": reads the same to a person, never matches a tokenizer's special token.
# A line of the text itself that starts like a message would split the message in two when read back.
# (An empty message, a bare ">>>" line, would read back as one too.)
_PREFIX_AT_LINE_START = re.compile(r"^>>>(?: |$)", re.MULTILINE)
PREFIX_LOOKALIKE = ">>>\u00a0"  # a no-break space: reads the same, never matches MESSAGE_PREFIX


def neutralise(text: str) -> str:
    """Make text inert inside ChatML: control tokens (``<|im_end|>`` becomes ``<｜im_end｜>``, ``</s>``
    becomes ``<∕s>``) and line starts that look like a message's (``>>> `` becomes ``>>>`` and a no-break space).
    """
    if "<" in text:
        text = _CONTROL_TOKEN.sub(_defuse, text)
    if ">>>" in text:
        text = _PREFIX_AT_LINE_START.sub(PREFIX_LOOKALIKE, text)
    return text


def _defuse(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return f"<{_FULLWIDTH_BAR}{match.group(1)}{_FULLWIDTH_BAR}>"
    return match.group(0).replace("/", "\u2215").replace("s", "\u0455")


def turn_header(speaker: str) -> str:
    """The unsupervised opening of a turn: who speaks next."""
    return f"{IM_START}{speaker}\n"


def turn_body(messages: Sequence[str]) -> str:
    """The supervised content of a turn, without its closing token: one ``>>> `` line per message."""
    return "\n".join(MESSAGE_PREFIX + message for message in messages)


_BETWEEN_MESSAGES = "\n" + MESSAGE_PREFIX


def render_turn(speaker: str, messages: Sequence[str]) -> str:
    """One complete turn, closing token and separator included."""
    # Equal to turn_header(speaker) + turn_body(messages) + IM_END + TURN_SEPARATOR, in one join: prepare
    # renders every turn of a million-message export through here.
    if not messages:
        return f"{IM_START}{speaker}\n{IM_END}{TURN_SEPARATOR}"
    return f"{IM_START}{speaker}\n{MESSAGE_PREFIX}{_BETWEEN_MESSAGES.join(messages)}{IM_END}{TURN_SEPARATOR}"


_HEADER_END = b"\n"
_FIRST_PREFIX_BYTES = MESSAGE_PREFIX.encode()
_BETWEEN_MESSAGES_BYTES = _BETWEEN_MESSAGES.encode()
_TURN_END_BYTES = (IM_END + TURN_SEPARATOR).encode()


def encoded_turn_header(speaker: bytes) -> bytes:
    """:func:`turn_header` of a UTF-8 speaker name, as UTF-8."""
    return IM_START.encode() + speaker + _HEADER_END


def render_encoded_turn(header: bytes, messages: Sequence[bytes]) -> bytes:
    """``render_turn(speaker, messages).encode()``, from UTF-8 pieces, without decoding anything.

    ``header`` is :func:`encoded_turn_header` of the speaker. prepare's byte path renders every turn of an
    export through here; a property test pins it to :func:`render_turn`.
    """
    if not messages:
        return header + _TURN_END_BYTES
    return b"".join((header, _FIRST_PREFIX_BYTES, _BETWEEN_MESSAGES_BYTES.join(messages), _TURN_END_BYTES))


@dataclass(frozen=True, slots=True)
class Turn:
    """A speaker and the messages of one burst, in order."""

    speaker: str
    messages: tuple[str, ...]


def render_session(turns: Iterable[Turn]) -> str:
    """A whole conversation as ChatML text."""
    return "".join(render_turn(turn.speaker, turn.messages) for turn in turns)


def split_messages(body: str) -> list[str]:
    """Inverse of :func:`turn_body`: the messages of a generated turn body.

    Text before the first marker (a model that forgot the prefix) counts as a message of its own.
    """
    messages: list[str] = []
    for line in body.split("\n"):
        if line.startswith(MESSAGE_PREFIX) or line == MESSAGE_PREFIX.rstrip():
            messages.append(line[len(MESSAGE_PREFIX) :])
        elif messages:
            messages[-1] += "\n" + line
        elif line.strip():
            messages.append(line)
    return [message for message in messages if message.strip()]
