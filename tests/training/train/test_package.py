"""The package says what it offers, and importing it (or registering the command) stays cheap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import training.train

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "transformers", "numpy", "accelerate", "peft", "pydantic")


def imported_after(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter holds after running ``code``."""
    held = f"sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r}))"
    probe = f"import json, sys\n{code}\nprint(json.dumps({held}))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    return list(json.loads(done.stdout))


def test_importing_the_package_and_its_command_imports_nothing_heavy() -> None:
    assert imported_after("import training.train, training.train.cli") == []


def test_registering_the_train_command_imports_no_training_stack() -> None:
    """`doppel --help` must stay fast: the flags need the settings schema, not torch."""
    code = "import argparse\nfrom training.train import cli\ncli.register(argparse.ArgumentParser().add_subparsers())"
    assert not set(imported_after(code)) & {"torch", "transformers", "numpy", "accelerate", "peft"}


@pytest.mark.parametrize("name", training.train.__all__)
def test_every_public_name_resolves_lazily(name: str) -> None:
    assert getattr(training.train, name) is not None
    assert name in dir(training.train)


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = training.train.nope  # type: ignore[attr-defined]
