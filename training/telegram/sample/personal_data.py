"""Fake personal data for message texts: valid in form (Luhn, IBAN mod-97), in reserved or example ranges.

Valid in form so that the export holds card numbers, IBANs, phone numbers and e-mails a scrubber must find.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence


def _luhn_sum(digits: Sequence[int], *, doubled: int) -> int:
    """Luhn sum over ``digits``, doubling every second one from the right, starting at index ``doubled``."""
    total = 0
    for i, digit in enumerate(reversed(digits)):
        value = digit * 2 if i % 2 == doubled else digit
        total += value - 9 if value > 9 else value
    return total


def luhn_card(rng: random.Random) -> str:
    """A Luhn-valid 16-digit Visa-style card number, in groups of four."""
    digits = [4, *(rng.randint(0, 9) for _ in range(14))]
    # Without its check digit yet, the rightmost digit is one that gets doubled.
    digits.append(-_luhn_sum(digits, doubled=0) % 10)
    s = "".join(map(str, digits))
    return f"{s[0:4]} {s[4:8]} {s[8:12]} {s[12:16]}"


def _iban_number(country: str, bban: str) -> int:
    rearranged = bban + country + "00"
    return int("".join(str(int(c, 36)) for c in rearranged))


def iban(rng: random.Random) -> str:
    """A German or British IBAN with a valid mod-97 check, in groups of four."""
    if rng.random() < 0.5:
        country, bban = "DE", "".join(str(rng.randint(0, 9)) for _ in range(18))
    else:
        bank = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        country, bban = "GB", bank + "".join(str(rng.randint(0, 9)) for _ in range(14))
    check = 98 - _iban_number(country, bban) % 97
    raw = f"{country}{check:02d}{bban}"
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def phone_uk(rng: random.Random) -> str:
    return f"+44 7700 900{rng.randint(0, 999):03d}"  # Ofcom's range reserved for drama


def _phone_us(rng: random.Random) -> str:
    return f"+1 202 555 01{rng.randint(0, 99):02d}"  # 555-01xx is reserved for fiction


def phone_ru(rng: random.Random) -> str:
    return f"+7 999 {rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}"


def email(rng: random.Random) -> str:
    """An address at one of the domains reserved for examples."""
    user = rng.choice(("alex.m", "m.hughes", "kate.novak", "oleg.p", "sam.lee", "priya.s", "e.whitfield"))
    return f"{user}{rng.randint(1, 99)}@{rng.choice(('example.com', 'example.org', 'example.net'))}"


def url(rng: random.Random) -> str:
    """A link to a random page on a domain reserved for examples."""
    slug = "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(6))
    return f"https://{rng.choice(('example.com', 'example.org', 'news.example.net'))}/{slug}"


#: Template slots drawn afresh at each use (never kept for the conversation, unlike a topic's slots).
GENERATED: dict[str, Callable[[random.Random], str]] = {
    "phone_uk": phone_uk,
    "phone_us": _phone_us,
    "phone_ru": phone_ru,
    "email": email,
    "card": luhn_card,
    "iban": iban,
    "url": url,
    "code": lambda rng: f"{rng.randint(10000, 99999)}",
}
