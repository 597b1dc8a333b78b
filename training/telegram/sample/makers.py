"""Styles whose texts a function makes instead of templates: the weather bot, channels, notes and codes.

Also the owner's commands to the bot, the apartment hunt and the replies to channel comments.
"""

from __future__ import annotations

import random

from training.telegram.sample.entities import Text
from training.telegram.sample.personal_data import url
from training.telegram.sample.templates import Fill, single
from training.telegram.sample.vocabulary import NEWS_HEADLINES, NEWS_TAGS, TIME_EN

#: ``forwarded_from`` (raw JSON) of a post forwarded from the Tech Digest channel.
FROM_TECH_DIGEST = '"Tech Digest"'

_CITIES = ("London", "Lisbon", "Berlin", "Tbilisi", "Porto")


def _bot_command_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
    if phase == "open" and rng.random() < 0.3:
        fill["city"] = "London"  # the bot's default city
        return [{"type": "bot_command", "text": rng.choice(("/start", "/help"))}]
    city = fill["city"] = rng.choice(_CITIES)
    return [{"type": "bot_command", "text": "/weather"}, " " + city]


def _bot_reply_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
    city = fill.get("city") or "London"  # the city of the command being answered
    sky = ("sunny", "cloudy", "light rain", "windy", "clear")
    return f"🌤 {city}: {rng.randint(8, 31)}°C, {rng.choice(sky)}.\nTomorrow: {rng.randint(8, 31)}°C, {rng.choice(sky)}."


def _news_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
    headline = rng.choice(NEWS_HEADLINES)
    return [
        {"type": "bold", "text": headline},
        f"\n\n{rng.choice(('A short read', 'Worth your coffee break', 'Long but good'))}: ",
        {"type": "link", "text": url(rng)},
        "\n\n",
        {"type": "hashtag", "text": rng.choice(NEWS_TAGS)},
    ]


def news_post(rng: random.Random) -> Text:
    """A Tech Digest post as it appears forwarded, saved or signed: it needs no conversation."""
    return _news_maker(rng, Fill(rng, {}), "mid")


def _family_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
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


def _codes_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
    app = rng.choice(("SampleShop", "Example Bank", "DemoMail"))
    return f"Your {app} code: {rng.randint(100000, 999999)}. Do not give this code to anyone."


def _replies_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
    return rng.choice(
        (
            "Totally agree with your comment!",
            "Source?",
            "This aged well",
            "You should write a blog post about it",
            "Not sure that's right, see the docs",
        )
    )


def _notes_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
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


def _apartment_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
    return rng.choice(
        (
            f"Viewing on Elm Road {rng.choice(TIME_EN)}",
            "Too expensive",
            "Ask about the deposit",
            "Called the agent, no answer",
            "Nice light but tiny kitchen",
            "This one has a balcony!",
        )
    )


def _oldjob_maker(rng: random.Random, fill: Fill, phase: str) -> Text:
    return rng.choice(
        (
            "Reminder: the office is closed on Monday.",
            "Pizza in the kitchen at 4!",
            "New coffee machine on the 3rd floor.",
            "Fire drill tomorrow at 11.",
        )
    )


BOT_USER = single(_bot_command_maker, bursts=((1, 1),), media=0.0)
BOT = single(_bot_reply_maker, bursts=((1, 1),), media=0.0, reply_delay=(1, 3))
NEWS = single(_news_maker, bursts=((1, 85), (2, 15)), media=0.1)
FAMILY = single(_family_maker, bursts=((1, 60), (2, 25), (3, 15)), media=0.9)
CODES = single(_codes_maker, bursts=((1, 1),), media=0.0)
REPLIES = single(_replies_maker, bursts=((1, 1),), media=0.0)
NOTES = single(_notes_maker, bursts=((1, 70), (2, 30)), media=0.1)
APARTMENT = single(_apartment_maker, bursts=((1, 60), (2, 30), (3, 10)), media=0.05)
OLDJOB = single(_oldjob_maker, bursts=((1, 1),), media=0.0)
