"""Build small Telegram Desktop exports by hand, in the exact shape Telegram writes, for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASE_TIME = 1_700_000_000  # 2023-11-14 22:13:20 UTC
OWNER_ID = 1000


def text_message(
    message_id: int, at: int, sender: str | None, sender_id: int | str, text: Any, **extra: Any
) -> dict[str, Any]:
    """A message as Telegram writes it; ``at`` is seconds after BASE_TIME."""
    from_id = sender_id if isinstance(sender_id, str) else f"user{sender_id}"
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "date": "2023-11-14T22:13:20",
        "date_unixtime": str(BASE_TIME + at),
        "from": sender,
        "from_id": from_id,
    }
    message.update(extra)
    message["text"] = text
    flat = text if isinstance(text, str) else "".join(p if isinstance(p, str) else p["text"] for p in text)
    message["text_entities"] = [{"type": "plain", "text": flat}] if flat else []
    return message


def service_message(message_id: int, at: int, actor: str, action: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "service",
        "date": "2023-11-14T22:13:20",
        "date_unixtime": str(BASE_TIME + at),
        "actor": actor,
        "actor_id": "user1",
        "action": action,
        **extra,
        "text": "",
        "text_entities": [],
    }


def chat(
    chat_id: int, name: str | None, messages: list[dict[str, Any]], chat_type: str = "personal_chat"
) -> dict[str, Any]:
    return {"name": name, "type": chat_type, "id": chat_id, "messages": messages}


def full_export(
    chats: list[dict[str, Any]], owner_id: int = OWNER_ID, left: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "about": "Here is the data you requested.",
        "personal_information": {
            "user_id": owner_id,
            "first_name": "Olga",
            "last_name": "",
            "phone_number": "+0 000",
        },
        "contacts": {
            "about": "contacts",
            "list": [{"first_name": "A", "last_name": "", "phone_number": "1", "date": "x"}],
        },
        "chats": {"about": "chats", "list": chats},
        "left_chats": {"about": "left", "list": left or []},
    }


def write(path: Path, document: Any, *, minified: bool = False) -> Path:
    """Write like Telegram Desktop (one-space indent, raw UTF-8), or minified."""
    text = (
        json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        if minified
        else json.dumps(document, ensure_ascii=False, indent=1)
    )
    path.write_text(text, encoding="utf-8")
    return path


def dialogue(pairs: list[tuple[int, str, int, str]]) -> list[dict[str, Any]]:
    """Messages from ``(at, sender name, sender id, text)`` tuples, ids in order."""
    return [text_message(i + 1, at, name, sid, text) for i, (at, name, sid, text) in enumerate(pairs)]
