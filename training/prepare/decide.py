"""Pass 2 of ``doppel prepare``: with every speaker seen, settle who is who and what is kept.

The owner and each speaker's one name (the latest), the sessions kept (the owner speaks after the first
turn), and the validation cutoff (the most recent share of them), all in a :class:`RowPlan` that pass 3
renders by, in-process or in every worker.
"""

from __future__ import annotations

from pathlib import Path

from doppel.errors import InputError
from training.prepare.config import PrepareConfig
from training.prepare.rows import RowPlan
from training.prepare.speakers import SpeakerRegistry, resolve_owner
from training.prepare.spill import SessionIndex


def decide(
    config: PrepareConfig,
    exports: tuple[Path, ...],
    registry: SpeakerRegistry,
    owner_ids: set[str],
    sessions: SessionIndex,
) -> RowPlan:
    """Pass 2's decisions; an owner who never answers anyone is a one-line :class:`InputError`."""
    sources = ", ".join(map(str, exports))
    owner_id = resolve_owner(registry, config.me, owner_ids, sources)
    if owner_id not in registry.speakers:
        raise InputError(
            f"{sources}: the owner ({owner_id}) sends no message in the selected chats; "
            "check --me, the chat filters and --since/--until"
        )
    names = registry.finalise(owner_id)
    # The keep rule (two or more turns, the owner speaks after the first): single-turn sessions
    # have no later speakers, so membership alone decides.
    kept = [owner_id in later for later in sessions.later_speakers]
    cutoff = validation_cutoff(
        [start for start, keep in zip(sessions.starts, kept, strict=True) if keep], config.val_fraction
    )
    if not any(kept):
        raise InputError(
            f"{sources}: no conversation has the owner ({names[owner_id]!r}) answering "
            "anyone; check --me, the chat filters and --since/--until"
        )
    return RowPlan(
        names=names,
        owner_id=owner_id,
        cutoff=cutoff,
        max_tokens=config.max_tokens,
        overlap_tokens=config.window_overlap,
    )


def validation_cutoff(starts: list[int], fraction: float) -> int | None:
    """The start time from which sessions go to validation: the most recent ``fraction`` of them.

    Whole sessions (all their windows) land on one side, and every validation session starts no
    earlier than any training session, so nothing leaks from the future into training.
    """
    if fraction <= 0 or len(starts) < 2:
        return None
    ordered = sorted(starts)
    count = max(1, round(len(ordered) * fraction))
    cutoff = ordered[len(ordered) - count]
    if cutoff == ordered[0]:
        return None  # everything started at once: there is no "later" to hold out
    return cutoff
