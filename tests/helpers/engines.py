"""A backend behind the real engine protocol that answers from a script: for tests of what sits around a model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from serving.engine.types import Generation, Prompt, PromptPiece, Sampling


class ScriptedBackend:
    """Answers every prompt with ``answer``, a piece at a time; holds the chat named ``held`` until released."""

    def __init__(self, answer: str = " hi\n>>> see you at 7", held: str | None = None) -> None:
        self.answer, self.held = answer, held
        self.release = threading.Event()
        self.started: list[str] = []
        self.prompts: list[Prompt] = []
        self.stops: list[str] = []

    context_size = 1024

    def count_tokens(self, piece: PromptPiece) -> int:
        return len(piece.text) // 4 + 1

    def generate(
        self,
        chat_id: str,
        prompt: Prompt,
        sampling: Sampling,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> Generation:
        self.started.append(chat_id)
        self.prompts.append(prompt)
        if chat_id == self.held:
            self.release.wait(10)
        sent = []
        for piece in self.answer.split(" "):
            if cancelled():
                self.stops.append("cancelled")
                return Generation(" ".join(sent), len(sent), "cancelled")
            text = (" " if sent else "") + piece
            sent.append(piece)
            on_text(text)
            time.sleep(0.001)
        self.stops.append("end")
        return Generation(self.answer, len(sent), "end")

    def close(self) -> None:
        self.release.set()
