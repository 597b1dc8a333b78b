"""The account part of the export, before the chats: about, personal information, contacts, frequent contacts.

One contact is saved in the address book but not on Telegram, so it has no ``user_id``.
"""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any

from training.telegram.sample.cast import Context
from training.telegram.sample.clock import END_UNIXTIME, local_time
from training.telegram.sample.personal_data import phone_ru, phone_uk
from training.telegram.sample.writer import nested_json

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
ABOUT_CHATS = "This page lists all chats from this export."
ABOUT_LEFT = "This page lists all supergroups and channels from this export that you've left."


def _section(key: str, value: Any) -> str:
    return f'\n "{key}": ' + nested_json(value, 1)


def preamble(ctx: Context) -> str:
    rng = ctx.rng
    personal = {
        "user_id": ctx.owner_id,
        "first_name": "Alex",
        "last_name": "Morgan",
        "phone_number": phone_uk(rng),
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
                "phone_number": phone_ru(rng) if peer is ctx.oleg else phone_uk(rng),
                "date": local_time(added),
                "date_unixtime": str(added),
            }
        )
    added = END_UNIXTIME - rng.randint(30 * 86400, 300 * 86400)
    contacts.append(  # saved in the address book but not on Telegram: no user_id
        {
            "first_name": "Ivan",
            "last_name": "Plumber",
            "phone_number": phone_ru(rng),
            "date": local_time(added),
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
