"""``doppel chat``: talk to a persona in the terminal, or script a conversation through a pipe.

    doppel chat MODEL.gguf [--persona NAME] [--as NAME] [--dataset DIR] [--engine-url URL]
    doppel chat BASE.gguf --dataset DIR              # no training: the persona's own past exchanges in context
    printf 'hi\\nare you coming?\\n' | doppel chat MODEL.gguf    # a message a line in, a reply message a line out

On a terminal the reply streams as it is generated, with line editing and history (readline); ``/persona NAME``,
``/as NAME``, ``/reset`` and ``/quit`` work in both modes. Ctrl-C stops a reply (at the prompt it leaves, as
Ctrl-D and ``/quit`` do).
The settings are :class:`serving.engine.config.EngineConfig`'s (``--help`` lists them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from typing import Any, TextIO

from doppel.errors import InputError

EXIT_ENGINE_FAILED = 1


def register(subparsers: Any) -> None:
    """Add the ``chat`` subcommand (called by :mod:`doppel.cli`)."""
    from doppel.settings import add_stage
    from serving.engine.config import EngineConfig

    add_stage(
        subparsers,
        "chat",
        EngineConfig,
        help="talk to a persona of a model in the terminal (or through a pipe)",
        description="Chat with a persona of an exported model. Without a terminal, each line of input is one "
        "message and each message of the reply is printed on a line of its own.",
        handler=run,
    )


def run(args: argparse.Namespace) -> int:
    """Handler of ``doppel chat``: open the engine, then talk until the input ends."""
    from doppel.settings import given_values
    from serving.engine.config import EngineConfig
    from serving.engine.factory import open_engine

    config = EngineConfig.from_mapping(given_values(args, EngineConfig))
    engine = open_engine(config)
    persona = engine.personas.resolve(config.persona) if config.persona else engine.personas.owner.name
    partner = config.partner or engine.personas.partner_for(persona)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    return asyncio.run(_talk(engine, persona, partner, interactive))


async def _talk(engine: Any, persona: str, partner: str, interactive: bool) -> int:
    from serving.chat.session import ChatSession

    session = ChatSession(engine, persona, partner)
    try:
        if interactive:
            await _interactive(session)
            return 0
        return await _scripted(session, sys.stdin, sys.stdout)
    finally:
        await engine.aclose()


async def _scripted(session: Any, lines: TextIO, out: TextIO) -> int:
    """One incoming message a line; the reply's messages printed one a line, then flushed. 1 if the engine fails."""
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("/"):
            try:
                answer = session.command(line)
            except InputError as error:  # a script goes on, as a person at the terminal would
                answer = f"doppel chat: {error}"
            if answer is None:
                return 0
            print(answer, file=sys.stderr)
            continue
        try:
            messages = await session.send(line)
        except RuntimeError as error:  # the engine failed (a server gone, llama.cpp refusing): not the input
            print(f"doppel chat: the engine failed: {error}", file=sys.stderr)
            return EXIT_ENGINE_FAILED
        for message in messages:
            print(message.replace("\n", " "), file=out)
        out.flush()
    return 0


async def _interactive(session: Any) -> None:
    """The terminal chat. Lines are read in a daemon thread (an input() blocked at exit must not hold the process);
    Ctrl-C stops the reply being written, or leaves at the prompt."""
    from serving.chat.session import COMMANDS

    _enable_line_editing()
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    want_line = threading.Event()

    def read_lines() -> None:
        while want_line.wait():
            want_line.clear()
            try:
                line: str | None = input(f"{session.partner}> ")
            except (EOFError, OSError):
                line = None
            loop.call_soon_threadsafe(lines.put_nowait, line)
            if line is None:
                return

    replying: list[asyncio.Task[None]] = []

    def interrupt() -> None:
        if replying and not replying[-1].done():
            replying[-1].cancel()
        else:
            lines.put_nowait(None)

    loop.add_signal_handler(signal.SIGINT, interrupt)
    threading.Thread(target=read_lines, name="doppel-chat-input", daemon=True).start()
    print(f"you are {session.partner}, talking to {session.persona} ({COMMANDS})")
    try:
        while True:
            want_line.set()
            line = await lines.get()
            if line is None:
                print()
                return
            if not line.strip():
                continue
            if line.startswith("/"):
                try:
                    answer = session.command(line)
                except InputError as error:
                    print(error)
                    continue
                if answer is None:
                    return
                print(answer)
                continue
            print(f"{session.persona}: ", end="", flush=True)
            replying.append(asyncio.ensure_future(_print_stream(session, line)))
            with contextlib.suppress(asyncio.CancelledError):
                await replying[-1]
            print()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _print_stream(session: Any, line: str) -> None:
    try:
        async for text in session.stream(line):
            print(text, end="", flush=True)
    except RuntimeError as error:  # the engine failed: say so, and let the user go on
        print(f"[the engine failed: {error}]", end="")


def _enable_line_editing() -> None:
    """Importing readline gives input() editing keys and a history (kept in memory only: chats are private)."""
    with contextlib.suppress(ImportError):  # not on every platform; input() still works
        import readline  # noqa: F401
