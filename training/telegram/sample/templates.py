"""How a speaker's text is made: a :class:`Style` fills a template's slots from the conversation's :class:`Fill`.

A style picks a template for the point in the conversation (opening, middle, answer, closing); a style made with
:func:`single` calls a function instead.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any

from training.telegram.sample.entities import Text
from training.telegram.sample.personal_data import GENERATED
from training.telegram.sample.vocabulary import EMOJI, Topic


class Fill(dict[str, str]):
    """Template slots of one conversation, drawn on first use from its topic (personal data: each time)."""

    __slots__ = ("rng", "topic")

    def __init__(self, rng: random.Random, topic: Topic) -> None:
        super().__init__()
        self.rng = rng
        self.topic = topic

    def __missing__(self, key: str) -> str:
        pool = self.topic.get(key)
        if pool is None:
            return GENERATED[key](self.rng)
        # Kept for the rest of the conversation, so that both sides talk about the same thing.
        value = self[key] = self.rng.choice(pool)
        return value


_PII_RATE = 0.004


class Style:
    """How one speaker writes: template pools per conversation phase, burst sizes, media habits."""

    def __init__(
        self,
        *,
        opening: Sequence[str],
        middle: Sequence[str],
        answers: Sequence[str] = (),
        closing: Sequence[str] = (),
        bursts: Sequence[tuple[int, int]] = ((1, 72), (2, 22), (3, 6)),
        media: float = 0.03,
        lowercase: bool = False,
        suffix: str = "",
        emoji: tuple[int, int] = (0, 0),
        sentences: tuple[int, int] = (0, 0),
        pii: Sequence[str] = (),
        forwards: float = 0.0,
        maker: Callable[[random.Random, Fill, str], Text] | None = None,
        reply_delay: tuple[int, int] | None = None,
        punctuated: bool = False,
    ) -> None:
        self.opening = tuple(opening)
        self.middle = tuple(middle)
        self.answers = tuple(answers)
        self.closing = tuple(closing)
        self.burst_sizes = [size for size, _ in bursts]
        self.burst_cum = list(itertools.accumulate(weight for _, weight in bursts))
        self.media = media
        self.lowercase = lowercase
        self.suffix = suffix
        self.emoji = emoji
        self.sentences = sentences
        self.pii = tuple(pii)
        self.forwards = forwards
        self.maker = maker
        self.reply_delay = reply_delay
        self.punctuated = punctuated

    def burst(self, rng: random.Random) -> int:
        """How many messages in a row the speaker sends this turn."""
        return self.burst_sizes[bisect.bisect(self.burst_cum, rng.random() * self.burst_cum[-1])]

    def text(self, rng: random.Random, fill: Fill, phase: str, asked: bool) -> Text:
        """One message at ``phase`` ("open", "mid" or "close"); ``asked``: the previous message was a question."""
        if self.maker is not None:
            return self.maker(rng, fill, phase)
        if self.pii and rng.random() < _PII_RATE:
            template = rng.choice(self.pii)
        elif self.sentences[1]:
            template = self._compose(rng, phase)
        elif phase == "open":
            template = rng.choice(self.opening)
        elif phase == "close" and self.closing:
            template = rng.choice(self.closing)
        elif asked and self.answers and rng.random() < 0.6:
            template = rng.choice(self.answers)
        else:
            template = rng.choice(self.middle)
        text = template.format_map(fill)
        if self.lowercase:
            text = text.lower()
        if self.emoji[1]:
            if rng.random() < 0.08:
                return "".join(rng.choices(EMOJI, k=rng.randint(1, 4)))
            if rng.random() < 0.85:
                text += " " + "".join(rng.choices(EMOJI, k=rng.randint(*self.emoji)))
        return text + self.suffix

    def _compose(self, rng: random.Random, phase: str) -> str:
        body = rng.sample(self.middle, rng.randint(*self.sentences))
        if phase == "open":
            body.insert(0, rng.choice(self.opening))
        elif phase == "close":
            body.append(rng.choice(self.closing))
        out = [body[0]]
        for sentence in body[1:]:
            r = rng.random()
            out.append("\n\n" if r < 0.18 else "\n" if r < 0.3 else " ")
            out.append(sentence)
        return "".join(out)


def single(maker: Callable[[random.Random, Fill, str], Text], **kwargs: Any) -> Style:
    """A style whose every text comes from ``maker`` instead of templates."""
    return Style(opening=(), middle=(), maker=maker, **kwargs)
