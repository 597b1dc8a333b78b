"""Write a synthetic Telegram Desktop full-account export (``result.json``) to try, test and benchmark doppel.

    doppel sample-export OUT.json [--seed N] [--messages N]

The file has the shape and byte layout that Telegram Desktop's "Export Telegram data" (format JSON) writes:
``about``, ``personal_information``, ``contacts``, ``frequent_contacts``, ``chats`` and ``left_chats``,
one-space indentation, keys in Telegram's order, UTF-8 without escapes. Every chat type, service message,
media kind and entity appears, as do the awkward cases real exports hold: deleted accounts (``from: null``),
a friend who renames midway, display names with a newline or ``<|im_end|>``, ChatML markers and personal
data (phone numbers, e-mails, Luhn-valid card numbers, IBANs) in text, and gaps of whole days plus a few
minutes between conversations.

The owner and seven friends each write in a style a model can learn (see :data:`STYLE_OF`): one all in
lowercase ending in "))", one in Russian, one in long multi-paragraph messages, one in bursts of 3-6 short
messages, one with many emoji, one in formal English. The owner writes English, and Russian to the Russian
friend. All text comes from the templates in this module; nothing is real or downloaded.

``date`` is the owner's local time (UTC+3, written without an offset, as Telegram does); ``date_unixtime``
is the truth. The same ``seed`` and ``messages`` give the same bytes. The export is streamed message by
message to a temporary file beside the target, renamed at the end, so a million messages (about 420 MB)
need only a few tens of MB of memory.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

MIN_MESSAGES = 100
DEFAULT_MESSAGES = 20_000

#: The export "ends" here (2024-06-30 20:00 UTC): every chat's history runs up to about this moment.
END_UNIXTIME = 1_719_777_600
#: Telegram writes ``date`` in the exporting machine's local time; the owner lives at UTC+3 (no DST).
UTC_OFFSET_SECONDS = 3 * 3600

#: Style of each persona, by key; :attr:`SampleExportSummary.styles` maps their ``from_id`` to these.
STYLE_OF: Mapping[str, str] = MappingProxyType(
    {
        "owner": "owner: sentence case, no final full stop, 'haha', 'tbh', '...'; answers in Russian to Oleg",
        "dima": "lowercase: never a capital letter, every message ends with '))'",
        "oleg": "russian: writes in Russian (Cyrillic)",
        "margaret": "long: several sentences per message, often with line breaks",
        "sam": "bursts: 3-6 short messages in a row; renames from 'Sam Lee' to 'Sammy Lee 🌴' midway",
        "priya": "emoji: most messages carry emoji, some are only emoji",
        "edward": "formal: full sentences, capitalised, always ending in punctuation",
        "kate": "work: short practical messages; her display name contains a newline",
    }
)


@dataclass(frozen=True)
class SampleExportSummary:
    """What :func:`write_sample_export` wrote."""

    path: Path
    owner_id: int
    owner_name: str
    #: Number of chats in ``chats.list`` and in ``left_chats.list``.
    chats: int
    left_chats: int
    #: Every message object written, service messages included.
    messages: int
    #: ``from_id`` (``"user123"``, ``"channel456"``) → non-service messages sent.
    per_speaker: Mapping[str, int]
    #: ``from_id`` → persona key of :data:`STYLE_OF` (owner and the seven friends).
    styles: Mapping[str, str]
    size_bytes: int


# ----------------------------------------------------------------------------------------------------
# Vocabulary. Topics give a conversation its subject; styles give each speaker a voice.

_TIME_EN = (
    "tomorrow",
    "tonight",
    "on Saturday",
    "on Sunday",
    "after work",
    "at 7",
    "around 8",
    "next week",
    "this weekend",
    "on Friday",
    "in the morning",
    "at lunch",
)
_TIME_RU = (
    "завтра",
    "сегодня вечером",
    "в субботу",
    "в воскресенье",
    "после работы",
    "в семь",
    "часов в восемь",
    "на следующей неделе",
    "на выходных",
    "в пятницу",
    "утром",
    "в обед",
)
_FOOD = ("dumplings", "tacos", "khachapuri", "ramen", "pancakes", "pizza", "curry", "sushi")

_Topic = dict[str, Sequence[str]]


def _topic(**pools: Sequence[str]) -> _Topic:
    return {"time": _TIME_EN, "time_ru": _TIME_RU, "food": _FOOD, **pools}


_TOPICS: tuple[_Topic, ...] = (
    _topic(
        thing=(
            "the new Dune film",
            "that octopus documentary",
            "the last episode",
            "the trailer you sent",
            "season two",
            "the new Nolan movie",
        ),
        place=("the cinema on King Street", "the Odeon", "your place", "the rooftop screening"),
        activity=("catch a movie", "watch the finale", "binge the rest of it", "go to the late screening"),
        thing_ru=(
            "новую «Дюну»",
            "документалку про осьминогов",
            "последнюю серию",
            "трейлер, который ты скинул",
            "второй сезон",
            "новый фильм Нолана",
        ),
        place_ru=("в кино на Тверской", "у тебя", "в «Октябре»", "на летней веранде"),
        activity_ru=("сходить в кино", "посмотреть финал", "досмотреть сериал", "сходить на поздний сеанс"),
    ),
    _topic(
        thing=(
            "the new ramen place",
            "that taco truck",
            "your lasagna recipe",
            "the Georgian restaurant",
            "brunch at Maggie's",
        ),
        place=("the ramen bar on Hill Street", "the market", "that Georgian place", "Maggie's"),
        activity=("grab dinner", "get brunch", "try the new ramen place", "cook something together"),
        thing_ru=(
            "новую раменную",
            "фуд-трак с тако",
            "твой рецепт лазаньи",
            "грузинский ресторан",
            "бранч у Маши",
        ),
        place_ru=("в раменной на Покровке", "на рынке", "в грузинском ресторане", "в кафе у дома"),
        activity_ru=(
            "поужинать",
            "сходить на бранч",
            "попробовать новую раменную",
            "приготовить что-нибудь вместе",
        ),
    ),
    _topic(
        thing=(
            "the Lisbon trip",
            "our train tickets",
            "the hotel booking",
            "the hiking route",
            "my passport renewal",
        ),
        place=("the airport", "Lisbon", "the mountains", "the station", "Porto"),
        activity=("book the flights", "plan the route", "pack", "go hiking"),
        thing_ru=("поездку в Лиссабон", "билеты на поезд", "бронь отеля", "маршрут в горах", "загранпаспорт"),
        place_ru=("в аэропорту", "в Лиссабоне", "в горах", "на вокзале"),
        activity_ru=("купить билеты", "спланировать маршрут", "собрать вещи", "сходить в поход"),
    ),
    _topic(
        thing=(
            "the quarterly report",
            "the new project",
            "my manager's email",
            "the team offsite",
            "the deadline",
        ),
        place=("the office", "the coworking space", "home"),
        activity=("grab a coffee", "finish the deck", "take a day off", "leave early"),
        thing_ru=(
            "квартальный отчёт",
            "новый проект",
            "письмо от начальника",
            "выездной тимбилдинг",
            "дедлайн",
        ),
        place_ru=("в офисе", "в коворкинге", "дома"),
        activity_ru=("выпить кофе", "доделать презентацию", "взять отгул", "уйти пораньше"),
    ),
    _topic(
        thing=(
            "the match last night",
            "my new running shoes",
            "the climbing gym",
            "the half marathon",
            "yoga class",
        ),
        place=("the park", "the climbing gym", "the pool", "the stadium"),
        activity=("go for a run", "go climbing", "play tennis", "hit the gym"),
        thing_ru=("вчерашний матч", "новые кроссовки", "скалодром", "полумарафон", "йогу"),
        place_ru=("в парке", "на скалодроме", "в бассейне", "на стадионе"),
        activity_ru=("пробежаться", "сходить на скалодром", "поиграть в теннис", "сходить в зал"),
    ),
    _topic(
        thing=("the concert", "their new album", "the festival lineup", "that playlist you sent"),
        place=("the Roundhouse", "the jazz bar", "the festival", "the record shop"),
        activity=("get tickets", "go to the gig", "check out the jazz bar"),
        thing_ru=("концерт", "их новый альбом", "лайнап фестиваля", "плейлист, который ты скинул"),
        place_ru=("в джаз-баре", "на фестивале", "в клубе на Садовой"),
        activity_ru=("взять билеты", "сходить на концерт", "заглянуть в джаз-бар"),
    ),
    _topic(
        thing=("the new Zelda", "board game night", "that co-op game", "the chess puzzle you sent"),
        place=("my place", "the board game cafe", "Discord"),
        activity=("play some co-op", "do a game night", "finish the campaign"),
        thing_ru=("новую «Зельду»", "настолки", "ту кооперативную игру", "шахматную задачку"),
        place_ru=("у меня", "в антикафе", "в дискорде"),
        activity_ru=("поиграть в кооп", "устроить игровой вечер", "пройти кампанию"),
    ),
    _topic(
        thing=("the new flat", "the moving van", "the IKEA order", "the landlord's reply", "the lease"),
        place=("the new flat", "IKEA", "the storage unit"),
        activity=("help with the move", "assemble the wardrobe", "look at flats"),
        thing_ru=(
            "новую квартиру",
            "газель для переезда",
            "заказ из ИКЕИ",
            "ответ хозяина",
            "договор аренды",
        ),
        place_ru=("в новой квартире", "в ИКЕЕ", "на складе"),
        activity_ru=("помочь с переездом", "собрать шкаф", "посмотреть квартиры"),
    ),
)
_PYTHON_TOPIC = _topic(
    py_task=(
        "read a CSV in chunks",
        "profile a slow loop",
        "mock datetime in tests",
        "parse a huge JSON file lazily",
        "deduplicate a list but keep the order",
        "retry an HTTP call with backoff",
    ),
    py_thing=("asyncio", "the GIL", "dataclasses", "pandas merge", "pytest fixtures", "type hints", "regex"),
    py_tool=(
        "itertools",
        "pathlib",
        "functools.lru_cache",
        "ijson",
        "py-spy",
        "dataclasses.replace",
        "tenacity",
    ),
)
_CRYPTO_TOPIC = _topic(coin=("BTC", "ETH", "SOL", "DOGE", "TON"), price=("0.42", "1.7", "64k", "3.1k", "150"))
_EMOJI = (
    "😍",
    "🎉",
    "🙌",
    "✨",
    "🥺",
    "💕",
    "😂",
    "🤣",
    "🔥",
    "🥳",
    "😭",
    "❤️",
    "👀",
    "🌸",
    "🍕",
    "☕",
    "💃",
    "😅",
)
_STICKER_EMOJI = ("😂", "👍", "❤️", "😭", "🤔", "😎", "🙈", "🐱", "🔥")

_NEWS_HEADLINES = (
    "Python 3.13 ships an experimental free-threaded build",
    "A tiny model beats a giant one on a narrow benchmark",
    "Why your laptop fan spins up when Slack is open",
    "The quiet return of the command line",
    "Researchers teach a robot to fold laundry, slowly",
    "Ten years of Rust in production: what changed",
    "How SQLite became the database in your pocket",
)
_NEWS_TAGS = ("#python", "#ai", "#hardware", "#opensource", "#databases", "#rust")


# ----------------------------------------------------------------------------------------------------
# Fake personal data: valid in form (Luhn, IBAN mod-97) and reserved or example ranges where such exist.


def _luhn_sum(digits: Sequence[int], *, doubled: int) -> int:
    """Luhn sum over ``digits``, doubling every second one from the right, starting at index ``doubled``."""
    total = 0
    for i, digit in enumerate(reversed(digits)):
        value = digit * 2 if i % 2 == doubled else digit
        total += value - 9 if value > 9 else value
    return total


def _luhn_card(rng: random.Random) -> str:
    digits = [4, *(rng.randint(0, 9) for _ in range(14))]
    # Without its check digit yet, the rightmost digit is one that gets doubled.
    digits.append(-_luhn_sum(digits, doubled=0) % 10)
    s = "".join(map(str, digits))
    return f"{s[0:4]} {s[4:8]} {s[8:12]} {s[12:16]}"


def _iban_number(country: str, bban: str) -> int:
    rearranged = bban + country + "00"
    return int("".join(str(int(c, 36)) for c in rearranged))


def _iban(rng: random.Random) -> str:
    if rng.random() < 0.5:
        country, bban = "DE", "".join(str(rng.randint(0, 9)) for _ in range(18))
    else:
        bank = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        country, bban = "GB", bank + "".join(str(rng.randint(0, 9)) for _ in range(14))
    check = 98 - _iban_number(country, bban) % 97
    raw = f"{country}{check:02d}{bban}"
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _phone_uk(rng: random.Random) -> str:
    return f"+44 7700 900{rng.randint(0, 999):03d}"  # Ofcom's range reserved for drama


def _phone_us(rng: random.Random) -> str:
    return f"+1 202 555 01{rng.randint(0, 99):02d}"  # 555-01xx is reserved for fiction


def _phone_ru(rng: random.Random) -> str:
    return f"+7 999 {rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}"


def _email(rng: random.Random) -> str:
    user = rng.choice(("alex.m", "m.hughes", "kate.novak", "oleg.p", "sam.lee", "priya.s", "e.whitfield"))
    return f"{user}{rng.randint(1, 99)}@{rng.choice(('example.com', 'example.org', 'example.net'))}"


def _url(rng: random.Random) -> str:
    slug = "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(6))
    return f"https://{rng.choice(('example.com', 'example.org', 'news.example.net'))}/{slug}"


_GENERATED: dict[str, Callable[[random.Random], str]] = {
    "phone_uk": _phone_uk,
    "phone_us": _phone_us,
    "phone_ru": _phone_ru,
    "email": _email,
    "card": _luhn_card,
    "iban": _iban,
    "url": _url,
    "code": lambda rng: f"{rng.randint(10000, 99999)}",
}


class _Fill(dict[str, str]):
    """Template slots of one conversation, drawn on first use from its topic (personal data: each time)."""

    __slots__ = ("rng", "topic")

    def __init__(self, rng: random.Random, topic: _Topic) -> None:
        super().__init__()
        self.rng = rng
        self.topic = topic

    def __missing__(self, key: str) -> str:
        pool = self.topic.get(key)
        if pool is None:
            return _GENERATED[key](self.rng)
        # Kept for the rest of the conversation, so that both sides talk about the same thing.
        value = self[key] = self.rng.choice(pool)
        return value


# ----------------------------------------------------------------------------------------------------
# Styles.

_Text = str | list[Any]  # a plain string, or Telegram's list of strings and entity objects
_PII_RATE = 0.004


class _Style:
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
        maker: Callable[[random.Random, _Fill, str], _Text] | None = None,
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
        return self.burst_sizes[bisect.bisect(self.burst_cum, rng.random() * self.burst_cum[-1])]

    def text(self, rng: random.Random, fill: _Fill, phase: str, asked: bool) -> _Text:
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
                return "".join(rng.choices(_EMOJI, k=rng.randint(1, 4)))
            if rng.random() < 0.85:
                text += " " + "".join(rng.choices(_EMOJI, k=rng.randint(*self.emoji)))
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


_OWNER_EN = _Style(
    opening=(
        "Hey, are you free {time}?",
        "Yo, did you see {thing}",
        "Hey! How was {thing}?",
        "Random question... have you been to {place}?",
        "Morning! Still up to {activity} {time}?",
        "Hey hey, what's the plan {time}?",
        "Guess who finally saw {thing} haha",
        "Are we still on for {time}?",
    ),
    middle=(
        "Haha yeah",
        "Tbh I liked {thing} more than I expected",
        "Not sure... maybe {time}?",
        "I was thinking {place}, they do great {food}",
        "Ngl {thing} was kinda overrated",
        "Same here haha",
        "Wait, really?",
        "Haha no way",
        "Ok that makes sense",
        "Hmm let me check my calendar",
        "I'd rather {activity} tbh",
        "Honestly no idea... you pick",
        "Oh nice, send me a pic",
        "Lol classic",
        "Fair enough",
        "I'm so tired today haha",
        "Let's {activity} {time} then",
        "Did you end up going to {place}?",
    ),
    answers=(
        "Yeah, {time} works for me",
        "Not really haha",
        "Hmm maybe, depends on work",
        "Yes! Definitely",
        "I think so... will confirm {time}",
        "Nope, not yet",
        "Sure 👍",
    ),
    closing=(
        "Ok see you {time}",
        "Cool, talk later",
        "Night!",
        "Perfect 👍",
        "Deal",
        "Ok cool, text me when you're there",
        "Haha ok, later",
    ),
    pii=("My new number is {phone_uk}", "You can reach me at {email}", "Send it to {email} and I'll sort it"),
    forwards=0.004,
)
_OWNER_RU = _Style(
    opening=(
        "Привет! Ты {time_ru} свободен?",
        "Слушай, ты видел {thing_ru}?",
        "Здорово, как дела?",
        "Ну что, {activity_ru} {time_ru}?",
        "Привет, есть минутка?",
    ),
    middle=(
        "Ахах да",
        "Я могу {time_ru}",
        "Не знаю... может {place_ru}?",
        "Честно, {thing_ru} я так и не понял",
        "Ну такое",
        "Да ладно",
        "Давай {activity_ru}",
        "Погоди, сейчас гляну",
        "Ахах классика",
        "Кстати, я был {place_ru} на днях",
    ),
    answers=("Да, {time_ru} норм", "Не, пока нет", "Наверное, уточню {time_ru}", "Конечно 👍"),
    closing=("Ок, договорились", "Давай, до связи", "Спокойной ночи!", "Супер 👍"),
)
_OWNER_PY = _Style(
    opening=("Hi all, quick one: how do you {py_task}?", "Has anyone used {py_tool} for this?"),
    middle=(
        "Tbh I'd just use {py_tool}",
        "Haha {py_thing} strikes again",
        "Same issue here with {py_thing}",
        "Not sure... maybe check {py_tool}?",
        "Thanks, that helped 👍",
    ),
    bursts=((1, 85), (2, 15)),
    media=0.0,
)
_DIMA = _Style(
    opening=(
        "hey",
        "u free {time}",
        "did you see {thing}",
        "guess where i am",
        "yo whats up",
        "still up to {activity}",
    ),
    middle=(
        "lol",
        "haha classic",
        "im at {place} rn",
        "ok {time} works",
        "no idea tbh",
        "sounds good",
        "cant today, maybe {time}",
        "i told you about {thing} right",
        "send pics",
        "same",
        "nah {thing} is mid",
        "wait what",
        "thats so you",
        "ok ok",
        "we should {activity} {time}",
    ),
    answers=("yeah {time} is fine", "nope", "maybe", "yes obviously", "idk yet"),
    closing=("ok later", "night", "cool see ya", "deal"),
    bursts=((1, 60), (2, 30), (3, 10)),
    lowercase=True,
    suffix="))",
    media=0.04,
)
_OLEG = _Style(
    opening=(
        "Привет! Как дела?",
        "Слушай, ты видел {thing_ru}?",
        "Здорово! Что делаешь {time_ru}?",
        "Есть идея: {activity_ru} {time_ru}",
        "Ну что, как выходные?",
    ),
    middle=(
        "Ну такое",
        "Согласен полностью",
        "Ахаха, точно",
        "Не, сегодня не могу, давай {time_ru}",
        "Короче, посмотрел {thing_ru} — огонь",
        "Я сейчас {place_ru}, подходи",
        "Слушай, а может {place_ru}?",
        "Да ладно, серьёзно?",
        "Кстати, я тут вспомнил про {thing_ru}",
        "Мне кажется, лучше {activity_ru}",
        "Ну ок",
        "Вообще без проблем",
    ),
    answers=("Да, {time_ru} отлично", "Не, ещё нет", "Посмотрим, напишу {time_ru}", "Конечно!"),
    closing=("Давай, до связи!", "Ок, договорились", "Спокойной ночи", "Всё, бегу, пока"),
    bursts=((1, 50), (2, 35), (3, 15)),
    pii=("Мой новый номер {phone_ru}", "Скинь на карту {card}, потом сочтёмся"),
)
_MARGARET = _Style(
    opening=(
        "Hi love, I hope your week has been kinder than mine!",
        "Hello, dear, I've been meaning to write to you for ages.",
        "Good morning! I'm having my coffee and thought of you.",
    ),
    middle=(
        "I finally got around to {thing} last weekend, and honestly it was better than I expected.",
        "The weather was awful, so we ended up spending most of the afternoon at {place}.",
        "Also, before I forget, my sister says hello and asks whether you're still coming in the summer.",
        "I've been thinking a lot about what you said about {thing}, and I think you were right all along.",
        "Work has been relentless, but I'm trying to leave the laptop closed after six.",
        "We should {activity} {time}, if you can spare an evening.",
        "The garden is a jungle again; the tomatoes have taken over the whole corner by the fence.",
        "I read a long article about {thing} on the train and now I have opinions.",
        "Do you remember that little place near {place}? It's closed now, which broke my heart a bit.",
        "Tom sends his love, and he says he still owes you a rematch.",
        "I made {food} on Sunday and it was a disaster, but a delicious one.",
        "Anyway, I'm rambling.",
        "The cat has decided that my keyboard is the warmest place in the house.",
        "I'm reading a wonderful novel about a lighthouse keeper, I'll lend it to you.",
    ),
    closing=(
        "Let me know what you think when you get a chance. Big hugs!",
        "Write back when you can, no rush at all.",
        "Take care of yourself, and sleep more than I do!",
    ),
    sentences=(2, 5),
    bursts=((1, 90), (2, 10)),
    pii=("My new email is {email}, by the way, the old one is drowning in spam.",),
    forwards=0.006,
    media=0.02,
)
_SAM = _Style(
    opening=("ok so", "guess what", "wait", "hey", "listen", "ok ok ok"),
    middle=(
        "wait",
        "omg",
        "no way",
        "anyway",
        "lol",
        "brb",
        "{time}?",
        "im in",
        "ok",
        "yes!!",
        "wait what",
        "hahaha",
        "so basically",
        "{place}",
        "right??",
        "same",
        "totally",
        "ugh",
        "you know {thing}?",
        "OMG",
        "i cant",
        "LOL",
        "nvm",
        "see",
    ),
    answers=("yes", "nope", "maybe??", "obviously"),
    closing=("ok bye", "later!!", "gtg", "night"),
    bursts=((3, 30), (4, 30), (5, 25), (6, 15)),
    media=0.03,
)
_PRIYA = _Style(
    opening=("heyyy", "omg hi", "guess what", "good morning", "are you free {time}"),
    middle=(
        "omg {thing}",
        "yesss",
        "miss youuu",
        "{place} tonight?",
        "that's amazing",
        "im so excited for {time}",
        "send me the pics",
        "noooo",
        "cant wait to {activity}",
        "love that",
        "you're the best",
        "stoppp",
        "{food} again?",
    ),
    answers=("yes yes yes", "noo not yet", "maybe!", "of course"),
    closing=("love you, bye", "see you {time}", "night night", "talk soon"),
    emoji=(1, 3),
    media=0.09,
    forwards=0.003,
)
_EDWARD = _Style(
    opening=(
        "Good afternoon, Alex. I hope this message finds you well.",
        "Good morning. Might I ask whether you are available {time}?",
        "Dear Alex, I trust your week is going smoothly.",
        "Hello, Alex. I wanted to follow up on our conversation about {thing}.",
    ),
    middle=(
        "Thank you for letting me know; I shall look into {thing} this evening.",
        "Would {time} be convenient for you?",
        "I must say, {place} exceeded my expectations.",
        "That is an excellent point, and I had not considered it.",
        "I am afraid I have a prior engagement, but perhaps we could {activity} {time}.",
        "Indeed, I read a rather thorough review of {thing}.",
        "Please do let me know if anything changes.",
        "Splendid. I shall make the necessary arrangements.",
        "I have no strong opinion on the matter, although {place} would be my preference.",
    ),
    answers=(
        "Yes, {time} would suit me perfectly.",
        "Regrettably, no; I have not yet had the opportunity.",
        "I believe so, although I shall confirm {time}.",
    ),
    closing=(
        "Kind regards, Edward.",
        "Until then, take care.",
        "Thank you, and have a pleasant evening.",
        "I look forward to it.",
    ),
    bursts=((1, 92), (2, 8)),
    punctuated=True,
    pii=("Please note my direct line: {phone_uk}.", "For the deposit, my IBAN is {iban}."),
    forwards=0.003,
    media=0.01,
)
_KATE = _Style(
    opening=("Hi! Quick one", "Morning", "Are you around?", "Hey, got a sec?"),
    middle=(
        "Can you send me the slides?",
        "Meeting moved to {time}",
        "Thanks!",
        "Did you get my email?",
        "I'll be a bit late",
        "Sounds good",
        "Are we still doing {activity}?",
        "Lunch {time}?",
        "Let's sync {time}",
    ),
    closing=("Thanks, see you {time}", "Great, thanks!", "Talk later"),
    pii=("Call me on {phone_uk}", "Email me at {email}"),
)
_GROUP_EN = _Style(
    opening=("Hi all!", "Morning everyone", "Anyone around?", "Hey folks"),
    middle=(
        "Agreed",
        "Has anyone read {thing} yet?",
        "I'd vote for {place}",
        "Can we do {time} instead?",
        "Sorry, running late",
        "That chapter was wild",
        "+1",
        "I can bring {food}",
        "Who's hosting {time}?",
    ),
    closing=("See you all {time}", "Bye all", "Thanks everyone"),
)
_DELETED_FRIEND = _Style(
    opening=("Hey, long time no see!", "Hi, is this still your number?"),
    middle=(
        "How have you been?",
        "I'm moving abroad next month",
        "We should catch up {time}",
        "Miss the old days",
    ),
    closing=("Take care!", "Bye for now"),
)
_PYTHON_LEARNER = _Style(
    opening=("How do I {py_task}?", "Quick question about {py_thing}", "What's the best way to {py_task}?"),
    middle=(
        "Use {py_tool}, it's way easier",
        "Check the official docs on {py_thing}",
        "That's a classic gotcha with {py_thing}",
        "Did you try {py_tool}?",
        "+1",
        "Thanks, that worked!",
        "Read PEP 8 first",
        "Works on my machine 🤷",
        "Anyone know why {py_thing} is so slow?",
        "Is {py_thing} worth learning this year?",
    ),
    bursts=((1, 85), (2, 15)),
    pii=("DM me, {phone_us}",),
    media=0.01,
)
_CRYPTO_SHILL = _Style(
    opening=("🚀🚀 {coin} to the moon", "Signal: buy {coin} at {price}"),
    middle=(
        "{coin} pumping!!!",
        "Admins please ban the spammers",
        "Signal: sell {coin} at {price}",
        "Who bought {coin}?",
        "Send to card {card} for VIP signals",
    ),
    bursts=((1, 80), (2, 20)),
)


_CITIES = ("London", "Lisbon", "Berlin", "Tbilisi", "Porto")


def _bot_command_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    if phase == "open" and rng.random() < 0.3:
        fill["city"] = "London"  # the bot's default city
        return [{"type": "bot_command", "text": rng.choice(("/start", "/help"))}]
    city = fill["city"] = rng.choice(_CITIES)
    return [{"type": "bot_command", "text": "/weather"}, " " + city]


def _bot_reply_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    city = fill.get("city") or "London"  # the city of the command being answered
    sky = ("sunny", "cloudy", "light rain", "windy", "clear")
    return f"🌤 {city}: {rng.randint(8, 31)}°C, {rng.choice(sky)}.\nTomorrow: {rng.randint(8, 31)}°C, {rng.choice(sky)}."


def _news_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    headline = rng.choice(_NEWS_HEADLINES)
    return [
        {"type": "bold", "text": headline},
        f"\n\n{rng.choice(('A short read', 'Worth your coffee break', 'Long but good'))}: ",
        {"type": "link", "text": _url(rng)},
        "\n\n",
        {"type": "hashtag", "text": rng.choice(_NEWS_TAGS)},
    ]


def _family_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    return rng.choice(
        (
            "Grandma's garden this week 🌷",
            "Leo's first day at school!",
            "Sunday lunch at Mum's",
            "The lake was freezing but we swam anyway",
            "",
            "",
        )
    )


def _codes_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    app = rng.choice(("SampleShop", "Example Bank", "DemoMail"))
    return f"Your {app} code: {rng.randint(100000, 999999)}. Do not give this code to anyone."


def _replies_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    return rng.choice(
        (
            "Totally agree with your comment!",
            "Source?",
            "This aged well",
            "You should write a blog post about it",
            "Not sure that's right, see the docs",
        )
    )


def _notes_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    return rng.choice(
        (
            "Buy: milk, eggs, coffee, batteries",
            "Ideas: {thing}, {activity}".format_map(fill),
            "Passport renewal, check dates!",
            "Dentist {time}".format_map(fill),
            "Wifi at the cabin: the card is in the kitchen drawer",
            "Gift idea for Mum: a good teapot",
        )
    )


def _apartment_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    return rng.choice(
        (
            f"Viewing on Elm Road {rng.choice(_TIME_EN)}",
            "Too expensive",
            "Ask about the deposit",
            "Called the agent, no answer",
            "Nice light but tiny kitchen",
            "This one has a balcony!",
        )
    )


def _oldjob_maker(rng: random.Random, fill: _Fill, phase: str) -> _Text:
    return rng.choice(
        (
            "Reminder: the office is closed on Monday.",
            "Pizza in the kitchen at 4!",
            "New coffee machine on the 3rd floor.",
            "Fire drill tomorrow at 11.",
        )
    )


def _single(maker: Callable[[random.Random, _Fill, str], _Text], **kwargs: Any) -> _Style:
    return _Style(opening=(), middle=(), maker=maker, **kwargs)


_BOT_USER = _single(_bot_command_maker, bursts=((1, 1),), media=0.0)
_BOT = _single(_bot_reply_maker, bursts=((1, 1),), media=0.0, reply_delay=(1, 3))
_NEWS = _single(_news_maker, bursts=((1, 85), (2, 15)), media=0.1)
_FAMILY = _single(_family_maker, bursts=((1, 60), (2, 25), (3, 15)), media=0.9)
_CODES = _single(_codes_maker, bursts=((1, 1),), media=0.0)
_REPLIES = _single(_replies_maker, bursts=((1, 1),), media=0.0)
_NOTES = _single(_notes_maker, bursts=((1, 70), (2, 30)), media=0.1)
_APARTMENT = _single(_apartment_maker, bursts=((1, 60), (2, 30), (3, 10)), media=0.05)
_OLDJOB = _single(_oldjob_maker, bursts=((1, 1),), media=0.0)


# ----------------------------------------------------------------------------------------------------
# Serialization in Telegram's layout: a message sits at nesting depth 5, its keys at 6, nested values deeper.

_K = ",\n      "
_NOT_INCLUDED = "(File not included. Change data exporting settings to download.)"
_TOO_BIG = "(File exceeds maximum size. Change data exporting settings to download.)"
_NO_NAME = object()  # saved_messages, replies and verification_codes chats have no "name" key at all


def _nested(value: Any, depth: int) -> str:
    # json's indent=1 layout is Telegram's; only the continuation lines need the outer depth.
    return json.dumps(value, ensure_ascii=False, indent=1).replace("\n", "\n" + " " * depth)


def _kv(key: str, raw: str | int) -> str:
    return f'{_K}"{key}": {raw}'


def _normalize(parts: list[Any]) -> _Text:
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


def _text_fields(text: _Text) -> str:
    if isinstance(text, str):
        if not text:
            return _K + '"text": ""' + _K + '"text_entities": []'
        quoted = encode_basestring(text)
        return (
            _K
            + '"text": '
            + quoted
            + _K
            + '"text_entities": [\n       {\n        "type": "plain",\n        "text": '
            + quoted
            + "\n       }\n      ]"
        )
    entities = [part if isinstance(part, dict) else {"type": "plain", "text": part} for part in text]
    return _K + '"text": ' + _nested(text, 6) + _K + '"text_entities": ' + _nested(entities, 6)


def flat_text(text: _Text) -> str:
    """The plain text of a message's ``text`` field (a string, or a list of strings and entity objects)."""
    if isinstance(text, str):
        return text
    return "".join(part if isinstance(part, str) else part["text"] for part in text)


def _decorate(rng: random.Random, text: str) -> _Text:
    """Turn a plain message into an entity list: emphasise a word, or add a link."""
    words = text.split(" ")
    if len(words) >= 3 and rng.random() < 0.6:
        i = rng.randrange(len(words))
        kind = rng.choice(("bold", "italic", "underline", "strikethrough", "spoiler", "code"))
        return _normalize([" ".join(words[:i]) + " " * (i > 0), {"type": kind, "text": words[i]}, *_tail(words, i)])
    link = _url(rng)
    if rng.random() < 0.5:
        return _normalize([text + " ", {"type": "link", "text": link}])
    return _normalize(
        [
            {"type": "text_link", "text": words[0], "href": link},
            (" " + " ".join(words[1:])) if words[1:] else "",
        ]
    )


def _tail(words: list[str], i: int) -> list[str]:
    return [" " + " ".join(words[i + 1 :])] if i + 1 < len(words) else []


# ----------------------------------------------------------------------------------------------------
# Peers and chats.


class _Peer:
    """A message author as Telegram writes it: ``from`` (maybe null) and ``from_id``."""

    __slots__ = ("_actor", "_actor_old", "_from", "_from_old", "from_id", "name", "old_name", "renamed_at")

    def __init__(self, name: str | None, from_id: str, old_name: str | None = None) -> None:
        self.name = name
        self.old_name = old_name
        self.from_id = from_id
        self.renamed_at = END_UNIXTIME - 100 * 86400
        quoted = "null" if name is None else encode_basestring(name)
        self._from = f'{_K}"from": {quoted}{_K}"from_id": "{from_id}"'
        self._actor = f'{_K}"actor": {quoted}{_K}"actor_id": "{from_id}"'
        if old_name is not None:
            quoted_old = encode_basestring(old_name)
            self._from_old = f'{_K}"from": {quoted_old}{_K}"from_id": "{from_id}"'
            self._actor_old = f'{_K}"actor": {quoted_old}{_K}"actor_id": "{from_id}"'
        else:
            self._from_old = self._from
            self._actor_old = self._actor

    def name_at(self, ts: int) -> str | None:
        return self.old_name if self.old_name is not None and ts < self.renamed_at else self.name

    def from_fields(self, ts: int) -> str:
        return self._from_old if ts < self.renamed_at else self._from

    def actor_fields(self, ts: int) -> str:
        return self._actor_old if ts < self.renamed_at else self._actor


def _user(name: str | None, user_id: int, old_name: str | None = None) -> _Peer:
    return _Peer(name, f"user{user_id}", old_name)


def _local(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts + UTC_OFFSET_SECONDS))


class _Out:
    """The output file, written in blocks so that the export never sits in memory."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.buffer: list[str] = []
        self.messages = 0
        self.per_speaker: Counter[str] = Counter()
        self.file_counter = itertools.count(1)

    def write(self, block: str) -> None:
        self.buffer.append(block)
        if len(self.buffer) >= 4096:
            self.flush()

    def flush(self) -> None:
        self.handle.write("".join(self.buffer))
        self.buffer.clear()


class _Chat:
    """One chat being written: its clock, its message ids, and the serializer for its messages."""

    def __init__(self, out: _Out, rng: random.Random, *, first_id: int, skip_rate: float, skip_max: int) -> None:
        self.out = out
        self.rng = rng
        self.t = END_UNIXTIME
        self.last_id = first_id - 1
        self.skip_rate = skip_rate
        self.skip_max = skip_max
        self.recent: list[int] = []
        self.first = True
        self.count = 0

    def _next_id(self) -> int:
        # Private chats share one id counter per account and messages get deleted, so ids have holes.
        step = 1 + (self.rng.randint(1, self.skip_max) if self.rng.random() < self.skip_rate else 0)
        self.last_id += step
        return self.last_id

    def _emit(self, mid: int, body: str) -> int:
        self.out.write(("\n     {" if self.first else ",\n     {") + body + "\n     }")
        self.first = False
        self.count += 1
        self.out.messages += 1
        self.recent.append(mid)
        if len(self.recent) > 32:
            del self.recent[:16]
        return mid

    def head(self, mid: int, kind: str, ts: int) -> str:
        return f'\n      "id": {mid}{_K}"type": "{kind}"{_K}"date": "{_local(ts)}"{_K}"date_unixtime": "{ts}"'

    def say(
        self,
        peer: _Peer,
        text: _Text,
        *,
        media: str = "",
        edited_after: int = 0,
        author: str = "",
        forwarded_from: str = "",
        saved_from: str = "",
        reply_to: int = 0,
        reply_peer: str = "",
        via_bot: str = "",
        reactions: list[dict[str, Any]] | None = None,
    ) -> int:
        """Write one ordinary message; ``forwarded_from`` and ``saved_from`` are raw JSON (a name or null)."""
        mid = self._next_id()
        ts = self.t
        parts = [self.head(mid, "message", ts)]
        if edited_after:
            edited = ts + edited_after
            parts.append(f'{_K}"edited": "{_local(edited)}"{_K}"edited_unixtime": "{edited}"')
        parts.append(peer.from_fields(ts))
        if author:
            parts.append(_kv("author", encode_basestring(author)))
        if forwarded_from:
            parts.append(_kv("forwarded_from", forwarded_from))
        if saved_from:
            parts.append(_kv("saved_from", saved_from))
        if reply_to:
            parts.append(_kv("reply_to_message_id", reply_to))
            if reply_peer:
                parts.append(_kv("reply_to_peer_id", f'"{reply_peer}"'))
        if via_bot:
            parts.append(_kv("via_bot", encode_basestring(via_bot)))
        parts.append(media)
        parts.append(_text_fields(text))
        if reactions:
            parts.append(_kv("reactions", _nested(reactions, 6)))
        self.out.per_speaker[peer.from_id] += 1
        return self._emit(mid, "".join(parts))

    def service(self, actor: _Peer, action: str, fields: Sequence[tuple[str, Any]] = ()) -> int:
        """Write one service message: ``actor``/``actor_id``/``action`` instead of ``from``; empty text."""
        mid = self._next_id()
        ts = self.t
        parts = [self.head(mid, "service", ts), actor.actor_fields(ts), _kv("action", f'"{action}"')]
        parts.extend(_kv(key, _nested(value, 6)) for key, value in fields)
        parts.append(_K + '"text": ""' + _K + '"text_entities": []')
        return self._emit(mid, "".join(parts))

    def reply_target(self) -> int:
        return self.rng.choice(self.recent) if self.recent else 0


# ----------------------------------------------------------------------------------------------------
# Media as Telegram lists it: a path or a "not included" note, sizes, type, mime, duration, dimensions.


def _file_date(ts: int) -> str:
    return time.strftime("%d-%m-%Y_%H-%M-%S", time.gmtime(ts + UTC_OFFSET_SECONDS))


def _photo(chat: _Chat, *, included: bool | None = None) -> str:
    rng = chat.rng
    if included is None:
        included = rng.random() < 0.7
    n = next(chat.out.file_counter)
    path = f"photos/photo_{n}@{_file_date(chat.t)}.jpg" if included else _NOT_INCLUDED
    w, h = rng.choice(((1280, 960), (960, 1280), (1280, 720), (1080, 1080), (2560, 1920)))
    return (
        _kv("photo", encode_basestring(path))
        + _kv("photo_file_size", rng.randint(40_000, 400_000))
        + _kv("width", w)
        + _kv("height", h)
    )


def _document(
    chat: _Chat,
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
    parts = [_kv("file", encode_basestring(path))]
    if file_name:
        parts.append(_kv("file_name", encode_basestring(file_name)))
    parts.append(_kv("file_size", size))
    if thumb:
        thumb_path = f"{path}_thumb.jpg" if included else _NOT_INCLUDED
        parts.append(_kv("thumbnail", encode_basestring(thumb_path)))
        parts.append(_kv("thumbnail_file_size", 900 + size % 24_000))
    if media_type:
        parts.append(_kv("media_type", f'"{media_type}"'))
    if emoji:
        parts.append(_kv("sticker_emoji", encode_basestring(emoji)))
    parts.append(_kv("mime_type", f'"{mime}"'))
    if duration:
        parts.append(_kv("duration_seconds", duration))
    if dims:
        parts.append(_kv("width", dims[0]) + _kv("height", dims[1]))
    return "".join(parts)


def _sticker(chat: _Chat, *, emoji: str | None = None) -> str:
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
        emoji=rng.choice(_STICKER_EMOJI) if emoji is None else emoji,
        dims=(512, 512),
        file_name="AnimatedSticker.tgs" if animated else "sticker.webp",
    )


def _voice(chat: _Chat) -> str:
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


def _round_video(chat: _Chat) -> str:
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


def _animation(chat: _Chat) -> str:
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


def _video(chat: _Chat, *, too_big: bool = False) -> str:
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


def _pdf(chat: _Chat, name: str) -> str:
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


_RANDOM_MEDIA: tuple[Callable[[_Chat], str], ...] = (
    _sticker,
    _photo,
    _voice,
    _animation,
    _video,
    _round_video,
)
_RANDOM_MEDIA_CUM = list(itertools.accumulate((36, 32, 12, 8, 7, 5)))
_CAPTIONED = {_photo, _video}


def _random_media(chat: _Chat) -> tuple[Callable[[_Chat], str], str]:
    kind = _RANDOM_MEDIA[bisect.bisect(_RANDOM_MEDIA_CUM, chat.rng.random() * _RANDOM_MEDIA_CUM[-1])]
    return kind, kind(chat)


# ----------------------------------------------------------------------------------------------------
# The engine: conversations separated by hours or days, turns minutes apart, bursts seconds apart.

_DAY_GAP_RATE = 0.12
_NIGHT_HOURS = 7
# What sleeping and the occasional multi-day gap add to a conversation gap on average, once gaps are short.
_GAP_OVERHEAD = 3 * 3600
_Special = Callable[[_Chat], Any]


@dataclass
class _Member:
    peer: _Peer
    style: _Style
    weight: float = 1.0
    reacts: bool = True


@dataclass
class _Plan:
    """One chat to write: who speaks how, how big it is, and which edge cases it must contain."""

    name: object  # str, None (a deleted account), or _NO_NAME
    type: str
    id: int
    members: list[_Member]
    weight: float
    alternate: bool = False  # personal and bot chats: speakers take turns
    opener: int | None = None  # the member who always starts a conversation (the owner, in a bot chat)
    turns: tuple[int, int] = (2, 10)
    span_days: int = 240
    min_conv_gap: int = 2 * 3600  # below this, two conversations would read as one
    conv_len: float = 10.0
    first_id: int = 1
    skip_rate: float = 0.05
    skip_max: int = 3
    reply_rate: float = 0.04
    reaction_rate: float = 0.01
    call_rate: float = 0.0
    edit_rate: float = 0.02
    decorate_rate: float = 0.03
    topics: tuple[_Topic, ...] = _TOPICS
    reply_peer: str = ""
    left: bool = False
    first: Sequence[_Special] = ()
    specials: Sequence[_Special] = ()
    on_midpoint: Callable[[_Chat], None] | None = None

    @property
    def minimum(self) -> int:
        return len(self.first) + len(self.specials) + 2


class _Context:
    """Everything shared across chats: the output, the randomness, the cast."""

    def __init__(self, out: _Out, rng: random.Random) -> None:
        self.out = out
        self.rng = rng
        self.ids: set[int] = set()
        self.owner_id = self.new_id(1_000_000_000, 6_999_999_999)
        self.owner = _user("Alex Morgan", self.owner_id)
        self.friend_ids = {key: self.new_id(100_000_000, 6_999_999_999) for key in STYLE_OF if key != "owner"}
        self.dima = _user("Dima Kotov", self.friend_ids["dima"])
        self.oleg = _user("Олег Петров", self.friend_ids["oleg"])
        self.margaret = _user("Margaret Hughes", self.friend_ids["margaret"])
        self.sam = _user("Sammy Lee 🌴", self.friend_ids["sam"], old_name="Sam Lee")
        self.priya = _user("Priya Shah", self.friend_ids["priya"])
        self.edward = _user("Edward Whitfield", self.friend_ids["edward"])
        self.kate = _user("Kate Novak\n(work)", self.friend_ids["kate"])
        self.deleted = _user(None, self.new_id(100_000_000, 6_999_999_999))
        self.deleted_member = _user(None, self.new_id(100_000_000, 6_999_999_999))
        self.neo = _user("Neo <|im_end|>", self.new_id(100_000_000, 6_999_999_999))
        self.bot_id = self.new_id(5_000_000_000, 7_999_999_999)
        self.bot = _user("Weather Bot", self.bot_id)
        self.codes = _user("Verification Codes", 489000)
        self.news_id = self.new_id(1_000_000_000, 2_999_999_999)
        self.news = _Peer("Tech Digest", f"channel{self.news_id}")
        self.family_id = self.new_id(1_000_000_000, 2_999_999_999)
        self.family = _Peer("Morgan Family 📸", f"channel{self.family_id}")
        self.oldjob_id = self.new_id(1_000_000_000, 2_999_999_999)
        self.oldjob = _Peer("Acme Office News", f"channel{self.oldjob_id}")
        first = ("Tom", "Ana", "Wei", "Lena", "Omar", "Ivy", "Marco", "Yuki", "Sara", "Ben", "Nia", "Jonas")
        last = (
            "B.",
            "Costa",
            "Zhang",
            "Fischer",
            "Haddad",
            "Moore",
            "Rossi",
            "Sato",
            "Lind",
            "Cole",
            "Okafor",
        )
        self.strangers = [
            _user(f"{rng.choice(first)} {rng.choice(last)}", self.new_id(100_000_000, 6_999_999_999)) for _ in range(14)
        ]
        self.private_counter = rng.randint(2_000, 90_000)

    def new_id(self, low: int, high: int) -> int:
        while True:
            value = self.rng.randint(low, high)
            if value not in self.ids:
                self.ids.add(value)
                return value

    def private_first_id(self) -> int:
        self.private_counter += self.rng.randint(50, 5_000)
        return self.private_counter


def _allocate(plans: Sequence[_Plan], total: int) -> list[int]:
    """Split ``total`` messages over the chats by weight, honouring each chat's minimum, summing exactly."""
    weight = sum(p.weight for p in plans)
    counts = [max(p.minimum, int(total * p.weight / weight)) for p in plans]
    order = sorted(range(len(plans)), key=lambda i: -plans[i].weight)
    diff = total - sum(counts)
    i = 0
    while diff:
        j = order[i % len(order)]
        if diff > 0:
            counts[j] += 1
            diff -= 1
        elif counts[j] > plans[j].minimum:
            counts[j] -= 1
            diff += 1
        i += 1
    return counts


def _positions(count: int, n_first: int, n_specials: int) -> list[int]:
    # Specials spread evenly through the chat, after the ones that must open it.
    room = count - n_first
    return [n_first + (k + 1) * room // (n_specials + 1) for k in range(n_specials)]


def _write_chat(ctx: _Context, plan: _Plan, n: int, rng: random.Random) -> None:
    out = ctx.out
    header = ["\n   {"]
    if plan.name is not _NO_NAME:
        quoted = "null" if plan.name is None else encode_basestring(str(plan.name))
        header.append(f'\n    "name": {quoted},')
    header.append(f'\n    "type": "{plan.type}",\n    "id": {plan.id},\n    "messages": [')
    out.write("".join(header))
    chat = _Chat(out, rng, first_id=plan.first_id, skip_rate=plan.skip_rate, skip_max=plan.skip_max)
    _converse(chat, plan, n)
    out.write("\n    ]\n   }")


def _converse(chat: _Chat, plan: _Plan, n: int) -> None:
    rng = chat.rng
    members = plan.members
    weights = list(itertools.accumulate(m.weight for m in members))
    est_convs = max(1.0, n / plan.conv_len)
    # A big chat needs more than span_days: it starts as early as its conversations, at their densest, need.
    span = max(plan.span_days * 86400.0 * rng.uniform(0.85, 1.15), est_convs * (plan.min_conv_gap + _GAP_OVERHEAD))
    chat.t = END_UNIXTIME - int(span) - rng.randint(0, 86400)
    _wake_up(chat)
    specials = dict(zip(_positions(n, len(plan.first), len(plan.specials)), plan.specials, strict=True))
    for special in plan.first:
        special(chat)
        chat.t += rng.randint(20, 600)
    midpoint = n // 2
    conv = 0
    while chat.count < n:
        if conv:
            remaining = max(1.0, (n - chat.count) / plan.conv_len)
            _next_conversation(chat, plan, remaining, force_days=conv == 1)
        conv += 1
        fill = _Fill(rng, rng.choice(plan.topics))
        n_turns = rng.randint(*plan.turns)
        speaker = plan.opener
        if speaker is None:
            speaker = rng.randrange(len(members)) if plan.alternate else -1
        asked = False
        first_message = True
        for turn in range(n_turns):
            if turn:
                speaker = (speaker + 1) % len(members) if plan.alternate else _pick(rng, weights, speaker)
            elif not plan.alternate and plan.opener is None:
                speaker = _pick(rng, weights, speaker)
            member = members[speaker]
            style = member.style
            closing = turn == n_turns - 1 and turn > 0
            burst = style.burst(rng)
            for j in range(burst):
                if chat.count >= n:
                    return
                if chat.count == midpoint and plan.on_midpoint is not None:
                    plan.on_midpoint(chat)
                special = specials.get(chat.count)
                if special is not None:
                    chat.t += rng.randint(15, 400)
                    special(chat)
                    first_message = False
                    continue
                phase = "open" if first_message else "close" if closing and j == burst - 1 else "mid"
                text = style.text(rng, fill, phase, asked)
                if not first_message:
                    if j:
                        chat.t += rng.randint(1, 15)
                    elif style.reply_delay:
                        chat.t += rng.randint(*style.reply_delay)
                    else:
                        chat.t += min(1800, 5 + int(rng.lognormvariate(4.0, 1.0)))
                first_message = False
                # Typing takes time: long messages arrive later after the previous one.
                chat.t += len(text) // 8 if isinstance(text, str) else 4
                asked = isinstance(text, str) and text.endswith("?")
                _ordinary(chat, plan, member, text)


def _pick(rng: random.Random, cum_weights: list[float], previous: int) -> int:
    if len(cum_weights) == 1:
        return 0
    while True:
        i = bisect.bisect(cum_weights, rng.random() * cum_weights[-1])
        if i != previous:
            return i


def _next_conversation(chat: _Chat, plan: _Plan, remaining_convs: float, *, force_days: bool) -> None:
    rng = chat.rng
    # Spread the time left over the conversations left, so that every chat ends near END_UNIXTIME.
    mean_gap = (END_UNIXTIME - chat.t) / remaining_convs
    if force_days or rng.random() < (_DAY_GAP_RATE if mean_gap > 43_200 else 0.02):
        # Whole days plus a few minutes: `timedelta.seconds` sees only the minutes and would merge these.
        chat.t += rng.randint(1, 3) * 86400 + rng.randint(2, 9) * 60 + rng.randint(0, 59)
        return
    extra = max(mean_gap - plan.min_conv_gap - _GAP_OVERHEAD, 600.0)
    gap = plan.min_conv_gap + rng.expovariate(1.0 / extra)
    # One long draw must not carry a chat far past the end: at most half of the time left.
    chat.t += int(min(gap, max(plan.min_conv_gap, (END_UNIXTIME - chat.t) / 2)))
    _wake_up(chat)


def _wake_up(chat: _Chat) -> None:
    hour = (chat.t + UTC_OFFSET_SECONDS) // 3600 % 24
    if 1 <= hour < 1 + _NIGHT_HOURS:  # people sleep: the conversation starts that many hours later
        chat.t += _NIGHT_HOURS * 3600


def _ordinary(chat: _Chat, plan: _Plan, member: _Member, text: _Text) -> None:
    rng = chat.rng
    style = member.style
    if rng.random() < plan.call_rate:
        _call(chat, member.peer if rng.random() < 0.5 else plan.members[-1].peer)
        return
    media = ""
    via_bot = ""
    if rng.random() < style.media:
        kind, media = _random_media(chat)
        if kind not in _CAPTIONED or rng.random() < 0.6:
            text = ""
        if kind is _animation and rng.random() < 0.3:
            via_bot = "@gif"
    forwarded = ""
    if style.forwards and rng.random() < style.forwards:
        forwarded = '"Tech Digest"'
        text = _news_maker(rng, _Fill(rng, {}), "mid")
        media = ""
    elif text and isinstance(text, str) and rng.random() < plan.decorate_rate:
        suffix = style.suffix or (text[-1] if style.punctuated else "")
        if suffix and text.endswith(suffix) and len(text) > len(suffix):
            # The style's ending stays the ending, whatever the decoration.
            decorated = _decorate(rng, text[: -len(suffix)])
            text = _normalize([*(decorated if isinstance(decorated, list) else [decorated]), suffix])
        else:
            text = _decorate(rng, text)
    reply_to = 0
    if plan.reply_peer:
        reply_to = rng.randint(100, 9_000)
    elif rng.random() < plan.reply_rate:
        reply_to = chat.reply_target()
    edited = rng.randint(20, 900) if text and rng.random() < plan.edit_rate else 0
    reactions = None
    if rng.random() < plan.reaction_rate:
        reactor = rng.choice(plan.members)
        if reactor.reacts and reactor.peer is not member.peer:
            reactions = [_reaction(chat, reactor.peer)]
    chat.say(
        member.peer,
        text,
        media=media,
        forwarded_from=forwarded,
        reply_to=reply_to,
        reply_peer=plan.reply_peer,
        via_bot=via_bot,
        edited_after=edited,
        reactions=reactions,
    )


def _reaction(chat: _Chat, peer: _Peer) -> dict[str, Any]:
    ts = chat.t + chat.rng.randint(5, 3_000)
    return {
        "type": "emoji",
        "count": 1,
        "emoji": chat.rng.choice(("❤", "👍", "😁", "🔥", "🤣")),
        "recent": [{"from": peer.name_at(ts), "from_id": peer.from_id, "date": _local(ts)}],
    }


def _call(chat: _Chat, actor: _Peer, *, missed: bool | None = None) -> None:
    rng = chat.rng
    if missed is None:
        missed = rng.random() < 0.3
    if missed:
        chat.service(actor, "phone_call", [("discard_reason", "missed")])
    else:
        duration = rng.randint(15, 3_600)
        chat.service(actor, "phone_call", [("duration_seconds", duration), ("discard_reason", "hangup")])


# ----------------------------------------------------------------------------------------------------
# The cast of chats, with the edge cases each one is guaranteed to contain.


def _plans(ctx: _Context) -> list[_Plan]:
    o = ctx.owner
    owner = _Member(o, _OWNER_EN)
    tech = '"Tech Digest"'
    chats: list[_Plan] = []

    def personal(peer: _Peer, style: _Style, weight: float, **kwargs: Any) -> _Plan:
        owner_style = kwargs.pop("owner_style", _OWNER_EN)
        plan = _Plan(
            name=peer.name,
            type="personal_chat",
            id=int(peer.from_id.removeprefix("user")),
            members=[_Member(peer, style), _Member(o, owner_style)],
            weight=weight,
            alternate=True,
            first_id=ctx.private_first_id(),
            skip_rate=0.3,
            skip_max=30,
            call_rate=0.003,
            **kwargs,
        )
        chats.append(plan)
        return plan

    chats.append(
        _Plan(
            name=_NO_NAME,
            type="saved_messages",
            id=ctx.owner_id,
            members=[_Member(o, _NOTES)],
            weight=1.2,
            turns=(1, 1),
            conv_len=1.3,
            min_conv_gap=20 * 60,
            span_days=400,
            first_id=ctx.private_first_id(),
            skip_rate=0.3,
            skip_max=30,
            reply_rate=0.0,
            specials=(
                lambda c: c.say(o, _news_maker(c.rng, _Fill(c.rng, {}), "mid"), forwarded_from=tech, saved_from=tech),
                lambda c: c.say(o, "Found this in an old chat, keep it", forwarded_from="null"),
                lambda c: c.service(o, "pin_message", [("message_id", c.recent[-1])]),
            ),
        )
    )
    personal(
        ctx.dima,
        _DIMA,
        13,
        conv_len=8.5,
        specials=(
            lambda c: c.say(ctx.dima, "omw, 5 min late sorry))", edited_after=47),
            lambda c: _call(c, o, missed=False),
            lambda c: _call(c, ctx.dima, missed=True),
            lambda c: _reply_to_deleted(c, o, "Haha what did you delete"),
            lambda c: c.say(ctx.dima, [{"type": "link", "text": _url(c.rng)}, " look at this))"]),
        ),
    )
    personal(
        ctx.priya,
        _PRIYA,
        10,
        conv_len=8,
        specials=(
            lambda c: c.say(ctx.priya, "", media=_sticker(c, emoji="😂")),
            lambda c: c.say(ctx.priya, "", media=_sticker(c, emoji="")),
            lambda c: c.say(ctx.priya, "", media=_photo(c, included=True)),
            lambda c: c.say(o, "View from the hotel haha", media=_photo(c, included=False)),
            lambda c: c.say(o, "", media=_animation(c), via_bot="@gif"),
            lambda c: c.say(ctx.priya, "", media=_voice(c)),
            lambda c: c.say(o, "", media=_round_video(c)),
            lambda c: c.say(ctx.priya, "the waves!! 🌊🌊", media=_video(c, too_big=True)),
            lambda c: c.say(ctx.priya, "", media=_location(51.5074, -0.1278, live=900)),
        ),
    )
    personal(
        ctx.oleg,
        _OLEG,
        11,
        conv_len=9,
        owner_style=_OWNER_RU,
        specials=(
            lambda c: c.say(
                ctx.oleg,
                f"Скинь на карту {_luhn_card(c.rng)}, а если что, звони: {_phone_ru(c.rng)}",
            ),
            lambda c: c.say(o, "", media=_contact("Иван", "Сантехник", _phone_ru(c.rng))),
        ),
    )
    sam_chat = personal(ctx.sam, _SAM, 12, conv_len=16)

    def rename(chat: _Chat) -> None:
        ctx.sam.renamed_at = chat.t

    sam_chat.on_midpoint = rename
    title_before = "Weekend plans"
    chats.append(
        _Plan(
            name="Weekend crew 🏕",
            type="private_group",
            id=ctx.new_id(400_000_000, 999_999_999),
            members=[
                owner,
                _Member(ctx.dima, _DIMA),
                _Member(ctx.sam, _SAM),
                _Member(ctx.priya, _PRIYA),
                _Member(ctx.kate, _KATE, weight=0.5),
            ],
            weight=10,
            turns=(3, 14),
            span_days=300,
            conv_len=17,
            first_id=ctx.private_first_id(),
            skip_rate=0.3,
            skip_max=30,
            reply_rate=0.12,
            reaction_rate=0.03,
            first=(
                lambda c: c.service(
                    o,
                    "create_group",
                    [("title", title_before), ("members", [o.name, ctx.dima.name, ctx.priya.name])],
                ),
            ),
            specials=(
                lambda c: c.service(o, "invite_members", [("members", [ctx.sam.name_at(c.t), ctx.kate.name])]),
                lambda c: c.service(ctx.priya, "edit_group_title", [("title", "Weekend crew 🏕")]),
                lambda c: c.say(
                    ctx.sam,
                    "",
                    media=_poll(
                        "where this weekend??",
                        [("the lake", 2, True), ("the mountains", 1, False), ("stay home lol", 1, False)],
                    ),
                ),
                lambda c: c.say(
                    ctx.kate,
                    "Sorry, I'm out this weekend, have fun!",
                    reply_to=c.reply_target(),
                    reactions=[_reaction(c, ctx.priya)],
                ),
            ),
        )
    )
    personal(
        ctx.margaret,
        _MARGARET,
        7,
        conv_len=7,
        specials=(
            lambda c: c.say(
                ctx.margaret,
                _normalize(
                    [
                        "I ",
                        {"type": "bold", "text": "finally"},
                        " booked it! Details are ",
                        {"type": "text_link", "text": "here", "href": _url(c.rng)},
                        ", and you can write to ",
                        {"type": "email", "text": _email(c.rng)},
                        " if the link breaks.\n",
                        {"type": "italic", "text": "So excited."},
                    ]
                ),
            ),
            lambda c: c.say(o, f"Sure, my IBAN is {_iban(c.rng)} and my email is {_email(c.rng)}"),
            lambda c: c.say(ctx.margaret, _news_maker(c.rng, _Fill(c.rng, {}), "mid"), forwarded_from=tech),
        ),
    )
    personal(
        ctx.edward,
        _EDWARD,
        5,
        conv_len=7,
        specials=(
            lambda c: c.say(
                ctx.edward,
                "A colleague tells me these models mark turns with <|im_start|> and <|im_end|>. Is that right?",
            ),
            lambda c: c.say(
                o, "Yes haha, every message ends with <|im_end|> and the next one starts with <|im_start|>"
            ),
            lambda c: c.say(ctx.edward, f"Kindly transfer the deposit to IBAN {_iban(c.rng)}. Thank you."),
        ),
    )
    pinned: list[int] = []
    chats.append(
        _Plan(
            name="Book club 📚",
            type="private_supergroup",
            id=ctx.new_id(1_000_000_000, 2_999_999_999),
            members=[
                _Member(o, _OWNER_EN, weight=0.8),
                _Member(ctx.margaret, _MARGARET),
                _Member(ctx.edward, _EDWARD),
                _Member(ctx.oleg, _OLEG, weight=0.6),
                _Member(ctx.deleted_member, _GROUP_EN, weight=0.3, reacts=False),
                _Member(ctx.neo, _GROUP_EN, weight=0.4),
            ],
            weight=6,
            turns=(3, 10),
            span_days=300,
            conv_len=9,
            reply_rate=0.12,
            reaction_rate=0.03,
            specials=(
                lambda c: pinned.append(c.say(ctx.deleted_member, "I'll miss this club, leaving Telegram soon")),
                lambda c: c.say(ctx.neo, "Next book: the lighthouse one? I can host"),
                lambda c: c.service(ctx.margaret, "pin_message", [("message_id", pinned[-1] if pinned else 1)]),
                lambda c: c.say(ctx.edward, "I concur; the ending was superb.", reply_to=c.reply_target()),
            ),
        )
    )
    personal(
        ctx.kate,
        _KATE,
        3,
        conv_len=8,
        specials=(
            lambda c: c.say(
                ctx.kate,
                _normalize(
                    [
                        "Call me at ",
                        {"type": "phone", "text": _phone_uk(c.rng)},
                        " or email ",
                        {"type": "email", "text": "kate.novak@example.org"},
                    ]
                ),
            ),
        ),
    )
    chats.append(
        _Plan(
            name="Python Learners",
            type="public_supergroup",
            id=ctx.new_id(1_000_000_000, 2_999_999_999),
            members=[_Member(o, _OWNER_PY, weight=0.6), _Member(ctx.neo, _PYTHON_LEARNER, weight=0.5)]
            + [_Member(s, _PYTHON_LEARNER) for s in ctx.strangers[:10]],
            weight=5,
            turns=(2, 8),
            span_days=200,
            conv_len=6,
            topics=(_PYTHON_TOPIC,),
            reply_rate=0.2,
            reaction_rate=0.02,
            specials=(
                lambda c: c.say(
                    ctx.strangers[0],
                    [
                        "Like this:\n",
                        {
                            "type": "pre",
                            "text": "with open(path) as f:\n    rows = list(f)",
                            "language": "python",
                        },
                    ],
                ),
                lambda c: c.say(
                    o,
                    "The chat template is <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n so watch for that",
                ),
                lambda c: c.say(
                    ctx.strangers[1],
                    [{"type": "mention", "text": "@alexmorgan_sample"}, " thanks, that fixed it"],
                ),
            ),
        )
    )
    chats.append(
        _Plan(
            name="Tech Digest",
            type="public_channel",
            id=ctx.news_id,
            members=[_Member(ctx.news, _NEWS)],
            weight=2,
            turns=(1, 1),
            conv_len=1.2,
            min_conv_gap=20 * 60,
            span_days=365,
            reply_rate=0.0,
            edit_rate=0.05,
            first=(lambda c: c.service(ctx.news, "create_channel", [("title", "Tech Digest")]),),
            specials=(lambda c: c.say(ctx.news, _news_maker(c.rng, _Fill(c.rng, {}), "mid"), author="Anna K."),),
        )
    )
    chats.append(
        _Plan(
            name="Morgan Family 📸",
            type="private_channel",
            id=ctx.family_id,
            members=[_Member(ctx.family, _FAMILY)],
            weight=1.5,
            turns=(1, 1),
            conv_len=1.5,
            min_conv_gap=20 * 60,
            span_days=365,
            reply_rate=0.0,
            first=(lambda c: c.service(ctx.family, "create_channel", [("title", "Morgan Family 📸")]),),
        )
    )
    chats.append(
        _Plan(
            name="Weather Bot",
            type="bot_chat",
            id=ctx.bot_id,
            members=[_Member(o, _BOT_USER), _Member(ctx.bot, _BOT)],
            weight=1.5,
            alternate=True,
            opener=0,
            turns=(2, 4),
            conv_len=3,
            span_days=200,
            first_id=ctx.private_first_id(),
            skip_rate=0.3,
            skip_max=30,
            reply_rate=0.0,
            edit_rate=0.0,
            decorate_rate=0.0,
        )
    )
    chats.append(
        _Plan(
            name="Apartment hunt",
            type="private_supergroup",
            id=ctx.new_id(1_000_000_000, 2_999_999_999),
            # Exported with "only my messages": the others' messages are missing, hence the big id gaps.
            members=[_Member(o, _APARTMENT)],
            weight=1.5,
            turns=(1, 2),
            conv_len=4.5,
            min_conv_gap=20 * 60,
            span_days=120,
            skip_rate=0.8,
            skip_max=12,
            reply_rate=0.0,
            specials=(
                lambda c: c.say(o, [{"type": "link", "text": _url(c.rng)}]),
                lambda c: c.say(o, "The lease draft", media=_pdf(c, "lease_draft.pdf")),
            ),
        )
    )
    chats.append(
        _Plan(
            name=None,
            type="personal_chat",
            id=int(ctx.deleted.from_id.removeprefix("user")),
            members=[_Member(ctx.deleted, _DELETED_FRIEND), owner],
            weight=0.6,
            alternate=True,
            turns=(2, 5),
            conv_len=4,
            span_days=200,
            first_id=ctx.private_first_id(),
            skip_rate=0.3,
            skip_max=30,
        )
    )
    chats.append(
        _Plan(
            name=_NO_NAME,
            type="replies",
            id=1271266957,
            members=[_Member(s, _REPLIES) for s in ctx.strangers[4:]],
            weight=0.6,
            turns=(1, 1),
            conv_len=1,
            min_conv_gap=20 * 60,
            span_days=200,
            first_id=ctx.private_first_id(),
            skip_rate=0.3,
            skip_max=30,
            edit_rate=0.0,
            decorate_rate=0.0,
            reply_peer=f"channel{ctx.news_id}",
        )
    )
    chats.append(
        _Plan(
            name=_NO_NAME,
            type="verification_codes",
            id=489000,
            members=[_Member(ctx.codes, _CODES)],
            weight=0.3,
            turns=(1, 1),
            conv_len=1,
            min_conv_gap=20 * 60,
            span_days=300,
            first_id=ctx.private_first_id(),
            skip_rate=0.3,
            skip_max=30,
            reply_rate=0.0,
            edit_rate=0.0,
            decorate_rate=0.0,
        )
    )
    chats.append(
        _Plan(
            name="Crypto Signals 🚀",
            type="public_supergroup",
            id=ctx.new_id(1_000_000_000, 2_999_999_999),
            members=[_Member(s, _CRYPTO_SHILL) for s in ctx.strangers[6:]],
            weight=1.2,
            turns=(2, 6),
            conv_len=4,
            span_days=90,
            topics=(_CRYPTO_TOPIC,),
            left=True,
            specials=(lambda c: c.say(o, "Not for me, leaving. Good luck all"),),
        )
    )
    chats.append(
        _Plan(
            name="Acme Office News",
            type="private_channel",
            id=ctx.oldjob_id,
            members=[_Member(ctx.oldjob, _OLDJOB)],
            weight=0.6,
            turns=(1, 1),
            conv_len=1,
            min_conv_gap=20 * 60,
            span_days=250,
            reply_rate=0.0,
            left=True,
        )
    )
    return chats


def _reply_to_deleted(chat: _Chat, peer: _Peer, text: str) -> None:
    chat.last_id += 1  # this id belonged to a message that was deleted before the export
    chat.say(peer, text, reply_to=chat.last_id)


def _location(latitude: float, longitude: float, *, live: int = 0) -> str:
    fragment = _kv("location_information", _nested({"latitude": latitude, "longitude": longitude}, 6))
    return fragment + (_kv("live_location_period_seconds", live) if live else "")


def _contact(first_name: str, last_name: str, phone: str) -> str:
    info = {"first_name": first_name, "last_name": last_name, "phone_number": phone}
    return _kv("contact_information", _nested(info, 6))


def _poll(question: str, answers: Sequence[tuple[str, int, bool]]) -> str:
    poll = {
        "question": question,
        "closed": False,
        "total_voters": sum(votes for _, votes, _ in answers),
        "answers": [{"text": text, "voters": votes, "chosen": chosen} for text, votes, chosen in answers],
    }
    return _kv("poll", _nested(poll, 6))


# ----------------------------------------------------------------------------------------------------
# The file.

_ABOUT = (
    "Here is the data you requested. Remember: Telegram is ad free, it doesn't sell your data, "
    "and you can delete your account anytime."
)
_ABOUT_CONTACTS = (
    "If you allow access, contacts are continuously synced with Telegram. This list is a backup of what was synced."
)
_ABOUT_FREQUENT = (
    "This is a list of your frequent contacts: the people you message most and the bots you use. "
    "It is used to suggest recipients."
)
_ABOUT_CHATS = "This page lists all chats from this export."
_ABOUT_LEFT = "This page lists all supergroups and channels from this export that you've left."


def _section(key: str, value: Any) -> str:
    return f'\n "{key}": ' + _nested(value, 1)


def _preamble(ctx: _Context) -> str:
    rng = ctx.rng
    personal = {
        "user_id": ctx.owner_id,
        "first_name": "Alex",
        "last_name": "Morgan",
        "phone_number": _phone_uk(rng),
        "username": "@alexmorgan_sample",
        "bio": "Coffee, climbing, bad puns. Writing from UTC+3.",
    }
    friends = [ctx.dima, ctx.oleg, ctx.margaret, ctx.sam, ctx.priya, ctx.edward, ctx.kate]
    contacts: list[dict[str, Any]] = []
    for peer in friends:
        first, _, last = (peer.name or "").partition(" ")
        added = END_UNIXTIME - rng.randint(400 * 86400, 2_000 * 86400)
        contacts.append(
            {
                "user_id": int(peer.from_id.removeprefix("user")),
                "first_name": first,
                "last_name": last,
                "phone_number": _phone_ru(rng) if peer is ctx.oleg else _phone_uk(rng),
                "date": _local(added),
                "date_unixtime": str(added),
            }
        )
    added = END_UNIXTIME - rng.randint(30 * 86400, 300 * 86400)
    contacts.append(  # saved in the address book but not on Telegram: no user_id
        {
            "first_name": "Ivan",
            "last_name": "Plumber",
            "phone_number": _phone_ru(rng),
            "date": _local(added),
            "date_unixtime": str(added),
        }
    )
    frequent = [
        {"id": int(p.from_id.removeprefix("user")), "category": "people", "type": "user", "name": p.name}
        | {"rating": round(rng.uniform(0.5, 30.0), 6)}
        for p in friends[:5]
    ]
    frequent.append({"id": 140267078, "category": "inline_bots", "type": "user", "name": "GIF Search", "rating": 1.2})
    frequent.append(
        {
            "id": int(ctx.dima.from_id.removeprefix("user")),
            "category": "calls",
            "type": "user",
            "name": ctx.dima.name,
        }
        | {"rating": 2.5}
    )
    return (
        "{\n"
        + f' "about": {encode_basestring(_ABOUT)},'
        + _section("personal_information", personal)
        + ","
        + _section("contacts", {"about": _ABOUT_CONTACTS, "list": contacts})
        + ","
        + _section("frequent_contacts", {"about": _ABOUT_FREQUENT, "list": frequent})
    )


def write_sample_export(path: Path, *, seed: int = 0, messages: int = DEFAULT_MESSAGES) -> SampleExportSummary:
    """Write a synthetic full-account export of ``messages`` messages to ``path`` (see the module doc)."""
    if messages < MIN_MESSAGES:
        raise ValueError(f"need at least {MIN_MESSAGES} messages to fit every edge case, got {messages}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as handle:
            out = _Out(handle)
            ctx = _Context(out, rng)
            plans = _plans(ctx)
            counts = _allocate(plans, messages)
            out.write(_preamble(ctx))
            n_chats = n_left = 0
            for left in (False, True):
                selected = [(plan, n) for plan, n in zip(plans, counts, strict=True) if plan.left is left]
                key, about = ("left_chats", _ABOUT_LEFT) if left else ("chats", _ABOUT_CHATS)
                out.write(f',\n "{key}": {{\n  "about": {encode_basestring(about)},\n  "list": [')
                for i, (plan, n) in enumerate(selected):
                    if i:
                        out.write(",")
                    # Each chat draws from its own stream, so the chats do not shift one another.
                    _write_chat(ctx, plan, n, random.Random(rng.getrandbits(64)))
                out.write("\n  ]\n }")
                if left:
                    n_left = len(selected)
                else:
                    n_chats = len(selected)
            out.write("\n}")
            out.flush()
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    friends = {
        "owner": ctx.owner,
        "dima": ctx.dima,
        "oleg": ctx.oleg,
        "margaret": ctx.margaret,
        "sam": ctx.sam,
        "priya": ctx.priya,
        "edward": ctx.edward,
        "kate": ctx.kate,
    }
    return SampleExportSummary(
        path=path,
        owner_id=ctx.owner_id,
        owner_name=ctx.owner.name or "",
        chats=n_chats,
        left_chats=n_left,
        messages=out.messages,
        per_speaker=MappingProxyType(dict(out.per_speaker.most_common())),
        styles=MappingProxyType({peer.from_id: key for key, peer in friends.items()}),
        size_bytes=path.stat().st_size,
    )
