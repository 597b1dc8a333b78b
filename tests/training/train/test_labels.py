"""Pin exactly which token ids each loss scope supervises, and that piecewise ids equal whole-text ids."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doppel.chatml import IM_END, IM_START, Turn, render_session, turn_body
from training.train.labels import (
    IGNORE_INDEX,
    LossScope,
    SessionTokenizer,
    TokenizedSession,
    add_chat_tokens,
    missing_chat_tokens,
)

OWNER = "Me"
SESSION = [
    Turn("Анна Ш.", ("привет!", "  как дела?\nвторая строка")),
    Turn(OWNER, ("ok 👍", ">>> not a marker", " ")),
    Turn("Bob 2", ("",)),
    Turn(OWNER, ("trailing newline\n", "<｜im_end｜> neutralised")),
    Turn("Bob 2", ("last",)),
]


def supervised_runs(session: TokenizedSession) -> list[list[int]]:
    """Maximal runs of supervised ids; headers and separators split them, so one run per supervised turn."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(session.input_ids, session.labels, strict=True):
        current = label != IGNORE_INDEX
        if current:
            if not previous:
                runs.append([])
            runs[-1].append(token)
            assert label == token
        previous = current
    return runs


def expected_runs(tokenizer: Any, turns: list[Turn], speakers: set[str] | None) -> list[list[int]]:
    """nanochat-style expectation: tokenize(body) + [<|im_end|>] for each turn whose speaker is supervised."""
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    return [
        [*tokenizer(turn_body(turn.messages), add_special_tokens=False)["input_ids"], im_end]
        for turn in turns
        if speakers is None or turn.speaker in speakers
    ]


@pytest.mark.parametrize(
    ("scope", "speakers"),
    [
        ("all", None),
        ("owner", {OWNER}),
        ("personas:Bob 2", {"Bob 2"}),
        ("personas:Анна Ш.,Me", {"Анна Ш.", OWNER}),
    ],
)
def test_supervised_ids_per_scope(smollm2_tokenizer: Any, scope: str, speakers: set[str] | None) -> None:
    session = SessionTokenizer(smollm2_tokenizer, LossScope.parse(scope), OWNER)(SESSION)
    assert supervised_runs(session) == expected_runs(smollm2_tokenizer, SESSION, speakers)
    assert session.n_supervised == sum(len(run) for run in expected_runs(smollm2_tokenizer, SESSION, speakers))


def test_headers_and_separators_are_never_supervised(smollm2_tokenizer: Any) -> None:
    session = SessionTokenizer(smollm2_tokenizer, LossScope.parse("all"), OWNER)(SESSION)
    im_start = smollm2_tokenizer.convert_tokens_to_ids(IM_START)
    starts = [index for index, token in enumerate(session.input_ids) if token == im_start]
    assert len(starts) == len(SESSION)
    for index, turn in zip(starts, SESSION, strict=True):
        header = smollm2_tokenizer(f"{IM_START}{turn.speaker}\n", add_special_tokens=False)["input_ids"]
        assert session.input_ids[index : index + len(header)] == header
        assert session.labels[index : index + len(header)] == [IGNORE_INDEX] * len(header)
    newline = smollm2_tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert session.input_ids[-1:] == newline
    assert session.labels[-1] == IGNORE_INDEX


def test_chat_tokens_are_single_special_tokens_in_smollm2(smollm2_tokenizer: Any) -> None:
    assert missing_chat_tokens(smollm2_tokenizer) == []
    ids = smollm2_tokenizer(f"{IM_START}x{IM_END}", add_special_tokens=False)["input_ids"]
    assert ids[0] == smollm2_tokenizer.convert_tokens_to_ids(IM_START)
    assert ids[-1] == smollm2_tokenizer.convert_tokens_to_ids(IM_END)


def test_piecewise_ids_equal_whole_text_ids(smollm2_tokenizer: Any) -> None:
    tokenizer = SessionTokenizer(smollm2_tokenizer, LossScope.parse("owner"), OWNER)
    text = render_session(SESSION)
    assert tokenizer(SESSION).input_ids == smollm2_tokenizer(text)["input_ids"]
    assert tokenizer.matches_whole_text(SESSION, text)


_names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
    lambda name: name.strip() == name and "<" not in name
)
_messages = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), max_size=40),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(turns=st.lists(st.tuples(_names, _messages), min_size=1, max_size=5))
def test_piecewise_ids_equal_whole_text_ids_for_any_text(smollm2_tokenizer: Any, turns: list[Any]) -> None:
    session = [Turn(speaker, tuple(messages)) for speaker, messages in turns]
    tokenizer = SessionTokenizer(smollm2_tokenizer, LossScope.parse("all"), OWNER)
    assert tokenizer(session).input_ids == smollm2_tokenizer(render_session(session))["input_ids"]


def test_many_equals_one_by_one(smollm2_tokenizer: Any) -> None:
    tokenizer = SessionTokenizer(smollm2_tokenizer, LossScope.parse("owner"), OWNER)
    sessions = [SESSION, SESSION[1:3], [{"speaker": OWNER, "messages": ["dict turns work too"]}]]
    assert tokenizer.many(sessions) == [tokenizer(session) for session in sessions]


def test_tokenizer_without_chat_tokens_gets_them_added(plain_tokenizer: Any) -> None:
    assert missing_chat_tokens(plain_tokenizer) == [IM_START, IM_END]
    with pytest.raises(ValueError, match="add_chat_tokens"):
        SessionTokenizer(plain_tokenizer, LossScope.parse("all"), OWNER)
    vocab_before = len(plain_tokenizer)
    assert add_chat_tokens(plain_tokenizer) == [IM_START, IM_END]
    assert len(plain_tokenizer) == vocab_before + 2
    assert add_chat_tokens(plain_tokenizer) == []  # idempotent
    session = [Turn("Anna", ("hello there",)), Turn(OWNER, ("hi",))]
    tokenizer = SessionTokenizer(plain_tokenizer, LossScope.parse("owner"), OWNER)
    tokenized = tokenizer(session)
    assert tokenized.input_ids == plain_tokenizer(render_session(session), add_special_tokens=False)["input_ids"]
    assert supervised_runs(tokenized) == expected_runs(plain_tokenizer, session, {OWNER})
    assert tokenized.input_ids.count(vocab_before) == 2  # <|im_start|> is one new token per turn


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("all", LossScope("all")),
        (" owner ", LossScope("owner")),
        ("personas:Anna,Bob Smith", LossScope("personas", ("Anna", "Bob Smith"))),
        ("personas: Anna , Anna", LossScope("personas", ("Anna",))),
    ],
)
def test_scope_parse(text: str, parsed: LossScope) -> None:
    assert LossScope.parse(text) == parsed
    assert LossScope.parse(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["", "everyone", "personas:", "personas: , ", "owner:Me"])
def test_scope_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="loss scope"):
        LossScope.parse(text)
