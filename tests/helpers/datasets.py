"""Tiny datasets for the training and export tests, and a tokenizer without ChatML tokens.

The datasets are written the way ``doppel prepare`` writes them (``save_to_disk`` with the shared features,
``text`` rendered by the shared ChatML renderer, a manifest of the documented shape), so the trainer reads
them through the real loader.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import datasets

from doppel.chatml import Turn, render_session
from doppel.formats import dataset as dataset_format

OWNER = "Me"
FRIENDS = ("Anna", "Bob Smith")

# A small world with a strong, learnable style: the owner always answers in the same few phrases.
_OPENERS = [
    "are you free tonight?",
    "did you see the match?",
    "lunch tomorrow?",
    "how was the trip?",
    "call me later",
]
_OWNER_LINES = [
    "yep, see you at 7",
    "haha sure thing",
    "ok, on my way",
    "sounds good to me",
    "yep, count me in",
]
_BOB_LINES = ["nice", "cool cool", "ok then", "great, talk soon"]


def make_session(rng: random.Random, speakers: tuple[str, ...] = (OWNER, *FRIENDS), turns: int = 4) -> list[Turn]:
    """A short chat alternating between a friend and (if present) the owner."""
    friend = rng.choice([name for name in speakers if name != OWNER] or [OWNER])
    session = []
    for index in range(turns):
        if index % 2 == 0:
            speaker = friend
            lines = [rng.choice(_OPENERS)] if speaker != "Bob Smith" else [rng.choice(_BOB_LINES)]
        else:
            speaker = OWNER if OWNER in speakers else friend
            lines = [rng.choice(_OWNER_LINES) for _ in range(rng.randint(1, 2))]
        session.append(Turn(speaker=speaker, messages=tuple(lines)))
    return session


def write_dataset(
    path: Path,
    train: list[list[Turn]],
    validation: list[list[Turn]],
    owner: str = OWNER,
    speakers: tuple[str, ...] = (OWNER, *FRIENDS),
) -> Path:
    """A dataset directory in the layout `doppel prepare` writes; returns ``path``."""

    def rows(sessions: list[list[Turn]], offset: int) -> list[dict[str, Any]]:
        result = []
        for index, turns in enumerate(sessions):
            text = render_session(turns)
            start = 1_700_000_000 + (offset + index) * 3600
            result.append(
                {
                    "session_id": f"{100 + index % 3}:{start}#0",
                    "chat_id": 100 + index % 3,
                    "chat_type": "personal_chat",
                    "start": start,
                    "end": start + 600,
                    "window": 0,
                    "turns": [{"speaker": turn.speaker, "messages": list(turn.messages)} for turn in turns],
                    "text": text,
                    "n_tokens": len(text.encode()) // 3,
                }
            )
        return result

    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows(train, 0), features=dataset_format.FEATURES),
            "validation": datasets.Dataset.from_list(rows(validation, len(train)), features=dataset_format.FEATURES),
        }
    )
    splits.save_to_disk(str(path))
    counts = {name: 0 for name in speakers}
    turn_counts = {name: 0 for name in speakers}
    for turns in train + validation:
        for turn in turns:
            counts[turn.speaker] = counts.get(turn.speaker, 0) + len(turn.messages)
            turn_counts[turn.speaker] = turn_counts.get(turn.speaker, 0) + 1
    manifest = {
        "format": dataset_format.DATASET_FORMAT,
        "program": {"name": "doppel", "version": "test"},
        "owner": {"id": "user1", "name": owner},
        "speakers": [
            {
                "id": f"user{index + 1}",
                "name": name,
                "messages": counts[name],
                "turns": turn_counts[name],
                "is_owner": name == owner,
            }
            for index, name in enumerate(speakers)
        ],
        "settings": {"session_gap_minutes": 60},
        "source": {"sha256": "0" * 64},
        "counts": {"sessions": len(train) + len(validation)},
        "splits": {"train": len(train), "validation": len(validation)},
    }
    (path / dataset_format.MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


def train_plain_tokenizer() -> Any:
    """A real byte-level BPE tokenizer, trained here, that has no ChatML tokens (unlike SmolLM2's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = _OPENERS + _OWNER_LINES + _BOB_LINES + [OWNER, *FRIENDS, ">>> ", "hello there", "hi"]
    backend.train_from_iterator(corpus * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>")
