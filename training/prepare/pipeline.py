"""``doppel prepare``: Telegram Desktop exports in, a ChatML training set out.

    doppel prepare result.json --out dataset/ [--me NAME_OR_ID] [--session-gap 30m] [--max-tokens 1024]

Three passes, each in flat memory:
1. read (``reader``, ``spill``; ``workers`` on two cores): stream every export, normalise and filter
   messages, scrub them, and cut each chat into sessions (``sessions``), which are spilled to a scratch
   file with speakers still as ids. Several exports are merged first, so a message seen twice counts once.
2. decide (``decide``): with all speakers seen, settle the owner and each speaker's one name (the latest),
   keep the sessions where the owner speaks after the first turn, and put the most recent share into
   validation.
3. write (``rows``, ``writer``, ``manifest``, ``output``): render each kept session (windowed when long)
   with the shared ChatML rendering into chunks of rows (in the workers when pass 1 had them), written as
   the train and validation splits, then the manifest and the report. The output directory appears
   atomically: a failed run leaves no half-written dataset behind.

This module runs the passes in order; the settings are :class:`training.prepare.config.PrepareConfig`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import resource
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from doppel.errors import InputError
from doppel.system import usable_cpus
from training.prepare.config import PrepareConfig
from training.prepare.decide import decide
from training.prepare.manifest import build_manifest, speaker_list
from training.prepare.output import check_output_dir, replace_atomically
from training.prepare.reader import ExportReader, resolve_export_path
from training.prepare.report import PrepareStats, format_report
from training.prepare.rows import TRAIN, VALIDATION, RowChunk, RowPlan, RowTally, render_rows
from training.prepare.scrub import Blocklist
from training.prepare.sessions import Sessionizer, TokenCounter
from training.prepare.speakers import SpeakerRegistry
from training.prepare.spill import SessionIndex, SessionSpill
from training.prepare.workers import MIN_PARALLEL_BYTES, ParallelPrepare

log = logging.getLogger(__name__)


@dataclass
class PrepareResult:
    out: Path
    manifest: dict[str, Any]
    report: str
    stats: PrepareStats = field(repr=False)


def prepare(config: PrepareConfig) -> PrepareResult:
    """Run the stage: read ``config.exports``, write the dataset directory ``config.out``."""
    with _collector_paused():
        return _prepare(config)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting still frees everything).

    Prepare allocates millions of short-lived tuples and strings and builds no reference cycles, so the
    collector finds nothing, yet its generation scans cost ~14% of the wall time. Forked workers inherit
    the pause. Peak RSS is unchanged (measured on the 1M-message benchmark).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _prepare(config: PrepareConfig) -> PrepareResult:
    config.validate_values()
    started = time.perf_counter()
    exports = tuple(resolve_export_path(path) for path in config.exports)
    check_output_dir(config.out, early=True)
    blocklist = Blocklist.from_file(config.blocklist) if config.blocklist else None
    # None: the default estimate, which pass 3 computes from byte lengths (training.prepare.rows).
    row_tokens = _token_counter(config.tokenizer) if config.tokenizer is not None else None
    stats = PrepareStats(files=[str(path) for path in exports])
    config.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{config.out.name}.", dir=config.out.parent))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)  # last: the workers are gone before their files
        reader = ExportReader(config, stats, blocklist)
        registry = SpeakerRegistry()
        owner_ids: set[str] = set()
        workers = _worker_count(config, exports)
        parallel: ParallelPrepare | None = None
        spill: SessionSpill | None = None
        sessions: SessionIndex
        if workers > 1:
            parallel = cleanup.enter_context(
                ParallelPrepare(reader, exports[0], workers, scratch, config.session_gap, row_tokens)
            )
            with reader.progress_bar(exports) as progress:
                read = parallel.read(owner_ids, registry, progress.show)
            reader.hashes.append(read.sha256)
            sessions = read
        else:
            sessions = spill = SessionSpill(scratch / "sessions.bin")
            cleanup.callback(spill.finish_writing)
            _read_serially(reader, exports, scratch, owner_ids, registry, spill)
        stats.sha256 = reader.combined_hash()
        _log_phase("pass 1 (read)", started, workers)
        plan = decide(config, exports, registry, owner_ids, sessions)
        _log_phase("pass 2 (decide)", started, workers)
        staging = scratch / "dataset"
        tally = _write_rows(config, staging, plan, parallel, spill, reader, row_tokens, started, workers)
        return _finish(config, exports, staging, plan, tally, reader, started)


def _read_serially(
    reader: ExportReader,
    exports: tuple[Path, ...],
    scratch: Path,
    owner_ids: set[str],
    registry: SpeakerRegistry,
    spill: SessionSpill,
) -> None:
    """Pass 1 in this process: every admitted chat cut into sessions, spilled to ``spill``."""
    stats, session_gap = reader.stats, reader.config.session_gap
    for chat_index, _chat, batches in reader.read(exports, scratch, owner_ids):
        sessionizer = Sessionizer(chat_index, session_gap)
        for rows in batches:
            for finished in sessionizer.add_many(rows):
                spill.add(finished, stats, registry)
        last = sessionizer.flush()
        if last is not None:
            spill.add(last, stats, registry)
    spill.finish_writing()


def _write_rows(
    config: PrepareConfig,
    staging: Path,
    plan: RowPlan,
    parallel: ParallelPrepare | None,
    spill: SessionSpill | None,
    reader: ExportReader,
    row_tokens: TokenCounter | None,
    started: float,
    workers: int,
) -> RowTally:
    """Pass 3: render the kept sessions (in the workers, when pass 1 had them) and write both splits."""

    def load_the_writer() -> None:
        # pyarrow only now: the workers were forked from a parent without it (see training.prepare.workers),
        # and with workers, only once the first has exited: their memory and pyarrow's never add up.
        check_output_dir(config.out)
        import training.prepare.writer  # noqa: F401

    if parallel is not None:
        parallel.render(plan, meanwhile=load_the_writer)  # the workers render their own chats
        _log_phase("pass 3 (rendered by the workers)", started, workers)
    else:
        load_the_writer()
    from training.prepare.writer import SplitWriter, write_dataset_dict_index

    writers = (SplitWriter(staging / "train", "train"), SplitWriter(staging / "validation", "validation"))

    def emit(chunk: RowChunk) -> None:
        writers[chunk.split].add_chunk(chunk)

    if parallel is not None:
        tally = parallel.collect(emit)
    else:
        assert spill is not None
        tally = render_rows(spill.read_raw(), reader.chats, plan, row_tokens, emit)
    for writer in writers:
        writer.close()
    write_dataset_dict_index(staging)
    tally.rows = [writers[TRAIN].rows, writers[VALIDATION].rows]
    _log_phase("pass 3 (write)", started, workers)
    return tally


def _finish(
    config: PrepareConfig,
    exports: tuple[Path, ...],
    staging: Path,
    plan: RowPlan,
    tally: RowTally,
    reader: ExportReader,
    started: float,
) -> PrepareResult:
    """Count pass 3 in, write the manifest and the report beside the splits, and move the dataset into place."""
    from doppel.formats.dataset import MANIFEST_NAME, REPORT_NAME

    stats = reader.stats
    stats.windows += tally.windows
    stats.sessions_kept += tally.sessions_kept
    stats.turns += tally.turns
    stats.window_tokens.extend(tally.window_tokens)
    stats.session_messages.extend(tally.session_messages)
    stats.train_rows, stats.validation_rows = tally.rows
    stats.seconds = time.perf_counter() - started
    owner_id, names = plan.owner_id, plan.names
    speakers = speaker_list(names, owner_id, Counter(tally.message_counts), Counter(tally.turn_counts))
    manifest = build_manifest(config, stats, (owner_id, names[owner_id]), speakers, exports, reader.blocklist)
    report = format_report(stats, manifest)
    (staging / MANIFEST_NAME).write_text(msgspec.json.format(msgspec.json.encode(manifest)).decode(), encoding="utf-8")
    (staging / REPORT_NAME).write_text(report + "\n", encoding="utf-8")
    replace_atomically(staging, config.out)
    log.info("wrote %s: %d train rows, %d validation rows", config.out, stats.train_rows, stats.validation_rows)
    return PrepareResult(out=config.out, manifest=manifest, report=report, stats=stats)


def _log_phase(phase: str, started: float, workers: int) -> None:
    if log.isEnabledFor(logging.DEBUG):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        log.debug("%s done at %.2f s (%d workers), peak RSS %d MB", phase, time.perf_counter() - started, workers, peak)


def _worker_count(config: PrepareConfig, exports: tuple[Path, ...]) -> int:
    """Processes for passes 1 and 3: one per core up to two, for a single export big enough to be worth it.

    Several exports are merged through SQLite first, which is one stream: they are read in-process.
    """
    if len(exports) != 1:
        return 1
    if config.workers is not None:
        return config.workers
    if exports[0].stat().st_size < MIN_PARALLEL_BYTES:
        return 1
    cores = usable_cpus()
    # Two, not one per core: every worker walks the whole file (skipping what others claimed), so each
    # one more buys less, and each costs ~27 MB of the 150 MB that all of prepare's processes share.
    return min(2, cores)


def _token_counter(tokenizer: Path) -> TokenCounter:
    try:
        from transformers import AutoTokenizer

        if tokenizer.suffix == ".gguf":
            loaded = AutoTokenizer.from_pretrained(str(tokenizer.parent), gguf_file=tokenizer.name)
        else:
            loaded = AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError) as error:
        raise InputError(f"{tokenizer}: cannot load a tokenizer from it ({error})") from None
    return lambda text: len(loaded(text, add_special_tokens=False)["input_ids"])
