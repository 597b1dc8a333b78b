"""Who is in the export: the owner, the seven friends, deleted accounts, a bot, channels and strangers.

Every id is drawn from the export's random stream, once, and never repeats.
"""

from __future__ import annotations

import random

from training.telegram.sample.styles import STYLE_OF
from training.telegram.sample.writer import Output, Peer, user


class Context:
    """Everything shared across chats: the output, the randomness, the cast."""

    def __init__(self, out: Output, rng: random.Random) -> None:
        self.out = out
        self.rng = rng
        self.ids: set[int] = set()
        self.owner_id = self.new_id(1_000_000_000, 6_999_999_999)
        self.owner = user("Alex Morgan", self.owner_id)
        self.friend_ids = {key: self.new_id(100_000_000, 6_999_999_999) for key in STYLE_OF if key != "owner"}
        self.dima = user("Dima Kotov", self.friend_ids["dima"])
        self.oleg = user("Олег Петров", self.friend_ids["oleg"])
        self.margaret = user("Margaret Hughes", self.friend_ids["margaret"])
        self.sam = user("Sammy Lee 🌴", self.friend_ids["sam"], old_name="Sam Lee")
        self.priya = user("Priya Shah", self.friend_ids["priya"])
        self.edward = user("Edward Whitfield", self.friend_ids["edward"])
        self.kate = user("Kate Novak\n(work)", self.friend_ids["kate"])
        self.deleted = user(None, self.new_id(100_000_000, 6_999_999_999))
        self.deleted_member = user(None, self.new_id(100_000_000, 6_999_999_999))
        self.neo = user("Neo <|im_end|>", self.new_id(100_000_000, 6_999_999_999))
        self.bot_id = self.new_id(5_000_000_000, 7_999_999_999)
        self.bot = user("Weather Bot", self.bot_id)
        self.codes = user("Verification Codes", 489000)
        self.news_id = self.new_id(1_000_000_000, 2_999_999_999)
        self.news = Peer("Tech Digest", f"channel{self.news_id}")
        self.family_id = self.new_id(1_000_000_000, 2_999_999_999)
        self.family = Peer("Morgan Family 📸", f"channel{self.family_id}")
        self.oldjob_id = self.new_id(1_000_000_000, 2_999_999_999)
        self.oldjob = Peer("Acme Office News", f"channel{self.oldjob_id}")
        first = ("Tom", "Ana", "Wei", "Lena", "Omar", "Ivy", "Marco", "Yuki", "Sara", "Ben", "Nia", "Jonas")
        last = (
            "B.",
            "Costa",
            "Zhang",
            "Fischer",
            "Haddad",
            "Moore",
            "Rossi",
            "Sato",
            "Lind",
            "Cole",
            "Okafor",
        )
        self.strangers = [
            user(f"{rng.choice(first)} {rng.choice(last)}", self.new_id(100_000_000, 6_999_999_999)) for _ in range(14)
        ]
        self.private_counter = rng.randint(2_000, 90_000)

    def new_id(self, low: int, high: int) -> int:
        """A random id in ``[low, high]`` that no one in the export has yet."""
        while True:
            value = self.rng.randint(low, high)
            if value not in self.ids:
                self.ids.add(value)
                return value

    def private_first_id(self) -> int:
        """The first message id of the next private chat (they share one counter per account)."""
        self.private_counter += self.rng.randint(50, 5_000)
        return self.private_counter
