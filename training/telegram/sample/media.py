"""A message's media keys as Telegram writes them: a file or a "not included" note, sizes, mime, duration.

Also shared locations, contacts and polls. Each function returns the keys as JSON, ready to write.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring

from training.telegram.sample.clock import UTC_OFFSET_SECONDS
from training.telegram.sample.vocabulary import STICKER_EMOJI
from training.telegram.sample.writer import Chat, key_value, nested_json

_NOT_INCLUDED = "(File not included. Change data exporting settings to download.)"
_TOO_BIG = "(File exceeds maximum size. Change data exporting settings to download.)"


def _file_date(ts: int) -> str:
    return time.strftime("%d-%m-%Y_%H-%M-%S", time.gmtime(ts + UTC_OFFSET_SECONDS))


def photo(chat: Chat, *, included: bool | None = None) -> str:
    rng = chat.rng
    if included is None:
        included = rng.random() < 0.7
    n = next(chat.out.file_counter)
    path = f"photos/photo_{n}@{_file_date(chat.t)}.jpg" if included else _NOT_INCLUDED
    w, h = rng.choice(((1280, 960), (960, 1280), (1280, 720), (1080, 1080), (2560, 1920)))
    return (
        key_value("photo", encode_basestring(path))
        + key_value("photo_file_size", rng.randint(40_000, 400_000))
        + key_value("width", w)
        + key_value("height", h)
    )


def _document(
    chat: Chat,
    *,
    folder: str,
    name: str,
    media_type: str,
    mime: str,
    included: bool,
    size: int,
    thumb: bool = False,
    emoji: str = "",
    duration: int = 0,
    dims: tuple[int, int] | None = None,
    file_name: str = "",
) -> str:
    n = next(chat.out.file_counter)
    stamp = _file_date(chat.t)
    path = f"{folder}/{name.format(n=n, date=stamp)}" if included else _NOT_INCLUDED
    parts = [key_value("file", encode_basestring(path))]
    if file_name:
        parts.append(key_value("file_name", encode_basestring(file_name)))
    parts.append(key_value("file_size", size))
    if thumb:
        thumb_path = f"{path}_thumb.jpg" if included else _NOT_INCLUDED
        parts.append(key_value("thumbnail", encode_basestring(thumb_path)))
        parts.append(key_value("thumbnail_file_size", 900 + size % 24_000))
    if media_type:
        parts.append(key_value("media_type", f'"{media_type}"'))
    if emoji:
        parts.append(key_value("sticker_emoji", encode_basestring(emoji)))
    parts.append(key_value("mime_type", f'"{mime}"'))
    if duration:
        parts.append(key_value("duration_seconds", duration))
    if dims:
        parts.append(key_value("width", dims[0]) + key_value("height", dims[1]))
    return "".join(parts)


def sticker(chat: Chat, *, emoji: str | None = None) -> str:
    rng = chat.rng
    animated = rng.random() < 0.4
    return _document(
        chat,
        folder="stickers",
        name="sticker ({n}).tgs" if animated else "sticker ({n}).webp",
        media_type="sticker",
        mime="application/x-tgsticker" if animated else "image/webp",
        included=rng.random() < 0.5,
        size=rng.randint(8_000, 60_000),
        thumb=True,
        emoji=rng.choice(STICKER_EMOJI) if emoji is None else emoji,
        dims=(512, 512),
        file_name="AnimatedSticker.tgs" if animated else "sticker.webp",
    )


def voice(chat: Chat) -> str:
    rng = chat.rng
    duration = rng.randint(2, 95)
    return _document(
        chat,
        folder="voice_messages",
        name="audio_{n}@{date}.ogg",
        media_type="voice_message",
        mime="audio/ogg",
        included=rng.random() < 0.6,
        size=duration * 4_100,
        duration=duration,
    )


def round_video(chat: Chat) -> str:
    rng = chat.rng
    duration = rng.randint(3, 59)
    return _document(
        chat,
        folder="round_video_messages",
        name="file_{n}@{date}.mp4",
        media_type="video_message",
        mime="video/mp4",
        included=rng.random() < 0.5,
        size=duration * 120_000,
        thumb=True,
        duration=duration,
        dims=(384, 384),
    )


def animation(chat: Chat) -> str:
    rng = chat.rng
    return _document(
        chat,
        folder="video_files",
        name="gif_{n}@{date}.mp4",
        media_type="animation",
        mime="video/mp4",
        included=rng.random() < 0.5,
        size=rng.randint(90_000, 900_000),
        thumb=True,
        duration=rng.randint(1, 8),
        dims=(480, 270),
        file_name="giphy.mp4",
    )


def video(chat: Chat, *, too_big: bool = False) -> str:
    rng = chat.rng
    duration = rng.randint(4, 240)
    name = f"IMG_{rng.randint(1000, 9999)}.MP4"
    fragment = _document(
        chat,
        folder="video_files",
        name=name,
        media_type="video_file",
        mime="video/mp4",
        included=not too_big and rng.random() < 0.3,
        size=duration * 900_000,
        thumb=True,
        duration=duration,
        dims=rng.choice(((1920, 1080), (1080, 1920), (1280, 720))),
        file_name=name,
    )
    return fragment.replace(_NOT_INCLUDED, _TOO_BIG) if too_big else fragment


def pdf(chat: Chat, name: str) -> str:
    return _document(
        chat,
        folder="files",
        name=name,
        media_type="",
        mime="application/pdf",
        included=True,
        size=chat.rng.randint(60_000, 900_000),
        file_name=name,
    )


_RANDOM_MEDIA: tuple[Callable[[Chat], str], ...] = (
    sticker,
    photo,
    voice,
    animation,
    video,
    round_video,
)
_RANDOM_MEDIA_CUM = list(itertools.accumulate((36, 32, 12, 8, 7, 5)))
CAPTIONED = {photo, video}


def random_media(chat: Chat) -> tuple[Callable[[Chat], str], str]:
    kind = _RANDOM_MEDIA[bisect.bisect(_RANDOM_MEDIA_CUM, chat.rng.random() * _RANDOM_MEDIA_CUM[-1])]
    return kind, kind(chat)


def location(latitude: float, longitude: float, *, live: int = 0) -> str:
    fragment = key_value("location_information", nested_json({"latitude": latitude, "longitude": longitude}, 6))
    return fragment + (key_value("live_location_period_seconds", live) if live else "")


def contact(first_name: str, last_name: str, phone: str) -> str:
    info = {"first_name": first_name, "last_name": last_name, "phone_number": phone}
    return key_value("contact_information", nested_json(info, 6))


def poll(question: str, answers: Sequence[tuple[str, int, bool]]) -> str:
    poll = {
        "question": question,
        "closed": False,
        "total_voters": sum(votes for _, votes, _ in answers),
        "answers": [{"text": text, "voters": votes, "chosen": chosen} for text, votes, chosen in answers],
    }
    return key_value("poll", nested_json(poll, 6))
