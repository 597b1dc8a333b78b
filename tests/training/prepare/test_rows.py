"""Pass 3's rows: kept sessions rendered into chunks of Arrow buffers, and those chunks as dataset batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from doppel.chatml import Turn, render_session, render_turn
from doppel.formats.dataset import ARROW_SCHEMA, FEATURES
from training.prepare.rows import (
    ROWS_PER_CHUNK,
    TRAIN,
    VALIDATION,
    RowChunk,
    RowPlan,
    render_rows,
)
from training.prepare.sessions import estimate_tokens
from training.prepare.writer import SplitWriter, chunk_to_batch, write_dataset_dict_index


class Chat:
    def __init__(self, chat_id: int, chat_type: str = "personal_chat") -> None:
        self.id, self.type = chat_id, chat_type


NAMES = {"u1": "Олга ✨", "u2": "Anna", "u3": "Bob (2)"}
OWNER = "u1"


def plan(**changes: Any) -> RowPlan:
    fields: dict[str, Any] = {
        "names": NAMES,
        "owner_id": OWNER,
        "cutoff": None,
        "max_tokens": 1024,
        "overlap_tokens": 256,
    }
    return RowPlan(**{**fields, **changes})


def session(chat_index: int, start: int, *turns: tuple[str, list[str]]) -> tuple[Any, ...]:
    messages = sum(len(texts) for _, texts in turns)
    return (chat_index, start, start + 60, messages, [(speaker, NAMES[speaker], texts) for speaker, texts in turns])


def render(
    sessions: list[tuple[Any, ...]], chats: list[Chat] | None = None, **changes: Any
) -> tuple[list[RowChunk], Any]:
    chunks: list[RowChunk] = []
    tally = render_rows(sessions, chats or [Chat(10)], plan(**changes), None, chunks.append)
    return chunks, tally


def rows_of(chunks: list[RowChunk]) -> list[dict[str, Any]]:
    return [row for chunk in chunks for row in chunk_to_batch(chunk).to_pylist()]


def test_a_kept_session_becomes_one_row_with_the_shared_chatml_text() -> None:
    chunks, tally = render([session(0, 1000, ("u2", ["hi", "you there?"]), ("u1", ["hey"]))])
    [row] = rows_of(chunks)
    assert row == {
        "session_id": "10:1000#0",
        "chat_id": 10,
        "chat_type": "personal_chat",
        "start": 1000,
        "end": 1060,
        "window": 0,
        "turns": [
            {"speaker": "Anna", "messages": ["hi", "you there?"]},
            {"speaker": "Олга ✨", "messages": ["hey"]},
        ],
        "text": render_session([Turn("Anna", ("hi", "you there?")), Turn("Олга ✨", ("hey",))]),
        "n_tokens": estimate_tokens(render_turn("Anna", ["hi", "you there?"]))
        + estimate_tokens(render_turn("Олга ✨", ["hey"])),
    }
    assert (tally.rows, tally.sessions_kept, tally.turns, tally.session_messages) == ([1, 0], 1, 2, [3])
    assert tally.turn_counts == {"u2": 1, "u1": 1} and tally.message_counts == {"u2": 2, "u1": 1}


def test_only_sessions_where_the_owner_speaks_after_the_first_turn_are_kept() -> None:
    chunks, tally = render(
        [
            session(0, 0, ("u1", ["only me"])),
            session(0, 100, ("u1", ["me first"]), ("u2", ["then Anna"])),
            session(0, 200, ("u2", ["Anna"]), ("u3", ["Bob"])),
            session(0, 300, ("u2", ["Anna"]), ("u1", ["me"])),
        ]
    )
    assert [row["start"] for row in rows_of(chunks)] == [300]
    assert tally.sessions_kept == 1 and tally.turn_counts == {"u2": 1, "u1": 1}


def test_sessions_from_the_cutoff_on_go_to_validation() -> None:
    sessions = [session(0, start, ("u2", ["q"]), ("u1", ["a"])) for start in (100, 200, 300, 400)]
    chunks, tally = render(sessions, cutoff=300)
    by_split = {
        split: [row["start"] for chunk in chunks if chunk.split == split for row in rows_of([chunk])]
        for split in (TRAIN, VALIDATION)
    }
    assert by_split == {TRAIN: [100, 200], VALIDATION: [300, 400]} and tally.rows == [2, 2]


def test_chunks_hold_one_chat_and_at_most_rows_per_chunk_rows() -> None:
    sessions = [session(0, start, ("u2", ["q"]), ("u1", ["a"])) for start in range(ROWS_PER_CHUNK + 10)]
    sessions += [session(1, start, ("u2", ["q"]), ("u1", ["a"])) for start in range(3)]
    chunks, _ = render(sessions, chats=[Chat(10), Chat(11, "private_group")])
    assert [(chunk.chat_index, chunk.rows) for chunk in chunks] == [(0, ROWS_PER_CHUNK), (0, 10), (1, 3)]
    assert {row["chat_type"] for row in rows_of(chunks[2:])} == {"private_group"}


def test_a_long_session_becomes_overlapping_windows_within_the_budget_and_loses_nothing() -> None:
    turns = [("u2" if index % 2 else "u1", [f"message number {index} " * 3]) for index in range(40)]
    chunks, tally = render([session(0, 0, ("u2", ["start"]), *turns)], max_tokens=64, overlap_tokens=16)
    rows = rows_of(chunks)
    assert len(rows) > 3 and [row["window"] for row in rows] == list(range(len(rows)))
    assert all(row["n_tokens"] <= 64 for row in rows) and tally.window_tokens == [row["n_tokens"] for row in rows]
    seen = {message for row in rows for turn in row["turns"] for message in turn["messages"]}
    assert seen == {"start"} | {texts[0] for _, texts in turns}
    for row in rows:
        assert row["text"] == render_session([Turn(turn["speaker"], tuple(turn["messages"])) for turn in row["turns"]])


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(NAMES)), st.lists(_TEXT, min_size=1, max_size=4)), min_size=2, max_size=12
    ),
    st.integers(48, 400),
)
def test_the_byte_level_rendering_equals_the_text_renderer(turns: list[tuple[str, list[str]]], max_tokens: int) -> None:
    # The fast path computes ChatML and token estimates from UTF-8 bytes; the general path (used with a
    # real tokenizer) renders text. Counting with the very same estimate, both must write the same rows.
    sessions = [session(0, 0, *turns, ("u1", ["reply"]))]
    fast: list[RowChunk] = []
    general: list[RowChunk] = []
    plan_ = plan(max_tokens=max_tokens, overlap_tokens=max_tokens // 4)
    fast_tally = render_rows(sessions, [Chat(10)], plan_, None, fast.append)
    general_tally = render_rows(sessions, [Chat(10)], plan_, estimate_tokens, general.append)
    assert rows_of(fast) == rows_of(general) and fast_tally == general_tally
    for row in rows_of(fast):
        rendered = [render_turn(turn["speaker"], turn["messages"]) for turn in row["turns"]]
        assert row["text"] == "".join(rendered) and row["n_tokens"] == sum(map(estimate_tokens, rendered))


def test_chunks_become_valid_batches_of_the_dataset_schema() -> None:
    chunks, _ = render(
        [session(0, start, ("u2", ["q", "é"]), ("u1", ["a"]), ("u3", ["b"])) for start in range(5)]
        + [session(1, 9, ("u2", ["only"]), ("u1", ["one"]))],
        chats=[Chat(10), Chat(-5, "")],
    )
    for chunk in chunks:
        batch = chunk_to_batch(chunk)
        batch.validate(full=True)
        assert batch.schema == ARROW_SCHEMA and batch.num_rows == chunk.rows
    assert rows_of(chunks)[-1]["chat_type"] == "" and rows_of(chunks)[-1]["chat_id"] == -5


def test_a_split_writer_groups_chunks_into_batches_that_datasets_loads(tmp_path: Path) -> None:
    sessions = [session(0, start, ("u2", ["q"]), ("u1", ["a"])) for start in range(ROWS_PER_CHUNK + 5)]
    sessions += [session(chat, 1, ("u2", ["q"]), ("u1", ["a"])) for chat in range(1, 4)]
    chunks, _ = render(sessions, chats=[Chat(10 + index) for index in range(4)])
    with SplitWriter(tmp_path / "train", "train") as writer:
        for chunk in chunks:
            writer.add_chunk(chunk)
    with SplitWriter(tmp_path / "validation", "validation"):
        pass
    write_dataset_dict_index(tmp_path)
    with pa.ipc.open_stream(str(tmp_path / "train" / "data-00000-of-00001.arrow")) as stream:
        batch_sizes = [batch.num_rows for batch in stream]
    # 256, then the 5 left of chat 0 and the three one-row chats: small chunks share a batch.
    assert batch_sizes == [ROWS_PER_CHUNK, 8] and writer.rows == ROWS_PER_CHUNK + 8
    loaded = datasets.load_from_disk(str(tmp_path))
    assert loaded["train"].features == FEATURES and len(loaded["validation"]) == 0
    assert loaded["train"].to_list() == rows_of(chunks)
