"""The words the sample export is written with: conversation topics, emoji, sticker emoji and news headlines.

A topic maps a template slot (``{thing}``, ``{place_ru}``, ``{py_tool}``) to the values it may take.
"""

from __future__ import annotations

from collections.abc import Sequence

TIME_EN = (
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

Topic = dict[str, Sequence[str]]


def _topic(**pools: Sequence[str]) -> Topic:
    return {"time": TIME_EN, "time_ru": _TIME_RU, "food": _FOOD, **pools}


TOPICS: tuple[Topic, ...] = (
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
PYTHON_TOPIC = _topic(
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
CRYPTO_TOPIC = _topic(coin=("BTC", "ETH", "SOL", "DOGE", "TON"), price=("0.42", "1.7", "64k", "3.1k", "150"))
EMOJI = (
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
STICKER_EMOJI = ("😂", "👍", "❤️", "😭", "🤔", "😎", "🙈", "🐱", "🔥")

NEWS_HEADLINES = (
    "Python 3.13 ships an experimental free-threaded build",
    "A tiny model beats a giant one on a narrow benchmark",
    "Why your laptop fan spins up when Slack is open",
    "The quiet return of the command line",
    "Researchers teach a robot to fold laundry, slowly",
    "Ten years of Rust in production: what changed",
    "How SQLite became the database in your pocket",
)
NEWS_TAGS = ("#python", "#ai", "#hardware", "#opensource", "#databases", "#rust")
