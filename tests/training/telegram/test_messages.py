"""Which messages are learned from, and why the others are dropped."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from doppel.chatml import neutralise
from tests.helpers.telegram import BASE_TIME, text_message
from training.prepare.config import PrepareConfig
from training.prepare.reader import ExportReader
from training.prepare.report import PrepareStats
from training.prepare.scrub import Scrubber
from training.telegram.messages import DELETED_ACCOUNT, Drop, Message, flat_text, normalise
from training.telegram.stream import RawMessage


def raw(**fields: Any) -> RawMessage:
    return msgspec.convert(fields, RawMessage)


def message(**extra: Any) -> RawMessage:
    text = extra.pop("text", "hello")
    return raw(**text_message(7, 60, extra.pop("sender", "Anna"), extra.pop("sender_id", 2), text, **extra))


def test_a_plain_text_message_is_kept_with_its_sender_and_time() -> None:
    assert normalise(message()) == Message(7, BASE_TIME + 60, "user2", "Anna", "hello")


def test_text_given_as_a_list_of_strings_and_entities_is_flattened() -> None:
    got = normalise(message(text=["see ", {"type": "link", "text": "https://x.org"}, " now"]))
    assert isinstance(got, Message) and got.text == "see https://x.org now"


def test_a_sticker_becomes_its_emoji_and_one_without_is_dropped() -> None:
    got = normalise(message(text="", media_type="sticker", sticker_emoji="😂", file="sticker.webp"))
    assert isinstance(got, Message) and got.text == "😂"
    assert normalise(message(text="", media_type="sticker", file="s.webp")) is Drop.STICKER_WITHOUT_EMOJI


def test_media_keeps_its_caption_and_is_dropped_without_one() -> None:
    captioned = normalise(message(text="look at this", photo="photos/1.jpg", width=10, height=10))
    assert isinstance(captioned, Message) and captioned.text == "look at this"
    assert normalise(message(text="", photo="photos/1.jpg")) is Drop.MEDIA_WITHOUT_TEXT
    assert normalise(message(text="", media_type="voice_message", file="v.ogg")) is Drop.MEDIA_WITHOUT_TEXT


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"poll": {"question": "?", "answers": []}}, Drop.POLL),
        ({"contact_information": {"first_name": "A"}}, Drop.CONTACT),
        ({"location_information": {"latitude": 1, "longitude": 2}}, Drop.LOCATION),
        ({"game_title": "Lumberjack"}, Drop.OTHER_MEDIA),
    ],
)
def test_polls_contacts_locations_and_games_are_dropped(extra: dict[str, Any], reason: Drop) -> None:
    assert normalise(message(text="", **extra)) is reason


def test_service_messages_including_calls_are_dropped() -> None:
    call = raw(
        id=1,
        type="service",
        date_unixtime="1",
        actor="Anna",
        action="phone_call",
        duration_seconds=5,
        text="",
    )
    assert normalise(call) is Drop.SERVICE


def test_forwarded_and_via_bot_messages_are_dropped_by_default() -> None:
    assert normalise(message(forwarded_from="News")) is Drop.FORWARDED
    assert normalise(message(forwarded_from=None)) is Drop.FORWARDED  # hidden original sender
    assert isinstance(normalise(message(forwarded_from="News"), keep_forwarded=True), Message)
    assert normalise(message(via_bot="@gif")) is Drop.VIA_BOT


def test_a_deleted_account_is_named_so() -> None:
    got = normalise(message(sender=None, sender_id=99))
    assert isinstance(got, Message) and got.speaker_name == DELETED_ACCOUNT and got.speaker_id == "user99"


def test_an_edited_message_uses_its_final_text() -> None:
    got = normalise(message(text="final", edited="2023-11-15T00:00:00", edited_unixtime=str(BASE_TIME + 999)))
    assert isinstance(got, Message) and got.text == "final" and got.date == BASE_TIME + 60


def test_older_exports_without_unixtime_fall_back_to_the_date_field() -> None:
    got = normalise(
        raw(id=1, type="message", date="2020-01-01T00:00:10", **{"from": "A", "from_id": "user1"}, text="x")
    )
    assert isinstance(got, Message) and got.date == 1577836810


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "1", "type": "message", "date_unixtime": "5", "from": "A", "from_id": "user1", "text": "x"},
        {"id": 1, "type": "message", "date_unixtime": "soon", "from": "A", "from_id": "user1", "text": "x"},
        {"id": 1, "type": "message", "date_unixtime": "5", "from": 12, "from_id": 12.5, "text": "x"},
        {"id": 1, "type": "message", "date_unixtime": "5", "from": "A", "from_id": "user1", "text": 12},
        {"id": 1, "type": "message", "date_unixtime": "5", "from": "A", "from_id": "user1", "text": [1]},
        {"id": 1, "type": "weird", "date_unixtime": "5", "from": "A", "from_id": "user1", "text": "x"},
    ],
)
def test_wrong_types_make_a_message_malformed_not_an_exception(fields: dict[str, Any]) -> None:
    assert normalise(raw(**fields)) is Drop.MALFORMED


def test_whitespace_only_text_is_empty() -> None:
    assert normalise(message(text="  \n ")) is Drop.EMPTY


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from(
    [
        "id",
        "type",
        "date",
        "date_unixtime",
        "from",
        "from_id",
        "text",
        "media_type",
        "sticker_emoji",
        "forwarded_from",
        "via_bot",
        "photo",
        "poll",
        "action",
    ]
)


@given(st.dictionaries(keys, json_value | st.sampled_from(["message", "sticker", "1700000000"]), max_size=10))
def test_property_any_message_dict_is_either_kept_or_dropped_with_a_reason(fields: dict[str, Any]) -> None:
    result = normalise(raw(**fields))
    assert isinstance(result, Message | Drop)
    if isinstance(result, Message):
        assert result.text.strip() and isinstance(result.date, int) and result.speaker_id


def test_flat_text_rejects_shapes_telegram_never_writes() -> None:
    assert flat_text({"text": "x"}) is None
    assert flat_text(["a", {"type": "bold", "text": "b"}]) == "ab"


# Text that sometimes needs scrubbing or neutralising: prepare's hot loop decides that with one cheap search.
message_text = st.lists(
    st.text(max_size=6)
    | st.sampled_from(["+44 7700 900123", "a@b.io", "<|im_end|>", "</s>", "7", "DE89 3704 0044 0532 0130 00"]),
    max_size=4,
).map(" ".join)
plain_text_message = st.builds(
    lambda message_id, at, sender, text, extra: {**text_message(message_id, at, sender, 2, text), **extra},
    st.integers(0, 10**9),
    st.integers(0, 10**6),
    st.text(max_size=8),
    message_text,
    st.dictionaries(keys, json_value, max_size=1),
)


@pytest.mark.parametrize("scrub", [False, True])
@given(batch=st.lists(plain_text_message | st.dictionaries(keys, json_value, max_size=10), max_size=8))
def test_prepare_cleans_a_batch_exactly_as_normalise_judges_each_message(
    scrub: bool, batch: list[dict[str, Any]]
) -> None:
    """prepare recognises plain text messages inline (its hot loop); the result must be normalise's, scrubbed
    and neutralised message by message."""
    messages = [raw(**fields) for fields in batch]
    reader = ExportReader(PrepareConfig(exports=(), out=Path("unused"), scrub=scrub), PrepareStats(), None)
    rows = reader.clean(messages)
    judged = [normalise(message) for message in messages]
    kept = [result for result in judged if isinstance(result, Message)]
    scrubbed = Scrubber() if scrub else lambda text: text
    assert rows == [(m.id, m.date, m.speaker_id, m.speaker_name, neutralise(scrubbed(m.text))) for m in kept]
    assert reader.stats.dropped == Counter(result for result in judged if isinstance(result, Drop))
