"""Write one chat from its plan: conversations hours or days apart, turns minutes apart, bursts seconds apart.

The plan's scripted messages (its edge cases) are spread evenly among the ordinary ones, which media, replies,
reactions, edits, calls and forwards vary at the plan's rates.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import Any

from training.telegram.sample.cast import Context
from training.telegram.sample.clock import END_UNIXTIME, UTC_OFFSET_SECONDS, local_time
from training.telegram.sample.entities import Text, decorate, normalize
from training.telegram.sample.makers import FROM_TECH_DIGEST, news_post
from training.telegram.sample.media import CAPTIONED, animation, random_media
from training.telegram.sample.plan import NO_NAME, Member, Plan
from training.telegram.sample.templates import Fill
from training.telegram.sample.writer import Chat, Peer

_DAY_GAP_RATE = 0.12
_NIGHT_HOURS = 7
# What sleeping and the occasional multi-day gap add to a conversation gap on average, once gaps are short.
_GAP_OVERHEAD = 3 * 3600


def allocate(plans: Sequence[Plan], total: int) -> list[int]:
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


def write_chat(ctx: Context, plan: Plan, n: int, rng: random.Random) -> None:
    out = ctx.out
    header = ["\n   {"]
    if plan.name is not NO_NAME:
        quoted = "null" if plan.name is None else encode_basestring(str(plan.name))
        header.append(f'\n    "name": {quoted},')
    header.append(f'\n    "type": "{plan.type}",\n    "id": {plan.id},\n    "messages": [')
    out.write("".join(header))
    chat = Chat(out, rng, first_id=plan.first_id, skip_rate=plan.skip_rate, skip_max=plan.skip_max)
    _converse(chat, plan, n)
    out.write("\n    ]\n   }")


def _converse(chat: Chat, plan: Plan, n: int) -> None:
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
        fill = Fill(rng, rng.choice(plan.topics))
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


def _next_conversation(chat: Chat, plan: Plan, remaining_convs: float, *, force_days: bool) -> None:
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


def _wake_up(chat: Chat) -> None:
    hour = (chat.t + UTC_OFFSET_SECONDS) // 3600 % 24
    if 1 <= hour < 1 + _NIGHT_HOURS:  # people sleep: the conversation starts that many hours later
        chat.t += _NIGHT_HOURS * 3600


def _ordinary(chat: Chat, plan: Plan, member: Member, text: Text) -> None:
    rng = chat.rng
    style = member.style
    if rng.random() < plan.call_rate:
        call(chat, member.peer if rng.random() < 0.5 else plan.members[-1].peer)
        return
    media = ""
    via_bot = ""
    if rng.random() < style.media:
        kind, media = random_media(chat)
        if kind not in CAPTIONED or rng.random() < 0.6:
            text = ""
        if kind is animation and rng.random() < 0.3:
            via_bot = "@gif"
    forwarded = ""
    if style.forwards and rng.random() < style.forwards:
        forwarded = FROM_TECH_DIGEST
        text = news_post(rng)
        media = ""
    elif text and isinstance(text, str) and rng.random() < plan.decorate_rate:
        suffix = style.suffix or (text[-1] if style.punctuated else "")
        if suffix and text.endswith(suffix) and len(text) > len(suffix):
            # The style's ending stays the ending, whatever the decoration.
            decorated = decorate(rng, text[: -len(suffix)])
            text = normalize([*(decorated if isinstance(decorated, list) else [decorated]), suffix])
        else:
            text = decorate(rng, text)
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
            reactions = [reaction(chat, reactor.peer)]
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


def reaction(chat: Chat, peer: Peer) -> dict[str, Any]:
    ts = chat.t + chat.rng.randint(5, 3_000)
    return {
        "type": "emoji",
        "count": 1,
        "emoji": chat.rng.choice(("❤", "👍", "😁", "🔥", "🤣")),
        "recent": [{"from": peer.name_at(ts), "from_id": peer.from_id, "date": local_time(ts)}],
    }


def call(chat: Chat, actor: Peer, *, missed: bool | None = None) -> None:
    rng = chat.rng
    if missed is None:
        missed = rng.random() < 0.3
    if missed:
        chat.service(actor, "phone_call", [("discard_reason", "missed")])
    else:
        duration = rng.randint(15, 3_600)
        chat.service(actor, "phone_call", [("duration_seconds", duration), ("discard_reason", "hangup")])
