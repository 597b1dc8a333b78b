"""The scratch space of an export: a folder beside the output that every intermediate file is written in.

It is removed at the end whatever happens, so a failed export leaves no partial file; the results are renamed
out of it into place (the same file system, so the rename is atomic). A folder left by an export that was
killed is removed by the next export to the same file. Library only; :func:`training.export.pipeline.export`
uses it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SCRATCH_PREFIX = ".tmp-export-"


@contextlib.contextmanager
def scratch_dir(out: Path) -> Iterator[Path]:
    """A fresh, empty scratch folder for this process's export to ``out``, removed on leaving.

    Its name says whose it is (``.tmp-export-<out's name>-<pid>``), so that a later export can tell a dead one's.
    """
    scratch = out.parent / f"{SCRATCH_PREFIX}{out.name}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def remove_stale_scratch(out: Path) -> None:
    """Delete the scratch of earlier exports to the same file whose process is gone (killed, power lost)."""
    for folder in out.parent.glob(f"{SCRATCH_PREFIX}{out.name}-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            log.info("removing %s, left by an export that did not finish", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
