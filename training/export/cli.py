"""``doppel export``: the command-line face of :func:`training.export.pipeline.export`.

    doppel export RUN --out MODEL.gguf [--quant q4_k_m|q5_k_m|q6_k|q8_0|f16] [--adapter-only] [--no-verify]
                  [--config FILE]

Every field of :class:`training.export.config.ExportConfig` becomes a flag with its description as help
(:mod:`doppel.settings`); flags override ``--config FILE``, which overrides the defaults. Bad input (a missing
or unfinished run, an architecture llama.cpp cannot convert, no disk space) is one line and exit code 2; a
conversion that fails or does not verify is one line and exit code 1, and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from doppel.errors import InputError

if TYPE_CHECKING:
    from training.export.config import ExportConfig

EXIT_FAILED = 1


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand (called by :mod:`doppel.cli`)."""
    from doppel.settings import add_stage
    from training.export.config import ExportConfig

    add_stage(
        subparsers,
        "export",
        ExportConfig,
        help="convert a trained run to a GGUF file for llama.cpp (merged and quantized, or a LoRA adapter)",
        description="Merge a trained run, convert it with llama.cpp's own converter, quantize it, write doppel's "
        "metadata into it and check that it predicts like the trained model.",
        handler=run,
    )


def settings_from_args(args: argparse.Namespace) -> ExportConfig:
    """Merge the defaults, ``--config`` and the flags into one validated set of settings."""
    from doppel.settings import given_values
    from training.export.config import ExportConfig

    values = given_values(args, ExportConfig)
    if "run" not in values:
        raise InputError("RUN is required: the run directory written by `doppel train`")
    if "out" not in values:
        raise InputError("--out MODEL.gguf is required")
    return ExportConfig.from_mapping(values)


def run(args: argparse.Namespace) -> int:
    """Handler of ``doppel export``: build the settings, export, print the summary."""
    settings = settings_from_args(args)
    from training.export.convert import ConversionError
    from training.export.pipeline import export
    from training.export.quantize import QuantizeError
    from training.export.verify import VerificationError

    try:
        summary = export(settings)
    except (ConversionError, QuantizeError, VerificationError) as error:
        print(f"doppel export: failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(summary.describe())
    return 0
