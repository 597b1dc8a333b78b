"""The ``doppel`` command: one subcommand per pipeline stage.

    doppel --help
    doppel sample-export OUT.json [--seed N] [--messages N]
    doppel prepare EXPORT... --out DIR [--me NAME_OR_ID] [--config FILE] ...
    doppel train DATASET --out RUN [--config FILE] ...
    doppel export RUN --out MODEL.gguf [--quant q4_k_m] ...
    doppel chat MODEL.gguf [--persona NAME] [--as NAME] [--dataset DIR] [--engine-url URL] ...

Each stage module exposes ``register(subparsers)``, which adds its subcommand and sets ``handler`` to a
function ``(args) -> int``. This module only assembles them, sets up logging and turns bad input
(:class:`doppel.errors.InputError`) into a one-line message and exit code 2. A command line that names
its stage imports only that stage's module: ``doppel prepare`` forks workers, and every megabyte the
parent holds then is counted again in each of them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from doppel import __version__
from doppel.errors import InputError

EXIT_OK = 0
EXIT_BAD_INPUT = 2

# What `pip install 'doppel[train]'` adds to the base install (which only serves).
TRAINING_EXTRA = frozenset(
    {"torch", "transformers", "peft", "accelerate", "datasets", "sentencepiece", "msgspec", "xxhash", "tqdm"}
    | {"matplotlib", "psutil", "filelock"}
)

# Imported lazily, in this order: `doppel --help` must not pay for torch.
STAGE_MODULES = {
    "sample-export": "training.telegram.sample.cli",
    "prepare": "training.prepare.cli",
    "train": "training.train.cli",
    "export": "training.export.cli",
    "chat": "serving.chat.cli",
}


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The parser for every stage, or only for ``stage`` when it is one of them."""
    parser = argparse.ArgumentParser(
        prog="doppel",
        description="Turn a Telegram export into a model, and a bot, that writes like you.",
    )
    parser.add_argument("--version", action="version", version=f"doppel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (may include file paths)")
    subparsers = parser.add_subparsers(title="stages", metavar="STAGE", required=True)
    for module_name in [STAGE_MODULES[stage]] if stage in STAGE_MODULES else STAGE_MODULES.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # a stage not built yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    stage = next((argument for argument in arguments if not argument.startswith("-")), None)
    args = build_parser(stage).parse_args(arguments)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except InputError as error:
        print(f"doppel {args.stage}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in TRAINING_EXTRA:
            raise
        print(
            f"doppel {args.stage}: error: needs the training stack ({error.name} is not installed): "
            "pip install 'doppel[train]'",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"doppel {args.stage}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
