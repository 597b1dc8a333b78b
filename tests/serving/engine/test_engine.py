"""The engine's contract: replies as streams or messages, never blocking the loop, newest request per chat wins.

The queue logic runs against a scripted backend behind the real Backend protocol (it answers instantly or waits
for a signal); the last test goes through the real llama.cpp backend end to end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serving.engine.engine import Engine, EngineClosedError, ReplacedError
from serving.engine.llama import LlamaBackend
from serving.engine.personas import PersonaList
from serving.engine.types import ChatTurn, PromptPiece, ReplyRequest, Sampling
from tests.helpers.engines import ScriptedBackend
from tests.serving.conftest import PERSONAS


def request(chat_id: str, text: str = "free tonight?") -> ReplyRequest:
    return ReplyRequest(chat_id, (ChatTurn("Anna", (text,)),), "Olga", "Anna")


def engine_over(backend: ScriptedBackend) -> Engine:
    return Engine(backend, PersonaList.from_records(PERSONAS, "test"), sampling=Sampling(max_tokens=32))


async def test_a_reply_is_its_messages_and_a_stream_is_its_text() -> None:
    async with engine_over(ScriptedBackend()) as engine:
        reply = await engine.reply(request("a"))
        assert reply.messages == ["hi", "see you at 7"] and reply.generation.stop == "end"
        assert "".join([text async for text in engine.stream(request("a"))]) == " hi\n>>> see you at 7"


async def test_the_prompt_is_the_conversation_then_the_persona_opened() -> None:
    backend = ScriptedBackend()
    async with engine_over(backend) as engine:
        await engine.reply(request("a", "lunch?"))
    assert backend.prompts[0].text.endswith("<|im_start|>Anna\n>>> lunch?<|im_end|>\n<|im_start|>Olga\n>>>")


async def test_the_event_loop_runs_while_a_reply_is_generated() -> None:
    backend = ScriptedBackend(held="slow")
    async with engine_over(backend) as engine:
        pending = asyncio.ensure_future(engine.reply(request("slow")))
        ticks = 0
        while not backend.started:
            await asyncio.sleep(0.001)
        for _ in range(20):
            await asyncio.sleep(0.001)
            ticks += 1
        assert ticks == 20 and not pending.done()
        backend.release.set()
        assert (await pending).messages == ["hi", "see you at 7"]


async def test_a_newer_request_for_a_chat_replaces_the_one_still_waiting() -> None:
    backend = ScriptedBackend(held="busy")
    async with engine_over(backend) as engine:
        busy = asyncio.ensure_future(engine.reply(request("busy")))
        while not backend.started:
            await asyncio.sleep(0.001)
        older = asyncio.ensure_future(engine.reply(request("a", "first")))
        newer = asyncio.ensure_future(engine.reply(request("a", "first, and then more")))
        other = asyncio.ensure_future(engine.reply(request("b")))
        await asyncio.sleep(0.01)
        backend.release.set()
        with pytest.raises(ReplacedError):
            await older
        assert (await newer).messages and (await other).messages and (await busy).messages
    assert backend.started == ["busy", "a", "b"]  # the replaced request never ran
    assert "first, and then more" in backend.prompts[1].text


async def test_cancelling_the_waiting_task_stops_the_reply() -> None:
    backend = ScriptedBackend(answer=" " + " ".join(["word"] * 2000))
    async with engine_over(backend) as engine:
        task = asyncio.ensure_future(engine.reply(request("a")))
        while not backend.started:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while not backend.stops:
            await asyncio.sleep(0.001)
        assert backend.stops == ["cancelled"]  # stopped at the next piece, not after 2,000 of them
        backend.answer = " ok"
        assert (await engine.reply(request("b"))).messages == ["ok"]  # and the worker is free again


async def test_the_real_backend_streams_a_turn_through_the_engine(smollm2_gguf: Path) -> None:
    backend = LlamaBackend(smollm2_gguf, context_size=512, chats=2, threads=2)
    async with Engine(
        backend, PersonaList.from_records(PERSONAS, "test"), sampling=Sampling(temperature=0, max_tokens=32)
    ) as engine:
        streamed = "".join([text async for text in engine.stream(request("real"))])
        reply = await engine.reply(request("real"))
    assert reply.generation.text == streamed and reply.generation.reused_tokens > 0
    assert all("<|im_" not in message and message.strip() for message in reply.messages)


class PrefetchingBackend(ScriptedBackend):
    def __init__(self) -> None:
        super().__init__()
        self.prefetched: list[tuple[str, str]] = []

    def prefetch(self, chat_id: str, pieces: tuple[PromptPiece, ...]) -> int:
        self.prefetched.append((chat_id, "".join(piece.text for piece in pieces)))
        return len(pieces)


async def test_an_idle_engine_prepares_what_the_other_side_will_start_with() -> None:
    backend = PrefetchingBackend()
    async with engine_over(backend) as engine:
        await engine.reply(request("a"))
        while not backend.prefetched:
            await asyncio.sleep(0.001)
    assert backend.prefetched == [("a", "<|im_end|>\n<|im_start|>Anna\n>>>")]


async def test_closing_fails_what_waits_stops_what_runs_and_refuses_more() -> None:
    backend = ScriptedBackend(held="busy")
    engine = engine_over(backend)
    busy = asyncio.ensure_future(engine.reply(request("busy")))
    while not backend.started:
        await asyncio.sleep(0.001)
    queued = asyncio.ensure_future(engine.reply(request("a")))
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(engine.aclose())
    with pytest.raises(EngineClosedError):
        await queued
    backend.release.set()
    await closing
    assert (await busy).generation.stop == "cancelled" and backend.started == ["busy"]
    with pytest.raises(EngineClosedError):
        await engine.reply(request("b"))
