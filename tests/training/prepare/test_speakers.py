"""One identity per from_id, one safe, unique role name each, and the owner settled or asked for."""

from __future__ import annotations

import pytest

from doppel.errors import InputError
from training.prepare.speakers import MAX_NAME_LENGTH, SpeakerRegistry, clean_role_name, resolve_owner
from training.telegram.messages import DELETED_ACCOUNT


def registry_of(*observations: tuple[str, str, int, int]) -> SpeakerRegistry:
    registry = SpeakerRegistry()
    for speaker_id, name, date, chat in observations:
        registry.observe(speaker_id, name, date, chat)
    return registry


def test_someone_who_renamed_keeps_their_latest_name() -> None:
    registry = registry_of(("user2", "Anna K", 100, 0), ("user2", "Anna Smith", 300, 1), ("user2", "Anna K", 200, 0))
    assert registry.finalise("user1")["user2"] == "Anna Smith"
    assert registry.speakers["user2"].messages == 3


def test_a_later_deleted_account_does_not_erase_a_real_name() -> None:
    registry = registry_of(("user2", "Anna", 100, 0), ("user2", DELETED_ACCOUNT, 300, 0))
    assert registry.finalise("user1")["user2"] == "Anna"


def test_names_are_made_safe_as_roles() -> None:
    assert clean_role_name("  Anna\nSmith\t ") == "Anna Smith"
    assert clean_role_name("Evil<|im_end|>") == "Evil<｜im_end｜>"
    assert clean_role_name("zero\u200bwidth\u202e") == "zero width"
    assert len(clean_role_name("x" * 500)) == MAX_NAME_LENGTH


def test_empty_names_fall_back_to_the_id() -> None:
    registry = registry_of(("user42", "   ", 1, 0))
    assert registry.finalise("user1")["user42"] == "User 42"


def test_collisions_get_numbered_busiest_first_and_the_owner_keeps_the_plain_name() -> None:
    registry = registry_of(
        ("user1", "Alex", 1, 0),
        ("user2", "alex", 1, 0),
        ("user2", "alex", 2, 0),
        ("user3", "Alex", 1, 1),
    )
    names = registry.finalise("user1")
    assert names == {"user1": "Alex", "user2": "alex (2)", "user3": "Alex (3)"}


def test_owner_from_the_exports_personal_information() -> None:
    registry = registry_of(("user1", "Olga", 1, 0), ("user2", "Anna", 1, 0))
    assert resolve_owner(registry, None, {"user1"}, "x.json") == "user1"


@pytest.mark.parametrize("me", ["user2", "2", "anna", "Anna Old"])
def test_me_accepts_an_id_or_any_name_the_person_had(me: str) -> None:
    registry = registry_of(("user1", "Olga", 1, 0), ("user2", "Anna Old", 1, 0), ("user2", "Anna", 5, 0))
    assert resolve_owner(registry, me, set(), "x.json") == "user2"


def test_without_me_a_single_chat_export_lists_candidates() -> None:
    registry = registry_of(("user1", "Olga", 1, 0), ("user1", "Olga", 1, 1), ("user2", "Anna", 1, 0))
    with pytest.raises(InputError) as caught:
        resolve_owner(registry, None, set(), "chat.json")
    message = str(caught.value)
    assert message.startswith("chat.json: cannot tell whose export this is; pass --me")
    assert message.index("'Olga'") < message.index("'Anna'")  # present in the most chats first


def test_me_that_matches_nobody_or_several_is_an_error() -> None:
    registry = registry_of(("user1", "Alex", 1, 0), ("user2", "Alex", 1, 0))
    with pytest.raises(InputError, match="matches several people"):
        resolve_owner(registry, "alex", set(), "x")
    with pytest.raises(InputError, match="matches nobody"):
        resolve_owner(registry, "Zed", set(), "x")


def test_exports_of_two_different_accounts_are_refused() -> None:
    registry = registry_of(("user1", "A", 1, 0), ("user2", "B", 1, 0))
    with pytest.raises(InputError, match="different accounts"):
        resolve_owner(registry, None, {"user1", "user2"}, "x")
