"""The reply engine: a conversation in, the persona's next turn out, for the terminal chat, the bot and the evaluation.

    from serving.engine import EngineConfig, open_engine, ReplyRequest, ChatTurn
    engine = open_engine(EngineConfig(model=Path("model.gguf")))
    reply = await engine.reply(ReplyRequest("chat-1", (ChatTurn("Anna", ("hi!",)),), persona="Olga", partner="Anna"))

``types`` (the vocabulary and the Backend protocol), ``engine`` (queue, streams, messages), ``prompt`` (rolling
context), ``llama`` (llama.cpp in-process), ``remote`` (OpenAI-compatible servers), ``memory`` (past exchanges),
``personas``, ``config`` (the settings) and ``factory`` (settings to an engine). Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "ChatTurn": "serving.engine.types",
    "ReplyRequest": "serving.engine.types",
    "Sampling": "serving.engine.types",
    "Engine": "serving.engine.engine",
    "Reply": "serving.engine.engine",
    "ReplacedError": "serving.engine.engine",
    "EngineClosedError": "serving.engine.engine",
    "EngineConfig": "serving.engine.config",
    "open_engine": "serving.engine.factory",
    "PersonaList": "serving.engine.personas",
}

__all__ = [
    "ChatTurn",
    "Engine",
    "EngineClosedError",
    "EngineConfig",
    "PersonaList",
    "ReplacedError",
    "Reply",
    "ReplyRequest",
    "Sampling",
    "open_engine",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
