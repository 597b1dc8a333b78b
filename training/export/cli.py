"""``doppel export``: the command-line face of :func:`training.export.pipeline.export`.

    doppel export RUN --out MODEL.gguf [--quant q4_k_m|q5_k_m|q6_k|q8_0|f16] [--adapter-only] [--no-verify]

Bad input (a missing or unfinished run, an architecture llama.cpp cannot convert, no disk space) is one line and
exit code 2; a conversion that fails or does not verify is one line and exit code 1, and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from doppel.errors import InputError
from training.export.quantize import DEFAULT_QUANT, QUANTS

EXIT_FAILED = 1


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand (called by :mod:`doppel.cli`)."""
    parser = subparsers.add_parser(
        "export",
        help="convert a trained run to a GGUF file for llama.cpp (merged and quantized, or a LoRA adapter)",
        description="Merge a trained run, convert it with llama.cpp's own converter, quantize it, write doppel's "
        "metadata into it and check that it predicts like the trained model.",
    )
    parser.add_argument("run", nargs="?", type=Path, metavar="RUN", help="a run directory from `doppel train`")
    parser.add_argument(
        "--out", type=Path, metavar="MODEL.gguf", help="the GGUF file to write (the adapter with --adapter-only)"
    )
    parser.add_argument(
        "--quant",
        default=DEFAULT_QUANT,
        metavar="TYPE",
        help=f"quantization: {', '.join(QUANTS)} (default: {DEFAULT_QUANT}); smaller files cost some perplexity",
    )
    parser.add_argument(
        "--adapter-only",
        action="store_true",
        help="write the LoRA as a GGUF adapter, plus the base (at --quant) beside it if not already there",
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip checking the GGUF against the trained model on validation sessions",
    )
    parser.set_defaults(handler=run, stage="export")


def run(args: argparse.Namespace) -> int:
    """Handler of ``doppel export``: check the arguments, export, print the summary."""
    if args.run is None:
        raise InputError("RUN is required: the run directory written by `doppel train`")
    if args.out is None:
        raise InputError("--out MODEL.gguf is required")
    from training.export.convert import ConversionError
    from training.export.pipeline import ExportConfig, export
    from training.export.quantize import QuantizeError
    from training.export.verify import VerificationError

    config = ExportConfig(
        run=args.run, out=args.out, quant=args.quant, adapter_only=args.adapter_only, verify=args.verify
    )
    try:
        summary = export(config)
    except (ConversionError, QuantizeError, VerificationError) as error:
        print(f"doppel export: failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(summary.describe())
    return 0
