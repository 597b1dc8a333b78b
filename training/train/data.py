"""From a prepared dataset to what the training loop reads: checked speakers, tokenized splits and the batch plan.

Everything here runs before any model weights are loaded, so a dataset that cannot train (an owner who never
speaks, a loss scope that supervises nothing, too few sessions for one step) fails at the start. The plan of
every optimizer step is a pure function of the lengths and the settings, which is what lets ``--resume``
replay the data order. Library only; :mod:`training.train.loop` uses it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from doppel.errors import InputError
from doppel.formats.dataset import PreparedDataset
from training.train.attention import needs_single_row
from training.train.config import TrainConfig
from training.train.labels import LossScope, SessionTokenizer, TokenizedSession
from training.train.model import pad_token_id
from training.train.packing import Batch, PackedBatch, collate, plan_epoch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

TOKENIZATION_CHECKS = 8
"""Sessions whose piecewise ids are compared with tokenizing the whole text."""


@dataclass(frozen=True)
class TokenizedSplit:
    """The sessions of one dataset split as ids and labels, with their session ids, in dataset order."""

    sessions: list[TokenizedSession]
    session_ids: list[str]

    @property
    def lengths(self) -> list[int]:
        return [len(session) for session in self.sessions]

    @property
    def n_supervised(self) -> int:
        return sum(session.n_supervised for session in self.sessions)


@dataclass(frozen=True)
class TrainingData:
    """What the loop trains and validates on: the training sessions, every step's micro-batches, the
    validation batches, and how rows are collated (padding id, one flattened row for flash-attention)."""

    train: TokenizedSplit
    steps: list[list[Batch]]
    val_batches: list[PackedBatch]
    pad_id: int
    flatten: bool


def check_speakers(dataset: PreparedDataset, scope: LossScope) -> None:
    """The owner must speak in the training split, and every persona of the scope must exist and speak."""
    turns_by_speaker = Counter(turn["speaker"] for turns in dataset.splits["train"]["turns"] for turn in turns)
    owner = dataset.owner
    if turns_by_speaker[owner] == 0:
        raise InputError(
            f"{dataset.path}: the owner {owner!r} never speaks in the training split, so there is no style "
            "to learn (did `doppel prepare --me` name the right person?)"
        )
    if scope.kind != "personas":
        return
    known = {str(speaker["name"]) for speaker in dataset.speakers}
    for name in scope.names:
        if name not in known:
            listing = ", ".join(sorted(known)[:12])
            raise InputError(f"--loss-scope: no speaker named {name!r} in {dataset.path} (speakers: {listing})")
        if turns_by_speaker[name] == 0:
            raise InputError(f"--loss-scope: {name!r} never speaks in the training split of {dataset.path}")


def prepare_data(
    dataset: PreparedDataset, config: TrainConfig, tokenizer: PreTrainedTokenizerBase, *, attention: str, world: int
) -> TrainingData:
    """Tokenize both splits, check that something is supervised, and plan the run's batches."""
    session_tokenizer = SessionTokenizer(tokenizer, config.scope, dataset.owner)
    train_split = tokenize_split(dataset.splits["train"], session_tokenizer)
    val_split = tokenize_split(dataset.splits["validation"], session_tokenizer)
    if train_split.n_supervised == 0:
        raise InputError(
            f"{config.dataset}: the loss scope {config.loss_scope!r} supervises no token of the training split"
        )
    steps = plan_steps(train_split.lengths, config, config.grad_accum * world, drop_last=world > 1)
    pad_id, flatten = pad_token_id(tokenizer), needs_single_row(attention)
    val_batches = [
        collate(val_split.sessions, batch, pad_id, flatten=flatten)
        for batch in plan_epoch(val_split.lengths, config.seq_len, config.rows_per_batch, config.seed, 0)
    ]
    return TrainingData(train=train_split, steps=steps, val_batches=val_batches, pad_id=pad_id, flatten=flatten)


def tokenize_split(split: Any, session_tokenizer: SessionTokenizer) -> TokenizedSplit:
    """Ids and labels for every session of a dataset split, checked against whole-text tokenization."""
    rows = split.select_columns(["session_id", "turns", "text"])
    sessions = session_tokenizer.many(rows["turns"])
    for index in range(min(TOKENIZATION_CHECKS, len(rows))):
        if not session_tokenizer.matches_whole_text(rows[index]["turns"], rows[index]["text"]):
            log.warning(
                "this tokenizer splits the ChatML pieces differently from the whole text; training keeps the "
                "piecewise ids, which may differ slightly from what an engine tokenizes at inference"
            )
            break
    return TokenizedSplit(sessions=sessions, session_ids=list(rows["session_id"]))


def plan_steps(lengths: Sequence[int], config: TrainConfig, per_step: int, drop_last: bool) -> list[list[Batch]]:
    """The micro-batches of every optimizer step of the run, ``per_step`` (= grad_accum × processes) each.

    With ``--max-steps`` the epochs repeat (each reshuffled) until there are enough steps. With several
    processes an incomplete last step is dropped, since every process must run the same number of batches.
    """
    micro: list[Batch] = []
    epoch = 0
    while epoch < config.epochs or (config.max_steps and len(micro) < config.max_steps * per_step):
        epoch_batches = plan_epoch(lengths, config.seq_len, config.rows_per_batch, config.seed, epoch)
        if not epoch_batches:
            break
        micro.extend(epoch_batches)
        epoch += 1
        if config.max_steps and epoch >= config.epochs and len(micro) >= config.max_steps * per_step:
            break
    steps = [micro[start : start + per_step] for start in range(0, len(micro), per_step)]
    if steps and drop_last and len(steps[-1]) < per_step:
        steps.pop()
    if config.max_steps:
        steps = steps[: config.max_steps]
    if not steps:
        raise InputError(f"{config.dataset}: not enough training sessions for one step of {per_step} micro-batches")
    return steps
