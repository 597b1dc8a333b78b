"""The synthetic Telegram export: Telegram's exact shape, determinism, every edge case, learnable styles."""

from __future__ import annotations

import itertools
import json
import re
import statistics
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from doppel.cli import main
from training.prepare.scrub import iban_valid, luhn_valid
from training.telegram.chat_types import ALL_CHAT_TYPES
from training.telegram.messages import flat_text
from training.telegram.sample import END_UNIXTIME, UTC_OFFSET_SECONDS, SampleExportSummary, write_sample_export

N_MESSAGES = 3000
CHAT_TYPES = set(ALL_CHAT_TYPES)
# The order in which Telegram Desktop's SerializeMessage pushes keys (export_output_json.cpp).
MESSAGE_KEY_ORDER = [
    "id",
    "type",
    "date",
    "date_unixtime",
    "edited",
    "edited_unixtime",
    "from",
    "from_id",
    "author",
    "forwarded_from",
    "saved_from",
    "reply_to_message_id",
    "reply_to_peer_id",
    "via_bot",
    "photo",
    "photo_file_size",
    "file",
    "file_name",
    "file_size",
    "thumbnail",
    "thumbnail_file_size",
    "media_type",
    "sticker_emoji",
    "mime_type",
    "duration_seconds",
    "width",
    "height",
    "contact_information",
    "location_information",
    "live_location_period_seconds",
    "poll",
    "text",
    "text_entities",
    "reactions",
]
SERVICE_KEY_ORDER = [
    "id",
    "type",
    "date",
    "date_unixtime",
    "actor",
    "actor_id",
    "action",
    "title",
    "members",
    "message_id",
    "duration_seconds",
    "discard_reason",
    "text",
    "text_entities",
]

Chat = dict[str, Any]
Message = dict[str, Any]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleExportSummary, str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("export") / "result.json"
    summary = write_sample_export(path, seed=11, messages=N_MESSAGES)
    raw = path.read_text(encoding="utf-8")
    return summary, raw, json.loads(raw)


@pytest.fixture(scope="module")
def summary(written: tuple[SampleExportSummary, str, dict[str, Any]]) -> SampleExportSummary:
    return written[0]


@pytest.fixture(scope="module")
def export(written: tuple[SampleExportSummary, str, dict[str, Any]]) -> dict[str, Any]:
    return written[2]


def all_chats(export: dict[str, Any]) -> list[Chat]:
    return export["chats"]["list"] + export["left_chats"]["list"]


def all_messages(export: dict[str, Any]) -> Iterator[tuple[Chat, Message]]:
    for chat in all_chats(export):
        for message in chat["messages"]:
            yield chat, message


def chat_named(export: dict[str, Any], name: str) -> Chat:
    return next(chat for chat in all_chats(export) if chat.get("name") == name)


def from_id_of(summary: SampleExportSummary, persona: str) -> str:
    return next(from_id for from_id, key in summary.styles.items() if key == persona)


def _text(m: Message) -> str:
    """The flat text of ``m`` as doppel's export reader reads it, which must accept every text the sample holds."""
    text = flat_text(m["text"])
    assert text is not None, m["text"]
    return text


def texts_by(export: dict[str, Any], from_id: str, *, chat_type: str | None = None) -> list[str]:
    """Flat texts of the ordinary, non-forwarded messages ``from_id`` wrote (bare media skipped)."""
    return [
        _text(m)
        for chat, m in all_messages(export)
        if m["type"] == "message"
        and m["from_id"] == from_id
        and "forwarded_from" not in m
        and _text(m)
        and (chat_type is None or chat["type"] == chat_type)
    ]


def is_subsequence(keys: list[str], order: list[str]) -> bool:
    it = iter(order)
    return all(key in it for key in keys)


# --- shape and layout ---------------------------------------------------------------------------------------


def test_top_level_is_a_full_account_export(export: dict[str, Any], summary: SampleExportSummary) -> None:
    assert list(export) == [
        "about",
        "personal_information",
        "contacts",
        "frequent_contacts",
        "chats",
        "left_chats",
    ]
    info = export["personal_information"]
    assert list(info) == ["user_id", "first_name", "last_name", "phone_number", "username", "bio"]
    assert info["user_id"] == summary.owner_id
    assert f"{info['first_name']} {info['last_name']}" == summary.owner_name
    for section in ("contacts", "frequent_contacts", "chats", "left_chats"):
        assert list(export[section]) == ["about", "list"]
        assert export[section]["list"]
    assert len(export["chats"]["list"]) == summary.chats
    assert len(export["left_chats"]["list"]) == summary.left_chats


def test_chats_have_telegrams_keys_and_messages_telegrams_key_order(export: dict[str, Any]) -> None:
    for chat in all_chats(export):
        if chat["type"] in {"saved_messages", "replies", "verification_codes"}:
            assert list(chat) == ["type", "id", "messages"]  # Telegram writes no name for these
        else:
            assert list(chat) == ["name", "type", "id", "messages"]
        assert isinstance(chat["id"], int)
        assert chat["messages"]
        for message in chat["messages"]:
            keys = list(message)
            assert keys[:4] == ["id", "type", "date", "date_unixtime"]
            order = SERVICE_KEY_ORDER if message["type"] == "service" else MESSAGE_KEY_ORDER
            assert message["type"] in {"message", "service"}
            assert is_subsequence(keys, order), keys


def test_file_is_byte_for_byte_in_telegrams_layout(written: tuple[SampleExportSummary, str, Any]) -> None:
    _, raw, parsed = written
    # Telegram's writer indents one space per level, puts ": " after keys and writes UTF-8 unescaped:
    # exactly what json.dumps(indent=1, ensure_ascii=False) produces.
    assert raw == json.dumps(parsed, ensure_ascii=False, indent=1)
    assert raw.startswith('{\n "about": ')
    assert "Олег" in raw and "\\u" not in raw


def test_dates_are_local_time_and_unixtime_is_a_string(export: dict[str, Any]) -> None:
    offset = timedelta(seconds=UTC_OFFSET_SECONDS)
    for chat in all_chats(export):
        ids = [m["id"] for m in chat["messages"]]
        assert ids == sorted(set(ids)), chat.get("name")
        stamps = [int(m["date_unixtime"]) for m in chat["messages"]]
        assert stamps == sorted(stamps)
        for message in chat["messages"]:
            assert isinstance(message["date_unixtime"], str)
            local = datetime.fromtimestamp(int(message["date_unixtime"]), UTC) + offset
            assert message["date"] == local.strftime("%Y-%m-%dT%H:%M:%S")
            if "edited" in message:
                assert int(message["edited_unixtime"]) > int(message["date_unixtime"])


# --- determinism and size -----------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    write_sample_export(a, seed=5, messages=400)
    write_sample_export(b, seed=5, messages=400)
    write_sample_export(c, seed=6, messages=400)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.json"]  # no temporary left


@pytest.mark.parametrize("messages", [100, 777, 2500])
def test_message_count_is_what_was_asked(tmp_path: Path, messages: int) -> None:
    path = tmp_path / "nested" / "out.json"
    summary = write_sample_export(path, messages=messages)
    parsed = json.loads(path.read_text(encoding="utf-8"))
    total = sum(1 for _ in all_messages(parsed))
    assert abs(total - messages) <= messages * 0.02
    assert summary.messages == total
    assert summary.size_bytes == path.stat().st_size


def test_too_few_messages_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 100"):
        write_sample_export(tmp_path / "x.json", messages=99)
    assert not list(tmp_path.iterdir())


def test_messages_are_spread_realistically(export: dict[str, Any]) -> None:
    sizes = {chat.get("name") or chat["type"]: len(chat["messages"]) for chat in all_chats(export)}
    personal = sorted(
        (len(c["messages"]) for c in all_chats(export) if c["type"] == "personal_chat" and c["name"]),
        reverse=True,
    )
    # A few big personal chats carry most of it; the special chats stay small.
    assert sum(personal[:4]) > 0.35 * N_MESSAGES
    for small in ("verification_codes", "replies", "saved_messages"):
        assert sizes[small] < 0.03 * N_MESSAGES


def test_summary_counts_speakers(export: dict[str, Any], summary: SampleExportSummary) -> None:
    ordinary = [m for _, m in all_messages(export) if m["type"] == "message"]
    assert sum(summary.per_speaker.values()) == len(ordinary)
    assert summary.per_speaker[f"user{summary.owner_id}"] == sum(
        1 for m in ordinary if m["from_id"] == f"user{summary.owner_id}"
    )
    assert set(summary.styles.values()) == {
        "owner",
        "dima",
        "oleg",
        "margaret",
        "sam",
        "priya",
        "edward",
        "kate",
    }
    assert all(summary.per_speaker[from_id] > 0 for from_id in summary.styles)


# --- chats and edge cases -----------------------------------------------------------------------------------


def test_every_chat_type_is_present(export: dict[str, Any]) -> None:
    assert {chat["type"] for chat in export["chats"]["list"]} == CHAT_TYPES
    assert {chat["type"] for chat in export["left_chats"]["list"]} <= {
        "private_supergroup",
        "public_supergroup",
        "private_channel",
        "public_channel",
    }
    assert sum(chat["type"] in {"private_group", "private_supergroup"} for chat in all_chats(export)) >= 2


def _entity_texts(m: Message, kind: str) -> list[str]:
    return [e["text"] for e in m["text_entities"] if e["type"] == kind]


CARD = re.compile(r"\b\d{4} \d{4} \d{4} \d{4}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){4,7}(?: [A-Z0-9]{1,4})?\b")
PHONE = re.compile(r"\+\d{1,2} \d{3}")
EMAIL = re.compile(r"[\w.]+@example\.(?:com|org|net)")

MessageCheck = Callable[[Chat, Message], bool]
EDGE_CASES: dict[str, MessageCheck] = {
    "text as a plain string": lambda c, m: isinstance(m["text"], str) and bool(m["text"]),
    "text as a list with entities": lambda c, m: (
        isinstance(m["text"], list)
        and any(isinstance(p, str) for p in m["text"])
        and any(isinstance(p, dict) for p in m["text"])
    ),
    "text that is a single entity": lambda c, m: isinstance(m["text"], list) and len(m["text"]) == 1,
    "bold entity": lambda c, m: bool(_entity_texts(m, "bold")),
    "link entity": lambda c, m: any(t.startswith("https://") for t in _entity_texts(m, "link")),
    "text_link with href": lambda c, m: any(e["type"] == "text_link" and "href" in e for e in m["text_entities"]),
    "pre with language": lambda c, m: any(e.get("language") == "python" for e in m["text_entities"]),
    "bot_command entity": lambda c, m: bool(_entity_texts(m, "bot_command")),
    "sticker with emoji": lambda c, m: m.get("media_type") == "sticker" and bool(m.get("sticker_emoji")),
    "sticker without emoji": lambda c, m: m.get("media_type") == "sticker" and "sticker_emoji" not in m,
    "photo with caption": lambda c, m: "photo" in m and bool(_text(m)),
    "photo without caption": lambda c, m: "photo" in m and m["text"] == "" and m["text_entities"] == [],
    "video file": lambda c, m: m.get("media_type") == "video_file" and m.get("mime_type") == "video/mp4",
    "voice message": lambda c, m: m.get("media_type") == "voice_message" and m.get("duration_seconds", 0) > 0,
    "round video message": lambda c, m: m.get("media_type") == "video_message",
    "animation": lambda c, m: m.get("media_type") == "animation",
    "file not included": lambda c, m: "Change data exporting settings" in str(m.get("file", m.get("photo", ""))),
    "pdf document": lambda c, m: m.get("mime_type") == "application/pdf" and "media_type" not in m,
    "poll": lambda c, m: "poll" in m and len(m["poll"]["answers"]) >= 2,
    "shared contact": lambda c, m: "contact_information" in m,
    "location": lambda c, m: "location_information" in m,
    "phone call with duration": lambda c, m: m.get("action") == "phone_call" and "duration_seconds" in m,
    "missed call": lambda c, m: m.get("action") == "phone_call" and m.get("discard_reason") == "missed",
    "create_group": lambda c, m: m.get("action") == "create_group" and bool(m.get("members")),
    "invite_members": lambda c, m: m.get("action") == "invite_members",
    "pin_message": lambda c, m: m.get("action") == "pin_message" and isinstance(m.get("message_id"), int),
    "edit_group_title": lambda c, m: m.get("action") == "edit_group_title" and bool(m.get("title")),
    "create_channel": lambda c, m: m.get("action") == "create_channel",
    "service message in saved messages": lambda c, m: c["type"] == "saved_messages" and m["type"] == "service",
    "via_bot": lambda c, m: m.get("via_bot", "").startswith("@"),
    "forwarded": lambda c, m: isinstance(m.get("forwarded_from"), str),
    "forwarded from a deleted account": lambda c, m: "forwarded_from" in m and m["forwarded_from"] is None,
    "saved_from": lambda c, m: "saved_from" in m,
    "reply": lambda c, m: "reply_to_message_id" in m,
    "reply to another chat": lambda c, m: str(m.get("reply_to_peer_id", "")).startswith("channel"),
    "channel post signed by an author": lambda c, m: "author" in m,
    "deleted account: from null, from_id kept": lambda c, m: (
        m["type"] == "message" and m["from"] is None and m["from_id"].startswith("user")
    ),
    "edited": lambda c, m: "edited" in m and "edited_unixtime" in m,
    "reactions": lambda c, m: bool(m.get("reactions")),
    "multi-line text": lambda c, m: "\n" in _text(m),
    "ChatML markers in text": lambda c, m: "<|im_start|>" in _text(m) and "<|im_end|>" in _text(m),
    "phone number in text": lambda c, m: bool(PHONE.search(_text(m))),
    "e-mail address in text": lambda c, m: bool(EMAIL.search(_text(m))),
    "Luhn-valid card number in text": lambda c, m: any(
        luhn_valid(re.sub(r"\D", "", x)) for x in CARD.findall(_text(m))
    ),
    "valid IBAN in text": lambda c, m: any(iban_valid(x) for x in IBAN.findall(_text(m))),
}


@pytest.fixture(scope="module", params=[100, N_MESSAGES])
def edge_export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if request.param == N_MESSAGES:
        return request.getfixturevalue("export")
    path = tmp_path_factory.mktemp("small") / "result.json"
    write_sample_export(path, seed=3, messages=request.param)
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_case_is_present(edge_export: dict[str, Any], case: str) -> None:
    check = EDGE_CASES[case]
    assert any(check(chat, message) for chat, message in all_messages(edge_export)), case


def test_chatml_markers_also_come_from_the_owner(export: dict[str, Any], summary: SampleExportSummary) -> None:
    owner = f"user{summary.owner_id}"
    assert any("<|im_end|>" in text for text in texts_by(export, owner))


def test_chat_level_edge_cases(export: dict[str, Any], summary: SampleExportSummary) -> None:
    owner = f"user{summary.owner_id}"
    chats = all_chats(export)
    names = [c.get("name") for c in chats]
    assert any(isinstance(n, str) and "\n" in n for n in names)  # a display name with a newline
    assert any(c["type"] == "personal_chat" and c["name"] is None for c in chats)  # a deleted account
    senders = {m["from"] for _, m in all_messages(export) if m["type"] == "message"}
    assert any(isinstance(s, str) and "<|im_end|>" in s for s in senders)
    owner_only = [
        c
        for c in chats
        if c["type"] != "saved_messages"
        and {m.get("from_id") for m in c["messages"] if m["type"] == "message"} == {owner}
    ]
    assert any(c["type"] in {"private_supergroup", "private_group"} for c in owner_only)
    assert export["left_chats"]["list"]


def test_a_friend_renames_midway(export: dict[str, Any], summary: SampleExportSummary) -> None:
    sam = from_id_of(summary, "sam")
    named = [(int(m["date_unixtime"]), m["from"]) for _, m in all_messages(export) if m.get("from_id") == sam]
    assert {name for _, name in named} == {"Sam Lee", "Sammy Lee 🌴"}
    last_old = max(t for t, name in named if name == "Sam Lee")
    first_new = min(t for t, name in named if name == "Sammy Lee 🌴")
    assert last_old < first_new  # one rename, at one moment, in every chat
    assert chat_named(export, "Sammy Lee 🌴")["type"] == "personal_chat"  # the chat has the current name


def test_text_entities_spell_out_the_text(export: dict[str, Any]) -> None:
    for _, message in all_messages(export):
        entities = message["text_entities"]
        assert isinstance(entities, list)
        assert all(set(e) >= {"type", "text"} for e in entities)
        if message["type"] == "service":
            assert message["text"] == "" and entities == []
            assert "from" not in message and message["actor_id"]
            continue
        assert "".join(e["text"] for e in entities) == _text(message)
        if isinstance(message["text"], list):
            # Telegram merges plain runs, and writes a lone plain run as a bare string.
            assert not any(isinstance(a, str) and isinstance(b, str) for a, b in itertools.pairwise(message["text"]))
            assert message["text"] != [] and not (len(message["text"]) == 1 and isinstance(message["text"][0], str))
        else:
            assert all(e["type"] == "plain" for e in entities)


# --- timing -------------------------------------------------------------------------------------------------


def _gaps(chat: Chat) -> list[tuple[int, Message, Message]]:
    ms = chat["messages"]
    return [(int(b["date_unixtime"]) - int(a["date_unixtime"]), a, b) for a, b in itertools.pairwise(ms)]


def test_gaps_of_whole_days_plus_minutes_exist(export: dict[str, Any]) -> None:
    tricky = [
        gap
        for chat in all_chats(export)
        for gap, _, _ in _gaps(chat)
        if gap >= 86400 and timedelta(seconds=gap).seconds < 15 * 60
    ]
    # `timedelta.seconds` would call each of these a pause of a few minutes.
    assert len(tricky) >= 10


def test_timing_has_bursts_replies_and_conversation_breaks(
    export: dict[str, Any], summary: SampleExportSummary
) -> None:
    chat = chat_named(export, "Dima Kotov")
    same = [gap for gap, a, b in _gaps(chat) if a.get("from_id") == b.get("from_id")]
    turn = [gap for gap, a, b in _gaps(chat) if a.get("from_id") != b.get("from_id")]
    assert statistics.median(same) < 30  # bursts: seconds apart
    assert 30 <= statistics.median(turn) < 30 * 60  # replies: minutes apart
    assert sum(gap > 6 * 3600 for gap, _, _ in _gaps(chat)) >= 20  # separate conversations
    for name in ("Weekend crew 🏕", "Book club 📚"):
        stamps = [int(m["date_unixtime"]) for m in chat_named(export, name)["messages"]]
        assert stamps[-1] - stamps[0] > 180 * 86400  # months of history
    last = max(int(m["date_unixtime"]) for _, m in all_messages(export))
    assert last < END_UNIXTIME + 60 * 86400


def test_a_million_message_export_would_not_run_into_the_future(tmp_path: Path) -> None:
    # Dense chats need a long history; the generator must start them earlier rather than overshoot.
    summary = write_sample_export(tmp_path / "x.json", messages=30_000)
    parsed = json.loads((tmp_path / "x.json").read_text(encoding="utf-8"))
    stamps = [int(m["date_unixtime"]) for _, m in all_messages(parsed)]
    assert max(stamps) < END_UNIXTIME + 60 * 86400
    assert min(stamps) > END_UNIXTIME - 4 * 365 * 86400
    assert summary.messages == 30_000


# --- styles -------------------------------------------------------------------------------------------------


def _cyrillic_share(texts: list[str]) -> float:
    letters = [ch for text in texts for ch in text if ch.isalpha()]
    return sum("\u0400" <= ch <= "\u04ff" for ch in letters) / len(letters)


def _has_emoji(text: str) -> bool:
    return any(ord(ch) >= 0x1F300 or 0x2600 <= ord(ch) <= 0x27BF for ch in text)


def test_lowercase_friend_never_capitalises_and_ends_with_brackets(
    export: dict[str, Any], summary: SampleExportSummary
) -> None:
    texts = texts_by(export, from_id_of(summary, "dima"))
    assert len(texts) > 100
    assert not [t for t in texts if any(ch.isupper() for ch in t)]
    assert all(t.endswith("))") for t in texts)


def test_russian_friend_writes_cyrillic_and_the_owner_answers_in_kind(
    export: dict[str, Any], summary: SampleExportSummary
) -> None:
    oleg = texts_by(export, from_id_of(summary, "oleg"))
    assert _cyrillic_share(oleg) > 0.9
    chat = chat_named(export, "Олег Петров")
    owner_there = [_text(m) for m in chat["messages"] if m.get("from_id") == f"user{summary.owner_id}" and _text(m)]
    assert _cyrillic_share(owner_there) > 0.9
    owner_elsewhere = texts_by(export, f"user{summary.owner_id}", chat_type="private_group")
    assert _cyrillic_share(owner_elsewhere) < 0.05


def test_long_writer_writes_long_multiline_messages(export: dict[str, Any], summary: SampleExportSummary) -> None:
    margaret = texts_by(export, from_id_of(summary, "margaret"))
    owner = texts_by(export, f"user{summary.owner_id}")
    assert statistics.mean(map(len, margaret)) > 4 * statistics.mean(map(len, owner))
    assert sum("\n" in t for t in margaret) > 0.2 * len(margaret)


def test_burst_friend_sends_three_to_six_in_a_row(export: dict[str, Any], summary: SampleExportSummary) -> None:
    sam = from_id_of(summary, "sam")
    runs: list[int] = []
    run = 0
    for gap, a, b in _gaps(chat_named(export, "Sammy Lee 🌴")):
        if a.get("from_id") == sam:
            run += 1
            if b.get("from_id") != sam or gap > 3600:
                runs.append(run)
                run = 0
    assert 3 <= statistics.median(runs) <= 6
    assert sum(3 <= r <= 6 for r in runs) > 0.7 * len(runs)
    assert statistics.mean(map(len, texts_by(export, sam))) < 15


def test_emoji_friend_uses_emoji(export: dict[str, Any], summary: SampleExportSummary) -> None:
    texts = texts_by(export, from_id_of(summary, "priya"))
    assert sum(map(_has_emoji, texts)) > 0.75 * len(texts)
    assert any(not any(ch.isalpha() for ch in t) for t in texts)  # some are emoji only
    dima = texts_by(export, from_id_of(summary, "dima"))
    assert sum(map(_has_emoji, dima)) < 0.1 * len(dima)


def test_formal_friend_writes_full_sentences(export: dict[str, Any], summary: SampleExportSummary) -> None:
    texts = texts_by(export, from_id_of(summary, "edward"))
    assert len(texts) > 30
    assert all(t[0].isupper() and t.rstrip()[-1] in ".?!" for t in texts)


def test_owner_answers_every_friend_in_a_style_of_their_own(
    export: dict[str, Any], summary: SampleExportSummary
) -> None:
    owner = f"user{summary.owner_id}"
    for chat in all_chats(export):
        if chat["type"] == "personal_chat" and chat["name"]:
            senders = [m.get("from_id") for m in chat["messages"] if m["type"] == "message"]
            assert senders.count(owner) > 0.2 * len(senders), chat["name"]
    texts = texts_by(export, owner)
    assert not any(t.endswith("))") for t in texts)
    assert sum("haha" in t.lower() for t in texts) > 0.05 * len(texts)


# --- the command --------------------------------------------------------------------------------------------


def test_cli_writes_the_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo" / "export.json"
    assert main(["sample-export", str(out), "--messages", "300", "--seed", "2"]) == 0
    parsed = json.loads(out.read_text(encoding="utf-8"))
    assert sum(1 for _ in all_messages(parsed)) == 300
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(out)) and "300 messages" in line and "MB" in line
    assert "\n" not in line


def test_cli_refuses_too_few_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export.json"
    assert main(["sample-export", str(out), "--messages", "5"]) == 2
    err = capsys.readouterr().err
    assert "--messages" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
