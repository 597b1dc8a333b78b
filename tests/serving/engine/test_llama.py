"""The in-process backend on the real SmolLM2 GGUF: turns end where they should, and reused KV changes nothing.

The equivalence tests follow llama-cpp-python's own: at temperature 0, a reply computed on a chat's cached state
equals the reply to the same prompt computed fresh (a chat id never seen, so nothing is reused), for one chat,
for chats interleaved message by message, and after a chat lost its cache to others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.engine.engine import reply_messages
from serving.engine.llama import LlamaBackend
from serving.engine.prompt import CLOSING, build_prompt, turn_pieces
from serving.engine.types import ChatTurn, Prompt, Sampling

GREEDY = Sampling(temperature=0, max_tokens=24)
LINES = ["hi!", "are you free tonight?", "what about the match?", "lunch tomorrow?", "ok, see you", "bring snacks"]


@pytest.fixture(scope="module")
def backend(smollm2_gguf: Path) -> Iterator[LlamaBackend]:
    llama = LlamaBackend(smollm2_gguf, context_size=1024, chats=8, threads=2)  # room for the fresh chats too
    yield llama
    llama.close()


def prompt_of(turns: list[ChatTurn], backend: LlamaBackend) -> Prompt:
    return build_prompt(turns, "Olga", backend.count_tokens, backend.context_size - GREEDY.max_tokens)[0]


def reply(backend: LlamaBackend, chat_id: str, turns: list[ChatTurn], sampling: Sampling = GREEDY) -> tuple[str, int]:
    generation = backend.generate(chat_id, prompt_of(turns, backend), sampling, lambda _: None, lambda: False)
    return generation.text, generation.reused_tokens


def test_a_reply_ends_with_the_turn_and_never_writes_the_other_side(backend: LlamaBackend) -> None:
    turns = [ChatTurn("Anna", ("hi!", "are you free tonight?"))]
    for seed in range(4):
        sampling = Sampling(temperature=1.0, max_tokens=64, seed=seed)
        generation = backend.generate(
            f"seed-{seed}", prompt_of(turns, backend), sampling, lambda _: None, lambda: False
        )
        assert generation.stop in ("end", "length")
        assert "<|im_start|>" not in generation.text and "<|im_end|>" not in generation.text
    # Right after a closed turn the model's likeliest next token is a new header: it is never sampled.
    closed = Prompt(turn_pieces("Anna", ["hi!"]) + turn_pieces("Olga", ["hey"]))
    assert closed.pieces[-1] == CLOSING
    generation = backend.generate("closed", closed, GREEDY, lambda _: None, lambda: False)
    assert "<|im_start|>" not in generation.text and "im_start" not in generation.text


def test_the_streamed_text_is_the_reply(backend: LlamaBackend) -> None:
    heard: list[str] = []
    prompt = prompt_of([ChatTurn("Anna", ("tell me about your day",))], backend)
    generation = backend.generate("stream", prompt, GREEDY, heard.append, lambda: False)
    assert "".join(heard) == generation.text and generation.tokens > 0
    assert generation.timings["first_token"] <= generation.timings["total"]


def test_cancelling_stops_at_the_next_token(backend: LlamaBackend) -> None:
    heard: list[str] = []
    prompt = prompt_of([ChatTurn("Anna", ("write me a long story",))], backend)
    generation = backend.generate(
        "cancel", prompt, Sampling(temperature=0, max_tokens=64), heard.append, lambda: len(heard) >= 2
    )
    assert generation.stop == "cancelled" and generation.tokens == 2


def conversation(
    backend: LlamaBackend, chat_id: str, opener: int, steps: int
) -> Iterator[tuple[list[ChatTurn], str, int]]:
    """A chat of ``steps`` exchanges: each yields the turns asked, the reply (on the chat's cache), what was reused."""
    turns: list[ChatTurn] = []
    for step in range(steps):
        turns.append(ChatTurn("Anna", (LINES[(opener + step) % len(LINES)],)))
        text, reused = reply(backend, chat_id, turns)
        yield list(turns), text, reused
        turns.append(ChatTurn("Olga", tuple(reply_messages(text, 6)) or ("ok",)))


def test_a_reply_on_reused_state_equals_the_fresh_reply(backend: LlamaBackend) -> None:
    reuses = []
    for step, (turns, text, reused) in enumerate(conversation(backend, "one-chat", 0, 4)):
        assert reply(backend, f"fresh-{step}", turns)[0] == text
        reuses.append(reused)
    assert reuses[0] == 0 and all(reused > 0 for reused in reuses[1:])


def test_interleaved_chats_keep_their_own_state(backend: LlamaBackend) -> None:
    first, second = conversation(backend, "chat-a", 0, 3), conversation(backend, "chat-b", 3, 3)
    for step, ((turns_a, text_a, reused_a), (turns_b, text_b, reused_b)) in enumerate(zip(first, second, strict=True)):
        if step:
            assert reused_a > 0 and reused_b > 0  # each found its own prefix, though the other spoke in between
        assert reply(backend, f"fresh-a-{step}", turns_a)[0] == text_a
        assert reply(backend, f"fresh-b-{step}", turns_b)[0] == text_b


def test_a_chat_evicted_from_the_cache_starts_fresh_and_answers_the_same(smollm2_gguf: Path) -> None:
    single = LlamaBackend(smollm2_gguf, context_size=512, chats=1, threads=2)
    try:
        turns = [ChatTurn("Anna", ("are you free tonight?",))]
        before, _ = reply(single, "a", turns)
        reply(single, "b", [ChatTurn("Anna", ("something else entirely",))])  # takes chat a's only sequence
        after, reused = reply(single, "a", turns)
        assert (after, reused) == (before, 0)
        assert list(single.cached_chats()) == ["a"]
    finally:
        single.close()


def test_what_follows_a_reply_is_computed_ahead_and_changes_no_answer(smollm2_gguf: Path) -> None:
    from serving.engine.prompt import handoff_pieces

    ahead = LlamaBackend(smollm2_gguf, context_size=512, chats=4, threads=2)
    try:
        turns = [ChatTurn("Anna", ("are you free tonight?",))]
        text, _ = reply(ahead, "chat", turns)
        decoded = ahead.prefetch("chat", handoff_pieces("Anna"))
        assert decoded > 0 and ahead.prefetch("nobody", handoff_pieces("Anna")) == 0
        turns += [ChatTurn("Olga", tuple(reply_messages(text, 6))), ChatTurn("Anna", ("ok, when?",))]
        prompt = prompt_of(turns, ahead)
        generation = ahead.generate("chat", prompt, GREEDY, lambda _: None, lambda: False)
        assert generation.text == reply(ahead, "fresh", turns)[0]
        # Everything up to the new message was cached: the reply's ids, its closing and Anna's header.
        assert generation.reused_tokens >= sum(ahead.count_tokens(piece) for piece in prompt.pieces[:-4])
    finally:
        ahead.close()
