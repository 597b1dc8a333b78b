"""The printed report of ``doppel prepare``: its session-length histogram."""

from __future__ import annotations

from training.prepare.report import session_length_histogram


def test_sessions_are_bucketed_by_message_count_in_powers_of_two() -> None:
    assert session_length_histogram([1, 2, 3, 4, 7, 8, 127, 128, 500, 3]) == [
        ("2-3", 4),
        ("4-7", 2),
        ("8-15", 1),
        ("16-31", 0),
        ("32-63", 0),
        ("64-127", 1),
        ("128+", 2),
    ]


def test_no_sessions_is_an_empty_histogram_with_every_bucket() -> None:
    assert [count for _, count in session_length_histogram([])] == [0] * 7
