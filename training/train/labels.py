"""Token ids and loss labels for a session, built from the shared ChatML pieces.

Each turn is tokenized piece by piece, exactly as :mod:`doppel.chatml` renders it::

    <|im_start|>Name\\n      header     never supervised (who speaks next is trivial to predict)
    >>> a\\n>>> b           body       supervised when the speaker is in the loss scope
    <|im_end|>             end        supervised with the body: the model must learn to stop
    \\n                     separator  never supervised

so the boundaries come from the renderer, not from searching the text. The ids equal tokenizing the whole
rendered session (tests assert it for the bases we ship). Loss scopes: ``all`` (every speaker), ``owner``,
``personas:NAME,NAME``. Library only; :mod:`training.train.data` tokenizes the splits with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from doppel.chatml import IM_END, IM_START, TURN_SEPARATOR, Turn, turn_body, turn_header

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""The label PyTorch's cross-entropy (and transformers' loss) skips."""

CHAT_TOKENS = (IM_START, IM_END)
SCOPE_ALL = "all"
SCOPE_OWNER = "owner"
SCOPE_PERSONAS = "personas"


@dataclass(frozen=True)
class LossScope:
    """Whose turns are supervised: everyone's, the owner's, or a named set of speakers."""

    kind: Literal["all", "owner", "personas"] = "all"
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> LossScope:
        """``all`` | ``owner`` | ``personas:NAME,NAME`` → a scope; anything else raises ``ValueError``."""
        text = text.strip()
        if text in (SCOPE_ALL, SCOPE_OWNER):
            return cls(kind=text)  # type: ignore[arg-type]
        kind, sep, rest = text.partition(":")
        if kind == SCOPE_PERSONAS and sep:
            names = tuple(dict.fromkeys(name.strip() for name in rest.split(",") if name.strip()))
            if names:
                return cls(kind=SCOPE_PERSONAS, names=names)
        raise ValueError(f"loss scope {text!r}: expected 'all', 'owner' or 'personas:NAME,NAME'")

    def __str__(self) -> str:
        return f"{SCOPE_PERSONAS}:{','.join(self.names)}" if self.kind == SCOPE_PERSONAS else self.kind

    def supervises(self, speaker: str, owner: str) -> bool:
        if self.kind == SCOPE_ALL:
            return True
        if self.kind == SCOPE_OWNER:
            return speaker == owner
        return speaker in self.names


@dataclass(frozen=True)
class TokenizedSession:
    """One session's ids and labels (``IGNORE_INDEX`` where not supervised), equal length."""

    input_ids: list[int]
    labels: list[int]
    n_supervised: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_supervised", sum(label != IGNORE_INDEX for label in self.labels))

    def __len__(self) -> int:
        return len(self.input_ids)


def missing_chat_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The ChatML control tokens that the tokenizer does not have as single tokens."""
    vocab = tokenizer.get_vocab()
    return [token for token in CHAT_TOKENS if token not in vocab]


def add_chat_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Add ``<|im_start|>``/``<|im_end|>`` as special tokens where missing; returns those added.

    The caller must then resize the model's embeddings (see :mod:`training.train.model`).
    """
    missing = missing_chat_tokens(tokenizer)
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    return missing


def as_turns(turns: Iterable[Turn | Mapping[str, Any]]) -> list[Turn]:
    """Dataset rows carry turns as ``{speaker, messages}`` dicts; the renderer takes :class:`Turn`."""
    return [
        turn if isinstance(turn, Turn) else Turn(speaker=turn["speaker"], messages=tuple(turn["messages"]))
        for turn in turns
    ]


class SessionTokenizer:
    """Tokenizes sessions into ids + labels for one tokenizer, loss scope and owner."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, scope: LossScope, owner: str) -> None:
        missing = missing_chat_tokens(tokenizer)
        if missing:
            raise ValueError(f"the tokenizer lacks {', '.join(missing)}; call add_chat_tokens first")
        self.tokenizer = tokenizer
        self.scope = scope
        self.owner = owner
        self.im_end_id: int = tokenizer.convert_tokens_to_ids(IM_END)
        self.separator_ids: list[int] = self._encode([TURN_SEPARATOR])[0]
        self.prefix_ids: list[int] = self._special_prefix()
        self._headers: dict[str, list[int]] = {}

    def __call__(self, turns: Iterable[Turn | Mapping[str, Any]]) -> TokenizedSession:
        return self.many([turns])[0]

    def many(self, sessions: Iterable[Iterable[Turn | Mapping[str, Any]]]) -> list[TokenizedSession]:
        """Tokenize many sessions with one batched tokenizer call for all their turn bodies."""
        sessions = [as_turns(turns) for turns in sessions]
        bodies = self._encode([turn_body(turn.messages) for turns in sessions for turn in turns])
        self._cache_headers({turn.speaker for turns in sessions for turn in turns})
        result = []
        body_iter = iter(bodies)
        for turns in sessions:
            ids: list[int] = list(self.prefix_ids)
            labels: list[int] = [IGNORE_INDEX] * len(ids)
            for turn in turns:
                header = self._headers[turn.speaker]
                body = [*next(body_iter), self.im_end_id]
                supervised = self.scope.supervises(turn.speaker, self.owner)
                ids += header
                labels += [IGNORE_INDEX] * len(header)
                ids += body
                labels += body if supervised else [IGNORE_INDEX] * len(body)
                ids += self.separator_ids
                labels += [IGNORE_INDEX] * len(self.separator_ids)
            result.append(TokenizedSession(input_ids=ids, labels=labels))
        return result

    def matches_whole_text(self, turns: Iterable[Turn | Mapping[str, Any]], text: str) -> bool:
        """Whether the piecewise ids equal tokenizing ``text`` (the rendered session) in one go."""
        whole = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self(turns).input_ids == [*self.prefix_ids, *whole]

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return list(self.tokenizer(list(texts), add_special_tokens=False)["input_ids"])

    def _cache_headers(self, speakers: set[str]) -> None:
        new = sorted(speaker for speaker in speakers if speaker not in self._headers)
        for speaker, ids in zip(new, self._encode([turn_header(speaker) for speaker in new]), strict=True):
            self._headers[speaker] = ids

    def _special_prefix(self) -> list[int]:
        """What the tokenizer puts before a text on its own (a BOS for Llama-style tokenizers, else nothing).

        A session starts like a fresh prompt, so it starts with what the engine's tokenizer adds to one.
        """
        probe = "a"
        plain = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(probe)["input_ids"]
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return list(full[:start])
        return []
