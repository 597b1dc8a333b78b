"""Pack tokenized sessions into training rows without letting sessions see each other.

Several sessions share one row; ``position_ids`` restart at 0 at each session start and no attention mask
is passed, so transformers builds a block-diagonal causal mask (sdpa, eager) or runs variable-length
kernels (flash-attention): a token attends only to earlier tokens of its own session. The first label of
every session is ignored, so no session is scored on predicting the start of the next. Rows in one batch
are padded to the longest with a separate padding "session" that nothing supervises.

Sessions arrive windowed by ``doppel prepare``, so nothing is cut here: a session longer than a row gets a
row of its own. Library only; :mod:`training.train.data`, :mod:`training.train.loop` and
``bench/bench_train.py`` use it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.train.labels import IGNORE_INDEX, TokenizedSession

# Sessions are packed first-fit-decreasing within blocks of this many shuffled sessions: large enough to
# fill rows to ~99%, small enough that the order stays random across the epoch.
PACKING_BLOCK = 1024

Row = list[int]
"""Indices of the sessions that share one row."""
Batch = list[Row]
"""The rows of one micro-batch."""


@dataclass(frozen=True)
class PackedBatch:
    """One micro-batch of packed rows, as tensors the model takes, plus its bookkeeping."""

    input_ids: torch.Tensor  # (rows, length)
    labels: torch.Tensor  # (rows, length), IGNORE_INDEX where not supervised
    position_ids: torch.Tensor  # (rows, length), restarting at 0 per session
    n_tokens: int  # real (non-padding) tokens
    n_supervised: int  # tokens that count in the loss
    sessions: tuple[int, ...]  # indices into the tokenized list, in row order

    def model_inputs(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``model(**inputs)``; no attention mask, on purpose (see module docstring)."""
        return {
            "input_ids": self.input_ids.to(device),
            "labels": self.labels.to(device),
            "position_ids": self.position_ids.to(device),
        }


def pack_rows(lengths: Sequence[int], order: Sequence[int], seq_len: int, block: int = PACKING_BLOCK) -> list[Row]:
    """Group sessions (visited in ``order``) into rows of at most ``seq_len`` tokens, first-fit decreasing.

    A session longer than ``seq_len`` gets a row of its own: longer than the others, never truncated.
    """
    rows: list[Row] = []
    for start in range(0, len(order), block):
        chunk = sorted(order[start : start + block], key=lambda index: -lengths[index])
        open_rows: list[Row] = []
        room: list[int] = []
        for index in chunk:
            length = lengths[index]
            for slot, free in enumerate(room):
                if length <= free:
                    open_rows[slot].append(index)
                    room[slot] -= length
                    break
            else:
                open_rows.append([index])
                room.append(seq_len - length)
        rows.extend(open_rows)
    return rows


def plan_epoch(lengths: Sequence[int], seq_len: int, rows_per_batch: int, seed: int, epoch: int) -> list[Batch]:
    """The micro-batches of one epoch: a pure function of its arguments, so a resumed run replays them."""
    rng = random.Random(f"doppel-pack:{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    rows = pack_rows(lengths, order, seq_len)
    rng.shuffle(rows)
    return [rows[start : start + rows_per_batch] for start in range(0, len(rows), rows_per_batch)]


def collate(sessions: Sequence[TokenizedSession], batch: Batch, pad_id: int, flatten: bool = False) -> PackedBatch:
    """Concatenate each row's sessions, restart positions per session, pad rows to the longest.

    ``flatten`` puts all rows into one (no padding at all): transformers' flash-attention path recognises
    packed sessions only in a batch of one row, and its variable-length kernel wastes nothing on a long row.
    """
    if flatten and len(batch) > 1:
        batch = [[index for row in batch for index in row]]
    row_ids: list[list[int]] = []
    row_labels: list[list[int]] = []
    row_positions: list[list[int]] = []
    for row in batch:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for index in row:
            session = sessions[index]
            ids += session.input_ids
            # The first token has no predecessor inside its session: never score it.
            labels += [IGNORE_INDEX, *session.labels[1:]]
            positions += range(len(session))
        row_ids.append(ids)
        row_labels.append(labels)
        row_positions.append(positions)
    width = max(len(ids) for ids in row_ids)
    n_tokens = sum(len(ids) for ids in row_ids)
    for ids, labels, positions in zip(row_ids, row_labels, row_positions, strict=True):
        pad = width - len(ids)
        ids.extend([pad_id] * pad)
        labels.extend([IGNORE_INDEX] * pad)
        positions.extend(range(pad))  # its own block: real tokens never attend to padding
    labels_tensor = torch.tensor(row_labels, dtype=torch.long)
    return PackedBatch(
        input_ids=torch.tensor(row_ids, dtype=torch.long),
        labels=labels_tensor,
        position_ids=torch.tensor(row_positions, dtype=torch.long),
        n_tokens=n_tokens,
        n_supervised=int((labels_tensor != IGNORE_INDEX).sum()),
        sessions=tuple(index for row in batch for index in row),
    )


def supervised_count(sessions: Sequence[TokenizedSession], batch: Batch) -> int:
    """The supervised tokens :func:`collate` will produce for ``batch``, without building it."""
    return sum(
        sessions[index].n_supervised - (sessions[index].labels[0] != IGNORE_INDEX)
        for row in batch
        for index in row
        if len(sessions[index])
    )
