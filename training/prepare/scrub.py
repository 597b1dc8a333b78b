"""Privacy filters for message text: typed placeholders for personal data, and a blocklist.

``Scrubber`` replaces e-mail addresses, IBANs (mod-97 checked), payment card numbers (Luhn checked) and
phone numbers with ``<email>``, ``<iban>``, ``<card>`` and ``<phone>``, and counts each replacement.
``Blocklist`` tells whether a text contains any listed word or phrase (whole words, any case).
Neither ever logs or returns the text it removed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from doppel.errors import InputError

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\d-])\d{4}(?:[ -]?\d{4}){2}[ -]?\d{1,7}(?![\d-])")
# A phone needs a '+' and 7+ digits, or 9+ digits: ISO dates (8 digits) and years stay untouched.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d[\d ().-]{5,}\d|\(?\d[\d ().-]{7,}\d)(?![\w])")
_MAYBE_SENSITIVE = re.compile(r"[\d@]")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


class Scrubber:
    """Replaces personal data with typed placeholders; ``counts`` says how many of each it replaced."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, text: str) -> str:
        if not _MAYBE_SENSITIVE.search(text):
            return text  # the common case, and cheap
        text = _EMAIL.sub(self._placeholder("email"), text)
        text = _IBAN.sub(self._checked("iban", iban_valid), text)
        text = _CARD.sub(self._checked("card", lambda match: luhn_valid(re.sub(r"\D", "", match))), text)
        return _PHONE.sub(self._phone, text)

    def _placeholder(self, kind: str):
        def replace(match: re.Match[str]) -> str:
            self.counts[kind] += 1
            return f"<{kind}>"

        return replace

    def _checked(self, kind: str, valid):
        def replace(match: re.Match[str]) -> str:
            if not valid(match.group(0)):
                return match.group(0)
            self.counts[kind] += 1
            return f"<{kind}>"

        return replace

    def _phone(self, match: re.Match[str]) -> str:
        candidate = match.group(0)
        digits = sum(char.isdigit() for char in candidate)
        if digits > 15 or digits < (7 if candidate.startswith("+") else 9):
            return candidate
        self.counts["phone"] += 1
        return "<phone>"


class Blocklist:
    """Words or phrases whose presence drops a whole message."""

    def __init__(self, phrases: list[str]) -> None:
        cleaned = sorted({phrase.strip() for phrase in phrases if phrase.strip()}, key=len, reverse=True)
        self.size = len(cleaned)
        self._pattern = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(phrase) for phrase in cleaned) + r")(?!\w)", re.IGNORECASE)
            if cleaned
            else None
        )

    @classmethod
    def from_file(cls, path: Path) -> Blocklist:
        """One word or phrase per line; blank lines and lines starting with '#' are ignored."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise InputError(f"{path}: cannot read the blocklist ({error.strerror or error})") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: the blocklist is not UTF-8 text") from None
        return cls([line for line in lines if not line.lstrip().startswith("#")])

    def matches(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None
