"""The prompt for the persona's next turn: memory examples, then the newest turns that fit, then the open turn.

    prompt = build_prompt(turns, persona, count, budget=context_size - max_tokens, examples=())

Every turn is rendered by the one ChatML module (:mod:`doppel.chatml`) and cut into pieces whose tokens never
depend on their neighbours: the header (``<|im_start|>Name\\n``, control tokens real), the message marker
``>>>``, the rest of the body (`` first message\\n>>> second``, control tokens inert), and the closing
``<|im_end|>\\n``. So a turn costs the same tokens wherever it stands, a backend that keeps a chat's KV cache can
reuse everything up to the first changed piece, and the rest of the body of a reply is exactly the text the
model generated after ``>>>``.

**Rolling context.** When the turns no longer fit the budget, the oldest are dropped in one large block, down to
half the budget, instead of one by one: the kept prefix then stays the same for many turns, and so does its
cache. Where the cut falls depends only on the turns themselves (it is replayed over the history), never on
what was cached, so a fresh prompt and a reused one are the same prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from doppel.chatml import IM_END, MESSAGE_PREFIX, TURN_SEPARATOR, neutralise, turn_body, turn_header
from serving.engine.types import ChatTurn, Prompt, PromptPiece

MARKER = MESSAGE_PREFIX.rstrip()  # ">>>": the reply's text starts with the space after it
CLOSING = PromptPiece(IM_END + TURN_SEPARATOR, special=True)
KEEP_AFTER_TRIM = 0.5  # of the budget, when the oldest turns are dropped


def speaker_role(name: str) -> str:
    """A name as a turn header may hold it: control tokens inert, on one line (a name comes from users too)."""
    return " ".join(neutralise(name).split()) or "?"


def turn_pieces(speaker: str, messages: Sequence[str]) -> tuple[PromptPiece, ...]:
    """One finished turn, as pieces that render to exactly :func:`doppel.chatml.render_turn`.

    Message text is neutralised as prepare neutralises it for training: a line that starts like ``>>> `` stays
    inside its message, and a control token typed by a user is only text.
    """
    body = turn_body([neutralise(message) for message in messages])
    return (
        PromptPiece(turn_header(speaker_role(speaker)), special=True),
        PromptPiece(MARKER, special=False),
        PromptPiece(body[len(MARKER) :], special=False),
        CLOSING,
    )


def opening_pieces(persona: str) -> tuple[PromptPiece, ...]:
    """The persona's turn, opened: what the model continues."""
    return (PromptPiece(turn_header(speaker_role(persona)), special=True), PromptPiece(MARKER, special=False))


def handoff_pieces(partner: str) -> tuple[PromptPiece, ...]:
    """What follows the persona's reply when the other side answers: the reply closed, ``partner``'s turn opened.

    Known before the other side writes anything, so a backend can compute it while the chat is idle.
    """
    return (CLOSING, *opening_pieces(partner))


def first_kept_turn(costs: Sequence[int], budget: int) -> int:
    """Index of the oldest turn the prompt keeps: replayed over the history, dropping blocks when over budget."""
    first, total = 0, 0
    for index, cost in enumerate(costs):
        total += cost
        if total > budget:
            while total > budget * KEEP_AFTER_TRIM and first < index:
                total -= costs[first]
                first += 1
    return first


def build_prompt(
    turns: Sequence[ChatTurn],
    persona: str,
    count: Callable[[PromptPiece], int],
    budget: int,
    examples: Sequence[Sequence[ChatTurn]] = (),
) -> tuple[Prompt, int]:
    """The prompt for ``persona``'s next turn, and how many of ``turns`` it dropped from the front.

    ``budget`` is what the prompt may take (the context size less the reply's tokens); ``examples`` (memory's
    past exchanges) go first and are dropped, whole, last to first, before any live turn is.
    """
    opening = opening_pieces(persona)
    rendered = [turn_pieces(turn.speaker, turn.messages) for turn in turns if turn.messages]
    costs = [sum(map(count, pieces)) for pieces in rendered]
    example_pieces = [
        tuple(p for turn in example for p in turn_pieces(turn.speaker, turn.messages)) for example in examples
    ]
    example_costs = [sum(map(count, pieces)) for pieces in example_pieces]
    room = budget - sum(map(count, opening))
    newest = costs[-1] if costs else 0
    while example_costs and sum(example_costs) + newest > room * KEEP_AFTER_TRIM:
        example_pieces.pop()
        example_costs.pop()
    room -= sum(example_costs)
    first = first_kept_turn(costs, room)
    pieces = [piece for example in example_pieces for piece in example]
    pieces += [piece for turn in rendered[first:] for piece in turn]
    return Prompt(tuple(pieces) + opening), first
