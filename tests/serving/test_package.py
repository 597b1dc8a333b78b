"""The engine package offers its names without importing anything heavy until one is used."""

from __future__ import annotations

import subprocess
import sys

import serving.engine


def test_every_offered_name_resolves() -> None:
    for name in serving.engine.__all__:
        assert getattr(serving.engine, name).__name__ == name


def test_importing_the_package_loads_neither_llama_cpp_nor_pydantic() -> None:
    code = "import sys, serving.engine\nprint([m for m in ('llama_cpp', 'pydantic', 'httpx') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
