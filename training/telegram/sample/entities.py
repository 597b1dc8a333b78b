"""A message's text as Telegram writes it: a string, or a list of plain runs and entity objects.

:func:`decorate` turns some plain messages into entity lists, as real clients do with bold, links and the like.
"""

from __future__ import annotations

import random
from typing import Any

from training.telegram.sample.personal_data import url

Text = str | list[Any]  # a plain string, or Telegram's list of strings and entity objects


def normalize(parts: list[Any]) -> Text:
    """Merge adjacent strings, drop empty ones, and collapse a lone plain string, as Telegram does."""
    out: list[Any] = []
    for part in parts:
        if isinstance(part, str):
            if not part:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += part
                continue
        out.append(part)
    if not out:
        return ""
    if len(out) == 1 and isinstance(out[0], str):
        return out[0]
    return out


def decorate(rng: random.Random, text: str) -> Text:
    """Turn a plain message into an entity list: emphasise a word, or add a link."""
    words = text.split(" ")
    if len(words) >= 3 and rng.random() < 0.6:
        i = rng.randrange(len(words))
        kind = rng.choice(("bold", "italic", "underline", "strikethrough", "spoiler", "code"))
        return normalize([" ".join(words[:i]) + " " * (i > 0), {"type": kind, "text": words[i]}, *_tail(words, i)])
    link = url(rng)
    if rng.random() < 0.5:
        return normalize([text + " ", {"type": "link", "text": link}])
    return normalize(
        [
            {"type": "text_link", "text": words[0], "href": link},
            (" " + " ".join(words[1:])) if words[1:] else "",
        ]
    )


def _tail(words: list[str], i: int) -> list[str]:
    return [" " + " ".join(words[i + 1 :])] if i + 1 < len(words) else []
