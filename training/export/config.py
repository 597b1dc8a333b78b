"""The one settings schema of ``doppel export``: every field is a command-line flag and a YAML key.

Precedence, lowest first: the defaults here, ``--config FILE``, then the flags given on the command line.
Library only; the flags are built from the schema by :mod:`doppel.settings`, the one settings pattern of every
stage, in :mod:`training.export.cli`::

    doppel export RUN --out MODEL.gguf --config export.yaml --quant q8_0

The quantization is checked by :func:`training.export.pipeline.export`, before anything heavy runs, so that a
bad one reads the same from a flag, a config file or code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from doppel.settings import Cli, StageSettings
from training.export.quantize import DEFAULT_QUANT, QUANTS

DEFAULT_SESSIONS = 8  # validation sessions the GGUF is checked on
DEFAULT_MAX_TOKENS = 384  # tokens of each of them at most


class ExportConfig(StageSettings):
    """Settings of one export. ``description`` doubles as the ``--help`` text of each flag."""

    run: Annotated[Path, Cli(positional="?", metavar="RUN")] = Field(description="a run directory from `doppel train`")
    out: Annotated[Path, Cli(metavar="MODEL.gguf")] = Field(
        description="the GGUF file to write (the adapter with --adapter-only)"
    )
    quant: Annotated[str, Cli(metavar="TYPE")] = Field(
        DEFAULT_QUANT, description=f"quantization: {', '.join(QUANTS)}; smaller files cost some perplexity"
    )
    adapter_only: bool = Field(
        False, description="write the LoRA as a GGUF adapter, plus the base (at --quant) beside it if not already there"
    )
    verify: Annotated[bool, Cli(default_help="--verify")] = Field(
        True, description="check the GGUF against the trained model on validation sessions; --no-verify skips it"
    )
    verify_sessions: Annotated[int, Cli(hidden=True)] = Field(
        DEFAULT_SESSIONS, ge=0, description="validation sessions to verify on (0: all of them)"
    )
    verify_max_tokens: Annotated[int, Cli(hidden=True)] = Field(
        DEFAULT_MAX_TOKENS, ge=2, description="tokens of each validation session at most"
    )
