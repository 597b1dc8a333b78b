"""``doppel chat``: talk to a persona in the terminal, or script a conversation through a pipe.

    doppel chat MODEL.gguf [--persona NAME] [--as NAME] [--dataset DIR] [--engine-url URL]
    doppel chat BASE.gguf --dataset DIR              # no training: the persona's own past exchanges in context
    printf 'hi\\nare you coming?\\n' | doppel chat MODEL.gguf    # a message a line in, a reply message a line out

On a terminal the reply streams as it is generated, with line editing and history (readline); ``/persona NAME``,
``/as NAME``, ``/reset`` and ``/quit`` work in both modes. Ctrl-C stops a reply; Ctrl-D or ``/quit`` leaves.
The settings are :class:`serving.engine.config.EngineConfig`'s (``--help`` lists them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any, TextIO

from doppel.errors import InputError


def register(subparsers: Any) -> None:
    """Add the ``chat`` subcommand (called by :mod:`doppel.cli`)."""
    from doppel.settings import add_flags
    from serving.engine.config import EngineConfig

    parser = subparsers.add_parser(
        "chat",
        help="talk to a persona of a model in the terminal (or through a pipe)",
        description="Chat with a persona of an exported model. Without a terminal, each line of input is one "
        "message and each message of the reply is printed on a line of its own.",
        argument_default=argparse.SUPPRESS,  # only flags actually given override the config file
    )
    add_flags(parser, EngineConfig)
    parser.set_defaults(handler=run, stage="chat")


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
        else:
            await _scripted(session, sys.stdin, sys.stdout)
    finally:
        await engine.aclose()
    return 0


async def _scripted(session: Any, lines: TextIO, out: TextIO) -> None:
    """One incoming message a line; the reply's messages printed one a line, then flushed."""
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
                return
            print(answer, file=sys.stderr)
            continue
        for message in await session.send(line):
            print(message.replace("\n", " "), file=out)
        out.flush()


async def _interactive(session: Any) -> None:
    from serving.chat.session import COMMANDS

    _enable_line_editing()
    print(f"you are {session.partner}, talking to {session.persona} ({COMMANDS})")
    while True:
        try:
            line = await asyncio.to_thread(input, f"{session.partner}> ")
        except EOFError:
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
        task = asyncio.ensure_future(_print_stream(session, line))
        try:
            await asyncio.shield(task)
        except (KeyboardInterrupt, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        print()


async def _print_stream(session: Any, line: str) -> None:
    async for text in session.stream(line):
        print(text, end="", flush=True)


def _enable_line_editing() -> None:
    """Importing readline gives input() editing keys and a history (kept in memory only: chats are private)."""
    with contextlib.suppress(ImportError):  # not on every platform; input() still works
        import readline  # noqa: F401
