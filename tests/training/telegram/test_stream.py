"""The streaming reader yields exactly what json.load sees, in flat memory, and names what is broken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doppel.errors import InputError
from tests.helpers.telegram import chat, full_export, text_message, write
from training.telegram import stream as export_stream
from training.telegram.stream import ExportStream


def read_all(path: Path) -> tuple[ExportStream, list[tuple[Any, list[Any]]]]:
    with ExportStream(path) as export:
        result = []
        for item in export.chats():
            result.append((item.header, [message for batch in item.batches() for message in batch]))
    return export, result


def as_dict(message: export_stream.RawMessage) -> dict[str, Any]:
    return {key: value for key, value in msgspec.structs.asdict(message).items() if value is not msgspec.UNSET}


def test_full_export_yields_every_chat_in_order_with_its_header(tmp_path: Path) -> None:
    document = full_export(
        [chat(1, "Anna", [text_message(1, 0, "Anna", 2, "hi")]), chat(2, "Group", [], "private_group")],
        left=[chat(3, "Old group", [text_message(5, 9, "Olga", 1000, "bye")], "private_supergroup")],
    )
    export, chats = read_all(write(tmp_path / "result.json", document))
    assert export.kind == "full"
    assert export.personal_information is not None and export.personal_information["user_id"] == 1000
    assert [(h.id, h.name, h.type, h.section) for h, _ in chats] == [
        (1, "Anna", "personal_chat", "chats"),
        (2, "Group", "private_group", "chats"),
        (3, "Old group", "private_supergroup", "left_chats"),
    ]
    assert [[m.text for m in messages] for _, messages in chats] == [["hi"], [], ["bye"]]


def test_single_chat_export_is_the_chat_at_the_root(tmp_path: Path) -> None:
    document = chat(77, "Anna", [text_message(1, 0, "Anna", 2, "hi"), text_message(2, 5, "Olga", 1000, "yo")])
    export, chats = read_all(write(tmp_path / "chat.json", document))
    assert export.kind == "single"
    assert export.personal_information is None
    [(header, messages)] = chats
    assert (header.id, header.name, header.type) == (77, "Anna", "personal_chat")
    assert [m.sender for m in messages] == ["Anna", "Olga"]


def test_message_fields_keep_missing_apart_from_null(tmp_path: Path) -> None:
    messages = [
        text_message(1, 0, None, 5, "from a deleted account"),
        text_message(2, 1, "Anna", 2, "fwd", forwarded_from=None),
        text_message(3, 2, "Anna", 2, [{"type": "bold", "text": "b"}, "c"]),
    ]
    _, [(_, got)] = read_all(write(tmp_path / "r.json", full_export([chat(1, "A", messages)])))
    assert got[0].sender is None
    assert got[1].forwarded_from is None and got[0].forwarded_from is msgspec.UNSET
    assert got[2].text == [{"type": "bold", "text": "b"}, "c"]


@pytest.mark.parametrize("minified", [False, True])
def test_many_small_batches_cut_only_between_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minified: bool
) -> None:
    # Tiny batches force hundreds of cuts; texts that look like message boundaries must not fool them.
    monkeypatch.setattr(export_stream, "BATCH_BYTES", 64)
    monkeypatch.setattr(export_stream, "READ_CHUNK", 100)
    tricky = [
        '}, {"id": 3',
        '"}, {"id": 9, "type": "message"}',
        "{[",
        "]}",
        "\\",
        'quote " inside',
        "привет 👋",
    ]
    messages = [text_message(i, i, "Anna", 2, tricky[i % len(tricky)] + f" #{i}") for i in range(200)]
    path = write(
        tmp_path / "r.json",
        full_export([chat(1, "A", messages), chat(2, "B", messages[:3])]),
        minified=minified,
    )
    _, chats = read_all(path)
    assert [len(got) for _, got in chats] == [200, 3]
    assert [m.text for m in chats[0][1]] == [m["text"] for m in messages]


def test_a_skipped_chat_is_not_decoded_but_the_next_one_is_found(tmp_path: Path) -> None:
    document = full_export(
        [
            chat(1, "skip me", [text_message(1, 0, "A", 2, "x")] * 50),
            chat(2, "keep", [text_message(1, 0, "B", 3, "y")]),
        ]
    )
    with ExportStream(write(tmp_path / "r.json", document)) as export:
        seen = []
        for item in export.chats():
            if item.header.id == 1:
                continue  # not iterating its batches skips it
            seen.append([m.text for batch in item.batches() for m in batch])
    assert seen == [["y"]]


def test_the_hash_covers_every_byte(tmp_path: Path) -> None:
    import hashlib

    path = write(tmp_path / "r.json", full_export([chat(1, "A", [text_message(1, 0, "A", 2, "x")])]))
    export, _ = read_all(path)
    assert export.sha256.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
message_dicts = st.fixed_dictionaries(
    {
        "id": st.integers(0, 10**9),
        "type": st.sampled_from(["message", "service"]),
        "text": st.text(max_size=40)
        | st.lists(
            st.text(max_size=5) | st.fixed_dictionaries({"type": st.just("bold"), "text": st.text(max_size=5)}),
            max_size=3,
        ),
    },
    optional={
        "from": st.none() | st.text(max_size=10),
        "from_id": st.text(max_size=10),
        "extra": json_values,
        "media_type": st.sampled_from(["sticker", "photo"]),
        "via_bot": st.text(max_size=5),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chats=st.lists(st.lists(message_dicts, max_size=12), min_size=1, max_size=4), minified=st.booleans())
def test_property_stream_equals_json_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chats: list[list[dict[str, Any]]], minified: bool
) -> None:
    monkeypatch.setattr(export_stream, "BATCH_BYTES", 48)
    path = write(
        tmp_path / "p.json",
        full_export([chat(i, f"c{i}", messages) for i, messages in enumerate(chats)]),
        minified=minified,
    )
    expected = json.loads(path.read_text(encoding="utf-8"))["chats"]["list"]
    _, got = read_all(path)
    assert len(got) == len(expected)
    for (_, messages), want in zip(got, expected, strict=True):
        assert len(messages) == len(want["messages"])
        for message, raw in zip(messages, want["messages"], strict=True):
            assert message.id == raw["id"]
            assert message.text == raw["text"]
            assert message.sender == raw.get("from", msgspec.UNSET)
            assert message.via_bot == raw.get("via_bot", msgspec.UNSET)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"   \n", "the file is empty"),
        (b"hello", "not a Telegram export"),
        (b"[1, 2, 3]", "not a Telegram export (expected a JSON object"),
        (b'{"some": "other json"}', "not a Telegram export (no 'chats' list"),
        (
            b'{"chats": {"list": [{"name": "A", "type": "personal_chat", "id": 1, "messages": [{"id": 1, "te',
            "truncated",
        ),
        (
            b'{"chats": {"list": [{"name": "A", "id": 1, "messages": 5}]}}',
            "chat 'A' (id 1): 'messages' is not a list",
        ),
        (b'{"chats": {"list": [7]}}', "chats.list item 0 is not a chat object"),
        (
            b'{"chats": {"list": [{"name": "A", "id": 1, "messages": [{"id": 1}, {"id": 2, "text": "x" "y"}]}]}}',
            "the message after id 1 is malformed JSON",
        ),
        (
            b'{"chats": {"list": [{"name": "A", "id": 1, "messages": [{"id": 1, "text": "\xff\xfe"}]}]}}',
            "not valid UTF-8",
        ),
        (b'{"chats": {"list": []}} trailing', "unexpected data after the end"),
    ],
)
def test_bad_files_raise_one_clear_input_error(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_all(path)
    message = str(caught.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_a_non_object_message_is_blanked_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(
        '{"chats": {"list": [{"name": "A", "id": 1, "messages": [{"id": 1, "type": "message"}, 42, "x", {"id": 3}]}]}}'
    )
    _, [(_, messages)] = read_all(path)
    assert [m.id for m in messages] == [1, None, None, 3]


def test_memory_does_not_grow_with_the_export(tmp_path: Path) -> None:
    import tracemalloc

    def peak_for(count: int) -> int:
        messages = [text_message(i, i, "Anna", 2, "some words here " * 5) for i in range(count)]
        path = write(tmp_path / f"r{count}.json", full_export([chat(1, "A", messages)]))
        tracemalloc.start()
        read_all_count = 0
        with ExportStream(path) as export:
            for item in export.chats():
                for batch in item.batches():
                    read_all_count += len(batch)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert read_all_count == count
        return peak

    small, large = peak_for(5_000), peak_for(40_000)
    assert large < small * 1.5  # 8x the messages, about the same peak
