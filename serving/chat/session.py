"""One terminal conversation with a persona: the turns so far, the commands, and how a streamed reply is shown.

    session = ChatSession(engine, persona="Olga", partner="Anna")
    reply = await session.send("are you coming tonight?")         # the persona's messages
    session.command("/persona Anna")                             # "now playing Anna"

The conversation lives only in memory (the terminal chat stores nothing); ``/reset`` forgets it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from doppel.chatml import MESSAGE_PREFIX
from doppel.errors import InputError
from serving.engine.engine import Engine
from serving.engine.types import ChatTurn, ReplyRequest

COMMANDS = "/persona NAME, /as NAME, /reset, /quit"
_NEXT_MESSAGE = "\n" + MESSAGE_PREFIX


class ChatSession:
    """The turns of one chat and whom each side plays; see the module docstring."""

    def __init__(self, engine: Engine, persona: str, partner: str, chat_id: str = "terminal") -> None:
        self.engine = engine
        self.persona = persona
        self.partner = partner
        self.chat_id = chat_id
        self.turns: list[ChatTurn] = []

    def command(self, line: str) -> str | None:
        """Run a ``/command``: what to tell the user, or None for ``/quit``; an unknown persona is an InputError."""
        name, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if name in ("/quit", "/exit"):
            return None
        if name == "/reset":
            self.turns.clear()
            return "the conversation is forgotten"
        if name == "/persona":
            if not argument:
                return "personas: " + ", ".join(self.engine.personas.names)
            self.persona = self.engine.personas.resolve(argument)
            return f"now playing {self.persona}"
        if name == "/as":
            if not argument:
                return f"you are {self.partner}"
            self.partner = argument
            return f"you are now {self.partner}"
        raise InputError(f"unknown command {name}; the commands are {COMMANDS}")

    def _request(self, text: str) -> ReplyRequest:
        now = time.time()
        if self.turns and self.turns[-1].speaker == self.partner:  # a burst: one more message of the same turn
            last = self.turns.pop()
            self.turns.append(ChatTurn(self.partner, (*last.messages, text), now))
        else:
            self.turns.append(ChatTurn(self.partner, (text,), now))
        return ReplyRequest(self.chat_id, tuple(self.turns), self.persona, self.partner)

    def _remember(self, messages: list[str]) -> None:
        if messages:
            self.turns.append(ChatTurn(self.persona, tuple(messages), time.time()))

    async def send(self, text: str) -> list[str]:
        """The persona's reply to one more message of the user's, as messages."""
        reply = await self.engine.reply(self._request(text))
        self._remember(reply.messages)
        return reply.messages

    async def stream(self, text: str) -> AsyncIterator[str]:
        """The reply as display text while it is generated: each message on its own line."""
        from serving.engine.engine import reply_messages

        shown = MessageDisplay()
        body: list[str] = []
        try:
            async for delta in self.engine.stream(self._request(text)):
                body.append(delta)
                if visible := shown.feed(delta):
                    yield visible
            if rest := shown.finish():
                yield rest
        finally:
            self._remember(reply_messages("".join(body), self.engine.max_messages))


class MessageDisplay:
    """Turns the streamed body (`` first\\n>>> second``) into display text (``first\\nsecond``) as it comes.

    A ``\\n>>> `` can arrive cut over several pieces, so text that may be its start is held back until the next
    piece says what it is.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._started = False

    def feed(self, text: str) -> str:
        self._pending += text
        if not self._started:
            stripped = self._pending.lstrip(" ")
            if not stripped:
                return ""
            self._pending, self._started = stripped, True
        out = self._pending.replace(_NEXT_MESSAGE, "\n")
        held = next((n for n in range(len(_NEXT_MESSAGE) - 1, 0, -1) if out.endswith(_NEXT_MESSAGE[:n])), 0)
        self._pending = out[len(out) - held :] if held else ""
        return out[: len(out) - held] if held else out

    def finish(self) -> str:
        rest, self._pending = self._pending, ""
        return rest if rest.strip("\n> ") else ""  # a marker cut off at the end of the reply shows nothing
