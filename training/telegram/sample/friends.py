"""The owner's one-to-one chats: with each of the seven friends, and with a friend who deleted their account.

Each function returns the plan of one chat, with the edge cases it is sure to contain.
"""

from __future__ import annotations

from typing import Any

from training.telegram.sample.cast import Context
from training.telegram.sample.conversation import call
from training.telegram.sample.entities import normalize
from training.telegram.sample.makers import (
    FROM_TECH_DIGEST,
    news_post,
)
from training.telegram.sample.media import (
    animation,
    contact,
    location,
    photo,
    round_video,
    sticker,
    video,
    voice,
)
from training.telegram.sample.personal_data import email, iban, luhn_card, phone_ru, phone_uk, url
from training.telegram.sample.plan import Member, Plan
from training.telegram.sample.styles import (
    DELETED_FRIEND,
    DIMA,
    EDWARD,
    KATE,
    MARGARET,
    OLEG,
    OWNER_EN,
    OWNER_RU,
    PRIYA,
    SAM,
)
from training.telegram.sample.templates import Style
from training.telegram.sample.writer import Chat, Peer


def _personal(
    ctx: Context, peer: Peer, style: Style, weight: float, *, owner_style: Style = OWNER_EN, **kwargs: Any
) -> Plan:
    """A friend's chat with the owner: they take turns, and its ids have the holes of a private chat."""
    return Plan(
        name=peer.name,
        type="personal_chat",
        id=int(peer.from_id.removeprefix("user")),
        members=[Member(peer, style), Member(ctx.owner, owner_style)],
        weight=weight,
        alternate=True,
        first_id=ctx.private_first_id(),
        skip_rate=0.3,
        skip_max=30,
        call_rate=0.003,
        **kwargs,
    )


def dima_chat(ctx: Context) -> Plan:
    """Calls both ways, an edited message, a reply to a deleted message, a text that opens with a link."""
    o = ctx.owner
    return _personal(
        ctx,
        ctx.dima,
        DIMA,
        13,
        conv_len=8.5,
        specials=(
            lambda c: c.say(ctx.dima, "omw, 5 min late sorry))", edited_after=47),
            lambda c: call(c, o, missed=False),
            lambda c: call(c, ctx.dima, missed=True),
            lambda c: _reply_to_deleted(c, o, "Haha what did you delete"),
            lambda c: c.say(ctx.dima, [{"type": "link", "text": url(c.rng)}, " look at this))"]),
        ),
    )


def priya_chat(ctx: Context) -> Plan:
    """Every kind of media: stickers with and without emoji, photos, a GIF via @gif, voice, round and too-big video."""
    o = ctx.owner
    return _personal(
        ctx,
        ctx.priya,
        PRIYA,
        10,
        conv_len=8,
        specials=(
            lambda c: c.say(ctx.priya, "", media=sticker(c, emoji="😂")),
            lambda c: c.say(ctx.priya, "", media=sticker(c, emoji="")),
            lambda c: c.say(ctx.priya, "", media=photo(c, included=True)),
            lambda c: c.say(o, "View from the hotel haha", media=photo(c, included=False)),
            lambda c: c.say(o, "", media=animation(c), via_bot="@gif"),
            lambda c: c.say(ctx.priya, "", media=voice(c)),
            lambda c: c.say(o, "", media=round_video(c)),
            lambda c: c.say(ctx.priya, "the waves!! 🌊🌊", media=video(c, too_big=True)),
            lambda c: c.say(ctx.priya, "", media=location(51.5074, -0.1278, live=900)),
        ),
    )


def oleg_chat(ctx: Context) -> Plan:
    """All in Russian, the owner too; a card number and a phone number in one text, a shared contact."""
    o = ctx.owner
    return _personal(
        ctx,
        ctx.oleg,
        OLEG,
        11,
        conv_len=9,
        owner_style=OWNER_RU,
        specials=(
            lambda c: c.say(
                ctx.oleg,
                f"Скинь на карту {luhn_card(c.rng)}, а если что, звони: {phone_ru(c.rng)}",
            ),
            lambda c: c.say(o, "", media=contact("Иван", "Сантехник", phone_ru(c.rng))),
        ),
    )


def sam_chat(ctx: Context) -> Plan:
    """Bursts of short messages; Sam renames at this chat's midpoint, the moment the group chats use too."""
    plan = _personal(ctx, ctx.sam, SAM, 12, conv_len=16)

    def rename(chat: Chat) -> None:
        ctx.sam.renamed_at = chat.t

    plan.on_midpoint = rename
    return plan


def margaret_chat(ctx: Context) -> Plan:
    """Long letters; one rich in entities, the owner's IBAN and e-mail in a text, a forwarded post."""
    o = ctx.owner
    return _personal(
        ctx,
        ctx.margaret,
        MARGARET,
        7,
        conv_len=7,
        specials=(
            lambda c: c.say(
                ctx.margaret,
                normalize(
                    [
                        "I ",
                        {"type": "bold", "text": "finally"},
                        " booked it! Details are ",
                        {"type": "text_link", "text": "here", "href": url(c.rng)},
                        ", and you can write to ",
                        {"type": "email", "text": email(c.rng)},
                        " if the link breaks.\n",
                        {"type": "italic", "text": "So excited."},
                    ]
                ),
            ),
            lambda c: c.say(o, f"Sure, my IBAN is {iban(c.rng)} and my email is {email(c.rng)}"),
            lambda c: c.say(ctx.margaret, news_post(c.rng), forwarded_from=FROM_TECH_DIGEST),
        ),
    )


def edward_chat(ctx: Context) -> Plan:
    """Formal English; the ChatML markers in both directions, and an IBAN."""
    o = ctx.owner
    return _personal(
        ctx,
        ctx.edward,
        EDWARD,
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
            lambda c: c.say(ctx.edward, f"Kindly transfer the deposit to IBAN {iban(c.rng)}. Thank you."),
        ),
    )


def kate_chat(ctx: Context) -> Plan:
    """Short work messages (her display name has a newline); phone and e-mail as entities."""
    return _personal(
        ctx,
        ctx.kate,
        KATE,
        3,
        conv_len=8,
        specials=(
            lambda c: c.say(
                ctx.kate,
                normalize(
                    [
                        "Call me at ",
                        {"type": "phone", "text": phone_uk(c.rng)},
                        " or email ",
                        {"type": "email", "text": "kate.novak@example.org"},
                    ]
                ),
            ),
        ),
    )


def deleted_friend_chat(ctx: Context) -> Plan:
    """A chat with a deleted account: no name, ``from: null``."""
    o = ctx.owner
    return Plan(
        name=None,
        type="personal_chat",
        id=int(ctx.deleted.from_id.removeprefix("user")),
        members=[Member(ctx.deleted, DELETED_FRIEND), Member(o, OWNER_EN)],
        weight=0.6,
        alternate=True,
        turns=(2, 5),
        conv_len=4,
        span_days=200,
        first_id=ctx.private_first_id(),
        skip_rate=0.3,
        skip_max=30,
    )


def _reply_to_deleted(chat: Chat, peer: Peer, text: str) -> None:
    """A reply to a message that is not in the export."""
    chat.last_id += 1  # this id belonged to a message that was deleted before the export
    chat.say(peer, text, reply_to=chat.last_id)
