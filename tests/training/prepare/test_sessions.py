"""Sessions by total-seconds gaps, turns by speaker runs, and windows that never lose a message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from doppel.chatml import Turn, render_turn
from training.prepare.sessions import RawSession, Sessionizer, estimate_tokens, split_long_turns, windows

DAY = 86_400


def sessions_of(events: list[tuple[int, str, str]], gap: int = 1800) -> list[RawSession]:
    sessionizer = Sessionizer(0, gap)
    found = [s for s in (sessionizer.add(at, who, who.title(), text) for at, who, text in events) if s]
    last = sessionizer.flush()
    return [*found, last] if last else found


def test_consecutive_messages_of_one_speaker_form_one_turn() -> None:
    [session] = sessions_of([(0, "a", "hi"), (5, "a", "you there?"), (60, "b", "yes"), (70, "a", "good")])
    assert session.turns == [("a", "A", ["hi", "you there?"]), ("b", "B", ["yes"]), ("a", "A", ["good"])]
    assert (session.start, session.end, session.messages) == (0, 70, 4)


def test_a_gap_of_exactly_the_threshold_starts_a_new_session() -> None:
    sessions = sessions_of([(0, "a", "1"), (1799, "b", "2"), (3599, "a", "3")])
    assert [len(s.turns) for s in sessions] == [2, 1]


def test_gaps_are_measured_in_total_seconds_so_days_apart_never_merge() -> None:
    # timedelta.seconds of these gaps is 60: a bug that ignores whole days would merge them.
    sessions = sessions_of([(0, "a", "mon"), (DAY + 60, "b", "tue"), (3 * DAY + 120, "a", "thu")])
    assert len(sessions) == 3


def test_later_speakers_are_those_after_the_first_turn() -> None:
    [session] = sessions_of([(0, "a", "1"), (1, "b", "2"), (2, "c", "3")])
    assert session.later_speakers() == {"b", "c"}


def costs_of(turns: list[Turn]) -> list[int]:
    return [estimate_tokens(render_turn(t.speaker, t.messages)) for t in turns]


def test_a_session_that_fits_is_one_window() -> None:
    assert windows([10, 20, 30], 100, 25) == [(0, 3)]


def test_windows_overlap_and_end_on_turn_boundaries() -> None:
    assert windows([40, 40, 40, 40, 40], 100, 45) == [(0, 2), (1, 3), (2, 4), (3, 5)]


@given(st.lists(st.integers(1, 100), min_size=1, max_size=60), st.integers(100, 300), st.integers(0, 150))
def test_property_windows_cover_every_turn_within_budget(costs: list[int], budget: int, overlap: int) -> None:
    ranges = windows(costs, budget, overlap)
    covered = set()
    for start, end in ranges:
        assert start < end and sum(costs[start:end]) <= budget
        covered.update(range(start, end))
    assert covered == set(range(len(costs)))
    assert [start for start, _ in ranges] == sorted(start for start, _ in ranges)


def test_a_turn_too_long_for_a_window_is_split_between_messages_then_words() -> None:
    long_turn = Turn("Anna", ("short one", "word " * 400, "another short"))
    pieces = split_long_turns([long_turn], estimate_tokens, 128)
    assert all(p.speaker == "Anna" for p in pieces) and len(pieces) > 1
    assert all(c <= 128 for c in costs_of(pieces))
    assert " ".join(" ".join(p.messages) for p in pieces).split() == " ".join(long_turn.messages).split()


def test_a_single_word_longer_than_a_window_is_cut_by_characters_without_loss() -> None:
    blob = "x" * 2000
    pieces = split_long_turns([Turn("A", (blob,))], estimate_tokens, 64)
    assert "".join(m for p in pieces for m in p.messages) == blob
    assert all(c <= 64 for c in costs_of(pieces))
