"""Where ``doppel prepare`` writes: it replaces only an earlier doppel dataset, and the new one appears at once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from doppel.errors import InputError


def check_output_dir(out: Path, *, early: bool = False) -> None:
    """Refuse to replace anything but an earlier doppel dataset (or an empty folder).

    ``early``: before pass 1, only a folder without a manifest is refused. The full check reads the
    manifest with doppel.formats.dataset, which imports pyarrow; done before the workers fork, that would
    cost every process pyarrow's memory. So it runs again, fully, once pass 1 is over.
    """
    if out.exists():
        if out.is_file():
            raise InputError(f"{out}: exists and is a file; --out needs a directory")
        if any(out.iterdir()):
            refused = InputError(f"{out}: exists and is not a doppel dataset; refusing to overwrite it")
            if early:
                if not (out / "manifest.json").is_file():
                    raise refused
                return
            from doppel.formats.dataset import load_manifest  # here, not at the top: imports pyarrow

            try:
                load_manifest(out)
            except InputError:
                raise refused from None


def replace_atomically(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out``, replacing what was there only once it is complete."""
    previous = None
    if out.exists():
        previous = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(previous)
    staging.rename(out)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
