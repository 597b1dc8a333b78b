"""Personal data becomes typed placeholders; only counts are kept; blocklists drop whole messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from doppel.errors import InputError
from training.prepare.scrub import Blocklist, Scrubber, iban_valid, luhn_valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +7 916 123-45-67 now", "call <phone> now"),
        ("or 8 (916) 123 45 67", "or <phone>"),
        ("us: +1 (555) 123-4567", "us: <phone>"),
        ("mail john.doe+tag@mail.example.com!", "mail <email>!"),
        ("card 4111 1111 1111 1111 ok", "card <card> ok"),
        ("card 4111-1111-1111-1111", "card <card>"),
        ("iban DE89 3704 0044 0532 0130 00.", "iban <iban>."),
        ("GB82WEST12345698765432", "<iban>"),
    ],
)
def test_personal_data_is_replaced_by_typed_placeholders(text: str, expected: str) -> None:
    assert Scrubber()(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "meet 2024-03-01 at 12:30",
        "it costs 1500 rub",
        "in 2023 we had 3 cats",
        "4111 1111 1111 1112 (not Luhn)",
        "a@b",
    ],
)
def test_ordinary_numbers_dates_and_invalid_cards_are_left_alone(text: str) -> None:
    assert Scrubber()(text) == text


def test_counts_are_kept_by_kind() -> None:
    scrubber = Scrubber()
    scrubber("a@example.com b@example.org +44 20 7946 0958")
    assert scrubber.counts == {"email": 2, "phone": 1}


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE88 3704 0044 0532 0130 00")


def test_blocklist_matches_whole_words_and_phrases_in_any_case(tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_text("# secrets\nproject x\nsalary\n\n", encoding="utf-8")
    blocklist = Blocklist.from_file(path)
    assert blocklist.size == 2
    assert blocklist.matches("My SALARY is low") and blocklist.matches("about Project X.")
    assert not blocklist.matches("salaryman") and not blocklist.matches("project")


def test_an_unreadable_blocklist_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the blocklist"):
        Blocklist.from_file(tmp_path / "missing.txt")
