"""The reply engine: a conversation in, the persona's next turn out — streamed, or as messages for the bot.

    engine = Engine(backend, personas)
    async for text in engine.stream(request): print(text, end="")        # the terminal
    reply = await engine.reply(request); reply.messages                   # the bot: ["hi", "see you at 7"]

One worker thread runs the backend (llama.cpp is neither thread-safe nor async), so the event loop never
blocks. Requests wait in a queue; a newer request for a chat whose request is still waiting replaces it
(the older one raises :class:`ReplacedError`), and cancelling the awaiting task stops a reply at the next token.
The prompt is built here (:mod:`serving.engine.prompt`), with memory's examples first when there is a memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from doppel.chatml import split_messages
from serving.engine.personas import PersonaList
from serving.engine.prompt import MARKER, build_prompt, handoff_pieces
from serving.engine.types import Backend, ChatTurn, Generation, Prompt, ReplyRequest, Sampling

log = logging.getLogger(__name__)


class ReplacedError(Exception):
    """A newer request for the same chat took this one's place before it started."""


class EngineClosedError(RuntimeError):
    """The engine was closed before this request could run."""


class Examples(Protocol):
    """Memory, as the engine uses it (:class:`serving.engine.memory.Memory`)."""

    def examples(
        self, persona: str, incoming: str, k: int = 3, exclude_session: str | None = None
    ) -> list[tuple[ChatTurn, ...]]: ...


@dataclass(frozen=True)
class Reply:
    """The persona's turn as messages (empty ones dropped, at most ``max_messages``), and how it was made."""

    messages: list[str]
    generation: Generation
    dropped_turns: int  # old turns the prompt left out to fit


@dataclass
class _Job:
    request: ReplyRequest
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[tuple[Generation, int]]
    on_text: Callable[[str], None]
    cancelled: threading.Event = field(default_factory=threading.Event)


def reply_messages(text: str, max_messages: int) -> list[str]:
    """A generated turn body (the text after ``>>>``) as its messages: split on ``>>>`` lines, trimmed."""
    messages = [message.strip() for message in split_messages(MARKER + text)]
    return [message for message in messages if message][:max_messages]


class Engine:
    """See the module docstring. ``aclose()`` (or ``async with``) stops the worker and frees the backend."""

    def __init__(
        self,
        backend: Backend,
        personas: PersonaList,
        *,
        sampling: Sampling | None = None,
        memory: Examples | None = None,
        memory_examples: int = 3,
        max_messages: int = 6,
    ) -> None:
        self.backend = backend
        self.personas = personas
        self.sampling = sampling or Sampling()
        self.memory = memory
        self.memory_examples = memory_examples
        self.max_messages = max_messages
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._waiting: dict[str, _Job] = {}  # per chat, the job not started yet
        self._lock = threading.Lock()
        self._closed = False
        self._running: _Job | None = None
        self._worker = threading.Thread(target=self._work, name="doppel-engine", daemon=True)
        self._worker.start()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    @property
    def queued(self) -> int:
        """Requests waiting for the worker."""
        return self._jobs.qsize()

    def prompt_for(self, request: ReplyRequest) -> tuple[Prompt, int]:
        """The prompt the backend gets for ``request`` (and how many old turns it dropped)."""
        examples: list[tuple[ChatTurn, ...]] = []
        incoming = next((turn for turn in reversed(request.turns) if turn.speaker != request.persona), None)
        if self.memory is not None and incoming is not None:
            examples = self.memory.examples(request.persona, "\n".join(incoming.messages), k=self.memory_examples)
        budget = self.backend.context_size - self.sampling.max_tokens
        return build_prompt(request.turns, request.persona, self.backend.count_tokens, budget, examples)

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        """The reply's text as it is generated (the body after ``>>>``: messages separated by ``\\n>>> ``)."""
        texts: asyncio.Queue[str | None] = asyncio.Queue()
        job = self._submit(request, texts.put_nowait)
        job.done.add_done_callback(lambda _: texts.put_nowait(None))
        try:
            while (text := await texts.get()) is not None:
                yield text
            job.done.result()  # raises what the worker raised, or ReplacedError
        finally:
            job.cancelled.set()
            job.done.cancel()  # nobody will look at its outcome now

    async def reply(self, request: ReplyRequest) -> Reply:
        """The whole reply as messages; cancelling the awaiting task stops it at the next token."""
        job = self._submit(request, lambda _text: None)
        try:
            generation, dropped = await asyncio.shield(job.done)
        except asyncio.CancelledError:
            job.cancelled.set()
            job.done.cancel()  # nobody will look at its outcome now
            raise
        return Reply(reply_messages(generation.text, self.max_messages), generation, dropped)

    async def aclose(self) -> None:
        """Stop: queued requests fail with :class:`EngineClosedError`, a running one stops at its next token."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
            running = self._running
        for job in waiting:
            job.cancelled.set()
            _settle(job, exception=EngineClosedError("the engine was closed"))
        if running is not None:
            running.cancelled.set()
        self._jobs.put(None)
        await asyncio.to_thread(self._worker.join)
        self.backend.close()
        close_memory = getattr(self.memory, "close", None)
        if close_memory is not None:
            close_memory()

    def _submit(self, request: ReplyRequest, on_text: Callable[[str], None]) -> _Job:
        if self._closed:
            raise EngineClosedError("the engine was closed")
        loop = asyncio.get_running_loop()

        def deliver(text: str) -> None:
            loop.call_soon_threadsafe(on_text, text)

        job = _Job(request, loop, loop.create_future(), deliver)
        with self._lock:
            older = self._waiting.get(request.chat_id)
            self._waiting[request.chat_id] = job
        if older is not None:
            older.cancelled.set()
            _settle(older, exception=ReplacedError(f"a newer request for chat {request.chat_id} replaced this one"))
        self._jobs.put(job)
        return job

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                if self._waiting.get(job.request.chat_id) is job:
                    del self._waiting[job.request.chat_id]
                self._running = job
            if job.cancelled.is_set() or job.done.done():
                continue
            try:
                prompt, dropped = self.prompt_for(job.request)
                generation = self.backend.generate(
                    job.request.chat_id, prompt, self.sampling, job.on_text, job.cancelled.is_set
                )
            except Exception as error:  # handed to the awaiting task, which raises it
                log.debug("engine request failed: %s", type(error).__name__)
                _settle(job, exception=error)
            else:
                _settle(job, result=(generation, dropped))
                self._prefetch(job.request, generation)

    def _prefetch(self, request: ReplyRequest, generation: Generation) -> None:
        """While nothing waits, let the backend compute what the other side's answer will start with."""
        prefetch = getattr(self.backend, "prefetch", None)  # an optional part of the Backend protocol
        if prefetch is None or generation.stop != "end" or not self._jobs.empty():
            return
        try:
            prefetch(request.chat_id, handoff_pieces(request.partner))
        except Exception as error:  # an optimisation only: the next prompt then decodes these tokens itself
            log.debug("prefetch failed: %s", type(error).__name__)


def _settle(job: _Job, *, result: Any = None, exception: BaseException | None = None) -> None:
    """Resolve the job's future from any thread, unless it is resolved already."""

    def resolve() -> None:
        if job.done.done():
            return
        if exception is not None:
            job.done.set_exception(exception)
        else:
            job.done.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        job.loop.call_soon_threadsafe(resolve)
