"""The ``manifest.json`` of a prepared dataset: who the owner is, the persona list, settings, source, counts.

Its format is :data:`doppel.formats.dataset.DATASET_FORMAT`; later stages (train, export, the engine) read
it through :mod:`doppel.formats.dataset`. Only names and counts appear in it, never message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from doppel import __version__
from doppel.chatml import MESSAGE_PREFIX
from training.prepare.config import PrepareConfig
from training.prepare.report import PrepareStats
from training.prepare.scrub import Blocklist


def speaker_list(
    names: Mapping[str, str], owner_id: str, message_counts: Mapping[str, int], turn_counts: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Every speaker of a kept session, most messages first: the personas a model can play."""
    return [
        {
            "id": speaker_id,
            "name": names[speaker_id],
            "messages": message_counts[speaker_id],
            "turns": turn_counts[speaker_id],
            "is_owner": speaker_id == owner_id,
        }
        for speaker_id in sorted(message_counts, key=lambda s: (-message_counts[s], s))
    ]


def build_manifest(
    config: PrepareConfig,
    stats: PrepareStats,
    owner: tuple[str, str],
    speakers: list[dict[str, Any]],
    exports: tuple[Path, ...],
    blocklist: Blocklist | None,
) -> dict[str, Any]:
    """The manifest of a finished run; ``owner`` is ``(id, name)``."""
    from doppel.formats.dataset import DATASET_FORMAT  # here, not at the top: imports pyarrow

    settings = config.model_dump()
    settings["exports"] = [path.name for path in exports]
    settings["out"] = str(config.out)
    for key in ("tokenizer", "blocklist"):
        settings[key] = str(settings[key]) if settings[key] is not None else None
    settings["overlap_tokens"] = config.window_overlap
    settings["blocklist_size"] = blocklist.size if blocklist else 0
    settings["token_estimate"] = "tokenizer" if config.tokenizer else "utf8-bytes/3.5"
    settings.pop("progress")
    settings.pop("workers")  # how the work was spread changes nothing in the dataset
    return {
        "format": DATASET_FORMAT,
        "program": {"name": "doppel", "version": __version__},
        "owner": {"id": owner[0], "name": owner[1]},
        "speakers": speakers,
        "message_format": {"template": "chatml", "message_prefix": MESSAGE_PREFIX, "roles": "speaker names"},
        "settings": settings,
        "source": {
            "sha256": stats.sha256,
            "files": [{"name": path.name, "bytes": path.stat().st_size} for path in exports],
        },
        "counts": stats.counts(),
        "splits": {"train": stats.train_rows, "validation": stats.validation_rows},
    }
