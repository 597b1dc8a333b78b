"""Every chat of the export in order, and the account's own chats: saved messages, the bot, Replies, codes.

The chats with friends are planned in :mod:`.friends`; groups and channels in :mod:`.groups`.
"""

from __future__ import annotations

from training.telegram.sample.cast import Context
from training.telegram.sample.friends import (
    deleted_friend_chat,
    dima_chat,
    edward_chat,
    kate_chat,
    margaret_chat,
    oleg_chat,
    priya_chat,
    sam_chat,
)
from training.telegram.sample.groups import (
    apartment_hunt,
    book_club,
    crypto_signals,
    family_channel,
    office_news,
    python_learners,
    tech_digest,
    weekend_crew,
)
from training.telegram.sample.makers import (
    BOT,
    BOT_USER,
    CODES,
    FROM_TECH_DIGEST,
    NOTES,
    REPLIES,
    news_post,
)
from training.telegram.sample.plan import NO_NAME, Member, Plan


def chat_plans(ctx: Context) -> list[Plan]:
    """Every chat of the export, in the order written (``left_chats`` are the plans with ``left=True``).

    The order is part of the output: each plan draws its ids from ``ctx`` as it is made, and Sam renames at the
    midpoint of his own chat, which must therefore be written before the group he is in.
    """
    builders = (
        _saved_messages,
        dima_chat,
        priya_chat,
        oleg_chat,
        sam_chat,
        weekend_crew,
        margaret_chat,
        edward_chat,
        book_club,
        kate_chat,
        python_learners,
        tech_digest,
        family_channel,
        _weather_bot,
        apartment_hunt,
        deleted_friend_chat,
        _replies,
        _verification_codes,
        crypto_signals,
        office_news,
    )
    return [build(ctx) for build in builders]


def _saved_messages(ctx: Context) -> Plan:
    """The owner's notes to self: a saved post, a forward from a deleted account, a pinned note."""
    o = ctx.owner
    return Plan(
        name=NO_NAME,
        type="saved_messages",
        id=ctx.owner_id,
        members=[Member(o, NOTES)],
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
            lambda c: c.say(o, news_post(c.rng), forwarded_from=FROM_TECH_DIGEST, saved_from=FROM_TECH_DIGEST),
            lambda c: c.say(o, "Found this in an old chat, keep it", forwarded_from="null"),
            lambda c: c.service(o, "pin_message", [("message_id", c.recent[-1])]),
        ),
    )


def _weather_bot(ctx: Context) -> Plan:
    """A bot chat: the owner sends commands, the bot answers within seconds."""
    o = ctx.owner
    return Plan(
        name="Weather Bot",
        type="bot_chat",
        id=ctx.bot_id,
        members=[Member(o, BOT_USER), Member(ctx.bot, BOT)],
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


def _replies(ctx: Context) -> Plan:
    """Telegram's Replies chat: strangers answering the owner's comments on a channel."""
    return Plan(
        name=NO_NAME,
        type="replies",
        id=1271266957,
        members=[Member(s, REPLIES) for s in ctx.strangers[4:]],
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


def _verification_codes(ctx: Context) -> Plan:
    """Login codes from the service account 489000."""
    return Plan(
        name=NO_NAME,
        type="verification_codes",
        id=489000,
        members=[Member(ctx.codes, CODES)],
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
