"""What the engine is asked and what it answers: a conversation in, the persona's next turn out.

    request = ReplyRequest(chat_id="tg:42", turns=(ChatTurn("Anna", ("hi", "free tonight?"), time=1.7e9),),
                           persona="Olga", partner="Anna")

The terminal chat, the bot and the evaluation all speak this language; they never see tokens, KV caches or
HTTP. A backend (llama.cpp in-process, or an OpenAI-compatible server) only ever gets a :class:`Prompt`: the
rendered pieces of ChatML, in order, so that the same conversation always gives the same prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One speaker's burst: their messages in order, and when the burst ended (unix seconds), if known."""

    speaker: str
    messages: tuple[str, ...]
    time: float | None = None


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """Write ``persona``'s next turn in chat ``chat_id``, whose turns so far are ``turns`` (oldest first).

    ``partner`` is the name the other side plays (the bot passes the user's name; ``doppel chat --as NAME``).
    """

    chat_id: str
    turns: tuple[ChatTurn, ...]
    persona: str
    partner: str


@dataclass(frozen=True, slots=True)
class PromptPiece:
    """A piece of ChatML text: a turn header (``special``: its control tokens are real) or a turn's body."""

    text: str
    special: bool


@dataclass(frozen=True)
class Prompt:
    """The pieces of a prompt in order; the last one opens the persona's turn (``<|im_start|>persona\\n>>> ``)."""

    pieces: tuple[PromptPiece, ...]

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self.pieces)


@dataclass(frozen=True)
class Sampling:
    """How one reply is sampled; ``temperature == 0`` is greedy (and deterministic)."""

    temperature: float = 0.8
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 256
    max_tokens: int = 160
    seed: int = 0


@dataclass
class Generation:
    """What a backend produced for one prompt: the text and how many tokens, and why it stopped."""

    text: str
    tokens: int
    stop: str  # "end" (the turn ended), "length" (max_tokens), "cancelled"
    prompt_tokens: int = 0
    reused_tokens: int = 0  # of prompt_tokens, how many came from the chat's cached state
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "first_token", "total"


class Backend(Protocol):
    """Runs one prompt to the end of the persona's turn. Called from the engine's single worker thread only."""

    def count_tokens(self, piece: PromptPiece) -> int:
        """Tokens this piece takes in the prompt (the engine trims the context by this)."""
        ...

    def generate(
        self,
        chat_id: str,
        prompt: Prompt,
        sampling: Sampling,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> Generation:
        """Generate until ``<|im_end|>`` (never a new turn header), ``max_tokens``, or ``cancelled()``.

        ``on_text`` hears the text as it comes. ``chat_id`` lets a backend keep that chat's state for the next
        call (the KV cache of its prefix).
        """
        ...

    @property
    def context_size(self) -> int:
        """Tokens one chat's prompt and reply may take together."""
        ...

    def close(self) -> None: ...


# A backend may also offer ``prefetch(chat_id, pieces) -> int``: decode ``pieces`` into the chat's cached state
# ahead of the next prompt (see serving.engine.llama.LlamaBackend.prefetch). The engine calls it when idle.
