"""The chats of more than two: groups, supergroups and channels, including those the owner left.

Each function returns the plan of one chat, with the edge cases it is sure to contain.
"""

from __future__ import annotations

from training.telegram.sample.cast import Context
from training.telegram.sample.conversation import reaction
from training.telegram.sample.makers import (
    APARTMENT,
    FAMILY,
    NEWS,
    OLDJOB,
    news_post,
)
from training.telegram.sample.media import (
    pdf,
    poll,
)
from training.telegram.sample.personal_data import url
from training.telegram.sample.plan import Member, Plan
from training.telegram.sample.styles import (
    CRYPTO_SHILL,
    DIMA,
    EDWARD,
    GROUP_EN,
    KATE,
    MARGARET,
    OLEG,
    OWNER_EN,
    OWNER_PY,
    PRIYA,
    PYTHON_LEARNER,
    SAM,
)
from training.telegram.sample.vocabulary import CRYPTO_TOPIC, PYTHON_TOPIC


def weekend_crew(ctx: Context) -> Plan:
    """A private group created by the owner: members invited later, a new title, a poll, a reply with a reaction."""
    o = ctx.owner
    title_before = "Weekend plans"
    return Plan(
        name="Weekend crew 🏕",
        type="private_group",
        id=ctx.new_id(400_000_000, 999_999_999),
        members=[
            Member(o, OWNER_EN),
            Member(ctx.dima, DIMA),
            Member(ctx.sam, SAM),
            Member(ctx.priya, PRIYA),
            Member(ctx.kate, KATE, weight=0.5),
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
                media=poll(
                    "where this weekend??",
                    [("the lake", 2, True), ("the mountains", 1, False), ("stay home lol", 1, False)],
                ),
            ),
            lambda c: c.say(
                ctx.kate,
                "Sorry, I'm out this weekend, have fun!",
                reply_to=c.reply_target(),
                reactions=[reaction(c, ctx.priya)],
            ),
        ),
    )


def book_club(ctx: Context) -> Plan:
    """A supergroup: a member who later deleted their account, a pinned message, Neo (his name holds ChatML)."""
    o = ctx.owner
    pinned: list[int] = []
    return Plan(
        name="Book club 📚",
        type="private_supergroup",
        id=ctx.new_id(1_000_000_000, 2_999_999_999),
        members=[
            Member(o, OWNER_EN, weight=0.8),
            Member(ctx.margaret, MARGARET),
            Member(ctx.edward, EDWARD),
            Member(ctx.oleg, OLEG, weight=0.6),
            Member(ctx.deleted_member, GROUP_EN, weight=0.3, reacts=False),
            Member(ctx.neo, GROUP_EN, weight=0.4),
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


def python_learners(ctx: Context) -> Plan:
    """A public supergroup of strangers about Python: a code block, ChatML in text, a mention."""
    o = ctx.owner
    return Plan(
        name="Python Learners",
        type="public_supergroup",
        id=ctx.new_id(1_000_000_000, 2_999_999_999),
        members=[Member(o, OWNER_PY, weight=0.6), Member(ctx.neo, PYTHON_LEARNER, weight=0.5)]
        + [Member(s, PYTHON_LEARNER) for s in ctx.strangers[:10]],
        weight=5,
        turns=(2, 8),
        span_days=200,
        conv_len=6,
        topics=(PYTHON_TOPIC,),
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


def crypto_signals(ctx: Context) -> Plan:
    """A spam supergroup of strangers, which the owner left (so it is listed in ``left_chats``)."""
    o = ctx.owner
    return Plan(
        name="Crypto Signals 🚀",
        type="public_supergroup",
        id=ctx.new_id(1_000_000_000, 2_999_999_999),
        members=[Member(s, CRYPTO_SHILL) for s in ctx.strangers[6:]],
        weight=1.2,
        turns=(2, 6),
        conv_len=4,
        span_days=90,
        topics=(CRYPTO_TOPIC,),
        left=True,
        specials=(lambda c: c.say(o, "Not for me, leaving. Good luck all"),),
    )


def apartment_hunt(ctx: Context) -> Plan:
    """A supergroup exported with only the owner's messages: big id gaps, a link, a PDF."""
    o = ctx.owner
    return Plan(
        name="Apartment hunt",
        type="private_supergroup",
        id=ctx.new_id(1_000_000_000, 2_999_999_999),
        # Exported with "only my messages": the others' messages are missing, hence the big id gaps.
        members=[Member(o, APARTMENT)],
        weight=1.5,
        turns=(1, 2),
        conv_len=4.5,
        min_conv_gap=20 * 60,
        span_days=120,
        skip_rate=0.8,
        skip_max=12,
        reply_rate=0.0,
        specials=(
            lambda c: c.say(o, [{"type": "link", "text": url(c.rng)}]),
            lambda c: c.say(o, "The lease draft", media=pdf(c, "lease_draft.pdf")),
        ),
    )


def tech_digest(ctx: Context) -> Plan:
    """The news channel whose posts others forward: opened by a service message, one post signed by its author."""
    return Plan(
        name="Tech Digest",
        type="public_channel",
        id=ctx.news_id,
        members=[Member(ctx.news, NEWS)],
        weight=2,
        turns=(1, 1),
        conv_len=1.2,
        min_conv_gap=20 * 60,
        span_days=365,
        reply_rate=0.0,
        edit_rate=0.05,
        first=(lambda c: c.service(ctx.news, "create_channel", [("title", "Tech Digest")]),),
        specials=(lambda c: c.say(ctx.news, news_post(c.rng), author="Anna K."),),
    )


def family_channel(ctx: Context) -> Plan:
    """A private channel of family photos and videos, many without a caption."""
    return Plan(
        name="Morgan Family 📸",
        type="private_channel",
        id=ctx.family_id,
        members=[Member(ctx.family, FAMILY)],
        weight=1.5,
        turns=(1, 1),
        conv_len=1.5,
        min_conv_gap=20 * 60,
        span_days=365,
        reply_rate=0.0,
        first=(lambda c: c.service(ctx.family, "create_channel", [("title", "Morgan Family 📸")]),),
    )


def office_news(ctx: Context) -> Plan:
    """The channel of the owner's former job, which the owner left (so it is listed in ``left_chats``)."""
    return Plan(
        name="Acme Office News",
        type="private_channel",
        id=ctx.oldjob_id,
        members=[Member(ctx.oldjob, OLDJOB)],
        weight=0.6,
        turns=(1, 1),
        conv_len=1,
        min_conv_gap=20 * 60,
        span_days=250,
        reply_rate=0.0,
        left=True,
    )
