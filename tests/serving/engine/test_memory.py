"""The engine's memory: the persona's own past exchanges, found by what they answered, from the train split only."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from doppel.chatml import Turn
from doppel.formats.dataset import MANIFEST_NAME, iter_split_rows
from doppel.paths import ENV_VAR
from serving.engine.memory import MEMORY_DIR, Memory, exchanges_of, stitch_windows
from serving.engine.types import ChatTurn
from tests.helpers.datasets import write_dataset

OWNER, ANNA, BOB = "Me", "Anna", "Bob Smith"
TRAIN = [
    [Turn(ANNA, ("hey",)), Turn(OWNER, ("hi!",)), Turn(ANNA, ("are you free tonight?",)), Turn(OWNER, ("yep, at 7",))],
    [
        Turn(ANNA, ("did you see the match?",)),
        Turn(OWNER, ("haha sure",)),
        Turn(ANNA, ("lunch?",)),
        Turn(OWNER, ("ok",)),
    ],
    [Turn(OWNER, ("how was the trip?",)), Turn(BOB, ("great, talk soon", "the mountains were amazing"))],
    [Turn(BOB, ("got the concert tickets",)), Turn(OWNER, ("amazing, thank you!",))],
    [
        Turn(ANNA, ("is the cat ok?",)),
        Turn(OWNER, ("she is fine",)),
        Turn(BOB, ("the cat is a legend",)),
        Turn(OWNER, ("true",)),
    ],
]
# Held out: words that would match well, replies that must never come back.
VALIDATION = [
    [Turn(ANNA, ("are you free tonight for the concert?",)), Turn(OWNER, ("held out reply",))],
    [Turn(OWNER, ("free tonight? the cat?",)), Turn(ANNA, ("held out too",))],
]
FREE = (ChatTurn(ANNA, ("are you free tonight?",)), ChatTurn(OWNER, ("yep, at 7",)))
LUNCH = (ChatTurn(ANNA, ("lunch?",)), ChatTurn(OWNER, ("ok",)))
# The owner's most recent exchanges (the last train session, its last exchange first).
RECENT = [
    (ChatTurn(BOB, ("the cat is a legend",)), ChatTurn(OWNER, ("true",))),
    (ChatTurn(ANNA, ("is the cat ok?",)), ChatTurn(OWNER, ("she is fine",))),
    (ChatTurn(BOB, ("got the concert tickets",)), ChatTurn(OWNER, ("amazing, thank you!",))),
]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset", TRAIN, VALIDATION, owner=OWNER, speakers=(OWNER, ANNA, BOB))


@pytest.fixture
def memory(dataset: Path) -> Iterator[Memory]:
    with Memory.open(dataset) as opened:
        yield opened


def test_a_similar_message_finds_the_exchange_the_persona_answered_first(memory: Memory) -> None:
    assert memory.examples(OWNER, "Are you FREE tonight??", k=1) == [FREE]
    assert memory.examples(OWNER, "fRée, TONÎGHT", k=3)[0] == FREE  # case and diacritics fold
    assert memory.examples(BOB, "how did the trip go", k=1) == [
        (ChatTurn(OWNER, ("how was the trip?",)), ChatTurn(BOB, ("great, talk soon", "the mountains were amazing")))
    ]


def test_fewer_matches_than_asked_are_topped_up_with_the_most_recent(memory: Memory) -> None:
    assert memory.examples(OWNER, "lunch", k=3) == [LUNCH, *RECENT[:2]]
    assert memory.examples(OWNER, "the cat", k=2) == RECENT[1::-1]  # both cat exchanges, the shorter text first


def test_personas_count_the_replies_of_the_train_split(memory: Memory) -> None:
    personas = memory.personas()
    assert personas == {OWNER: 7, ANNA: 2, BOB: 2}
    assert list(personas) == [OWNER, ANNA, BOB]  # most first, ties by name


def test_only_the_personas_own_replies_come_back(memory: Memory) -> None:
    # Bob answered "how was the trip?"; asked as the owner, the same text must find only the owner's replies.
    found = memory.examples(OWNER, "how was the trip?", k=50)
    assert len(found) == 7
    assert all(example[-1].speaker == OWNER for example in found)
    assert len(set(found)) == 7
    assert all(example[-1].speaker == ANNA for example in memory.examples(ANNA, "how was the trip?", k=50))
    assert memory.examples("Nobody", "are you free tonight", k=3) == []


def test_validation_sessions_never_appear(memory: Memory) -> None:
    held_out = {"held out reply", "held out too", "are you free tonight for the concert?", "free tonight? the cat?"}
    for persona in (OWNER, ANNA, BOB):
        for text in ("are you free tonight for the concert?", "free tonight? the cat?", ""):
            for example in memory.examples(persona, text, k=50):
                messages = {message for turn in example for message in turn.messages}
                assert not messages & held_out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('"are you free tonight', "are you free tonight"),
        ("are* you -free NEAR(tonight)", "are you free near tonight"),
        ("free:tonight", "free tonight"),
        ("incoming: free tonight", "incoming free tonight"),  # a column filter, in FTS syntax
        ("(free) AND (tonight) OR NOT you", "free and tonight or not you"),
        ('^free + tonight {incoming} ""', "free tonight incoming"),
        ("free'tonight; DROP TABLE exchange; --", "free tonight drop table exchange"),
        ("FRÉE 🌙✨ tönight 🙂", "free tonight"),
        ("free\x00tonight", "free tonight"),
    ],
)
def test_fts_syntax_in_the_text_is_only_words(memory: Memory, text: str, words: str) -> None:
    assert memory.examples(OWNER, text, k=3) == memory.examples(OWNER, words, k=3)
    assert memory.examples(OWNER, text, k=3)[0] == FREE


def test_a_star_is_not_a_prefix_query(memory: Memory) -> None:
    # "fre*" as FTS syntax would match "free"; as a word it matches nothing, so only recent exchanges come back.
    assert memory.examples(OWNER, "fre*", k=3) == memory.examples(OWNER, "fre", k=3) == RECENT


@pytest.mark.parametrize("text", ["", "   \n ", "🙂🙂", "?!...", "a I ?"])
def test_a_text_without_a_usable_term_gives_the_most_recent_exchanges(memory: Memory, text: str) -> None:
    assert memory.examples(OWNER, text, k=3) == RECENT
    assert memory.examples(OWNER, text, k=0) == []


def test_an_excluded_session_is_left_out_whatever_its_window(memory: Memory, dataset: Path) -> None:
    first_session = next(iter_split_rows(dataset, "train", columns=("session_id",)))["session_id"]
    assert first_session.endswith("#0")
    for excluded in (first_session, first_session.rsplit("#", 1)[0]):
        found = memory.examples(OWNER, "are you free tonight", k=7, exclude_session=excluded)
        assert FREE not in found and len(found) == 5


def test_the_turn_before_is_given_on_request(memory: Memory) -> None:
    assert memory.examples(OWNER, "free tonight", k=1, with_context=True) == [(ChatTurn(OWNER, ("hi!",)), *FREE)]
    assert memory.examples(OWNER, "hey", k=1, with_context=True) == [
        (ChatTurn(ANNA, ("hey",)), ChatTurn(OWNER, ("hi!",)))
    ]


def test_ties_go_to_the_earlier_exchange_every_time(tmp_path: Path) -> None:
    sessions = [[Turn(ANNA, ("ping",)), Turn(OWNER, (f"pong {index}",))] for index in range(4)]
    path = write_dataset(tmp_path / "ties", sessions, sessions[:1], owner=OWNER, speakers=(OWNER, ANNA))
    expected = [(ChatTurn(ANNA, ("ping",)), ChatTurn(OWNER, (f"pong {index}",))) for index in range(3)]
    for _ in range(2):
        with Memory.open(path) as memory:
            assert memory.examples(OWNER, "PING!", k=3) == expected


def test_the_index_is_built_once_and_reused(dataset: Path, home: Path) -> None:
    with Memory.open(dataset) as first:
        assert first.built
        before = first.index_path.stat()
    with Memory.open(dataset) as second:
        assert not second.built
        assert second.index_path == first.index_path
        after = second.index_path.stat()
        assert second.examples(OWNER, "are you free tonight", k=1) == [FREE]
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert first.index_path.parent == home / MEMORY_DIR
    assert [path.name for path in (home / MEMORY_DIR).iterdir()] == [first.index_path.name]  # no temporary left


def test_a_changed_dataset_gets_a_new_index(dataset: Path) -> None:
    with Memory.open(dataset) as old:
        old_path = old.index_path
    shutil.rmtree(dataset)
    changed = [*TRAIN, [Turn(ANNA, ("want some pizza?",)), Turn(OWNER, ("always",))]]
    write_dataset(dataset, changed, VALIDATION, owner=OWNER, speakers=(OWNER, ANNA, BOB))
    with Memory.open(dataset) as new:
        assert new.built and new.index_path != old_path
        assert new.examples(OWNER, "pizza", k=1) == [
            (ChatTurn(ANNA, ("want some pizza?",)), ChatTurn(OWNER, ("always",)))
        ]
        assert new.personas()[OWNER] == 8


def test_a_new_source_hash_gets_a_new_index(dataset: Path) -> None:
    with Memory.open(dataset) as old:
        old_path = old.index_path
    manifest = json.loads((dataset / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["source"]["sha256"] = "1" * 64
    (dataset / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    with Memory.open(dataset) as new:
        assert new.built and new.index_path != old_path


def test_a_damaged_index_is_built_again(dataset: Path) -> None:
    with Memory.open(dataset) as first:
        path = first.index_path
    path.write_bytes(b"garbage" * 100)
    with Memory.open(dataset) as again:
        assert again.built and again.index_path == path
        assert again.examples(OWNER, "are you free tonight", k=1) == [FREE]


def test_a_damaged_dataset_is_an_input_error_and_leaves_no_index(dataset: Path, home: Path) -> None:
    from doppel.errors import InputError

    data = dataset / "train" / "data-00000-of-00001.arrow"
    data.write_bytes(data.read_bytes()[:200])
    with pytest.raises(InputError, match=r"data-00000-of-00001\.arrow: damaged data file"):
        Memory.open(dataset)
    assert list((home / MEMORY_DIR).iterdir()) == []


def test_logs_carry_counts_and_never_words(dataset: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="serving.engine.memory")
    with Memory.open(dataset) as memory:
        memory.examples(OWNER, "are you free tonight? pizza", k=3)
    assert [record.levelno for record in caplog.records] == [logging.INFO, logging.DEBUG]
    logged = " ".join(record.getMessage() for record in caplog.records).lower()
    assert "11 exchanges" in logged
    for word in ("free", "tonight", "pizza", "yep", "lunch", "cat"):
        assert word not in logged


def test_windows_of_a_long_session_give_the_same_exchanges_as_the_whole_session(tmp_path: Path) -> None:
    # prepare cuts long sessions into windows that repeat the last turns of the one before; the memory stitches
    # them back, so neither the exchange across a boundary is lost nor a repeated one counted twice.
    from training.prepare import PrepareConfig, prepare
    from training.telegram.sample import write_sample_export

    export = write_sample_export(tmp_path / "result.json", seed=4, messages=3000).path
    found = {}
    for max_tokens in (4096, 96):
        out = tmp_path / f"dataset-{max_tokens}"
        prepare(PrepareConfig(exports=(export,), out=out, progress=False, max_tokens=max_tokens))
        windows = sum(row["window"] > 0 for row in iter_split_rows(out, "train", columns=("window",)))
        with Memory.open(out) as memory:
            examples = memory.examples("Alex Morgan", "", k=100_000)
            # A message too long for a window is cut between words: compare words, not message boundaries.
            words = [[(turn.speaker, " ".join(turn.messages).split()) for turn in example] for example in examples]
            found[max_tokens] = (windows, memory.personas(), words)
    assert found[4096][0] == 0 and found[96][0] > 100
    assert found[96][1] == found[4096][1]
    assert found[96][2] == found[4096][2]
    assert len(found[96][2]) == found[96][1]["Alex Morgan"] > 500


def test_exchanges_are_turns_after_another_speakers_turn() -> None:
    turns = [ChatTurn("A", ("1",)), ChatTurn("B", ("2",)), ChatTurn("B", ("3",)), ChatTurn("A", ("4",))]
    found = [(e.context, e.incoming, e.reply) for e in exchanges_of(turns)]
    merged = ChatTurn("B", ("2", "3"))  # one speaker's turns in a row (a split turn) are one turn
    assert found == [(None, turns[0], merged), (turns[0], merged, turns[3])]
    assert list(exchanges_of(turns[:1])) == []


def test_a_window_is_stitched_on_without_the_turns_it_repeats() -> None:
    a, b, c, d = (ChatTurn(name, (name.lower(),)) for name in "ABCD")
    turns = [a, b, c]
    stitch_windows(turns, [b, c, d])
    assert turns == [a, b, c, d]
    stitch_windows(turns, [a, b])  # no overlap with the end: all new
    assert turns == [a, b, c, d, a, b]


def test_opening_the_memory_imports_none_of_the_training_stack(dataset: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom serving.engine.memory import Memory\n"
        f"with Memory.open(Path({str(dataset)!r})) as memory:\n    memory.examples('Me', 'free tonight')\n"
        "print(sorted({'datasets', 'pandas', 'torch', 'transformers'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_historys_own_stop_words_are_left_out_unless_nothing_else_is_left(tmp_path: Path) -> None:
    # "you" is in most exchanges here: it would match them all. With "pizza" beside it, only "pizza" is asked for.
    sessions = [[Turn(ANNA, (f"do you want {index}?",)), Turn(OWNER, (f"no {index}",))] for index in range(10)]
    sessions.append([Turn(ANNA, ("pizza?",)), Turn(OWNER, ("always",))])
    sessions += [[Turn(ANNA, ("hello there",)), Turn(OWNER, (f"hi {index}",))] for index in range(2)]
    path = write_dataset(tmp_path / "stop", sessions, sessions[:1], owner=OWNER, speakers=(OWNER, ANNA))
    pizza = (ChatTurn(ANNA, ("pizza?",)), ChatTurn(OWNER, ("always",)))
    hello = [(ChatTurn(ANNA, ("hello there",)), ChatTurn(OWNER, (f"hi {index}",))) for index in (1, 0)]
    with Memory.open(path) as memory:
        assert memory.examples(OWNER, "you, pizza?", k=3) == [pizza, *hello]
        assert memory.examples(OWNER, "you?", k=1) == [
            (ChatTurn(ANNA, ("do you want 0?",)), ChatTurn(OWNER, ("no 0",)))
        ]
