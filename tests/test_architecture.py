"""The house's lines hold: which package may import which, no private names across modules, a runtime without torch.

The rules are ``../shared/ARCHITECTURE.md``'s: ``doppel/`` (the shared core) imports no stage, except its CLI,
which loads them lazily; ``training/`` (offline, torch) never imports ``serving/`` or ``bot/``; ``serving/`` never
imports ``training/`` or ``bot/``; ``bot/`` imports ``serving/`` and ``doppel/`` only.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("doppel", "training", "serving", "bot")
FORBIDDEN = {
    "doppel": {"training", "serving", "bot"},
    "training": {"serving", "bot"},
    "serving": {"training", "bot"},
    "bot": {"training"},
}
LAZY_STAGE_LOADERS = {"doppel/cli.py"}  # names stage modules as strings, imported on demand
TORCH_STACK = ("torch", "transformers", "peft", "accelerate", "datasets")


def imports_of(source: str, package: str) -> list[tuple[str, list[str]]]:
    """Every ``(module, names)`` a module of ``package`` imports, relative imports resolved."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((base, [alias.name for alias in node.names]))
    return found


def source_files() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


@pytest.mark.parametrize("path", source_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_import_crosses_a_line_and_no_private_name_leaves_its_module(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    owner = relative.split("/", maxsplit=1)[0]
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    for module, names in imports_of(path.read_text(encoding="utf-8"), package):
        top = module.split(".")[0]
        if relative not in LAZY_STAGE_LOADERS:
            assert top not in FORBIDDEN[owner], f"{relative} imports {module}"
        if top in PACKAGES:
            private = [name for name in names if name.startswith("_") and not name.startswith("__")]
            assert not private, f"{relative} imports private {private} from {module}"
            assert not any(part.startswith("_") and part != "__init__" for part in module.split(".")), relative


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("*.py")), ids=lambda path: str(path.relative_to(ROOT)))
def test_tests_use_only_what_the_packages_offer(path: Path) -> None:
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    for module, names in imports_of(path.read_text(encoding="utf-8"), package):
        if module.split(".")[0] in PACKAGES:
            private = [name for name in names if name.startswith("_") and not name.startswith("__")]
            assert not private, f"{path.relative_to(ROOT)} imports private {private} from {module}"


def test_the_runtime_and_the_command_line_load_no_torch() -> None:
    """A server that only answers messages installs without the training stack, so it must never import it."""
    code = (
        "import sys\n"
        "import bot, serving, serving.chat, serving.engine, serving.eval\n"
        "import doppel.chatml, doppel.errors, doppel.llama_loader, doppel.paths, doppel.settings, doppel.system\n"
        "import doppel.formats.dataset, doppel.formats.gguf_metadata, doppel.formats.run_dir\n"
        "from doppel.cli import build_parser\n"
        "build_parser()\n"
        f"print(sorted(name for name in {TORCH_STACK!r} if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_the_check_reads_relative_and_nested_imports() -> None:
    """The check above would catch a crossing however it is spelled: relative, or inside a function."""
    source = "from ..chat import run\ndef f():\n    import training.train\n    from doppel.chatml import _defuse\n"
    assert imports_of(source, "serving.engine") == [
        ("serving.chat", ["run"]),
        ("training.train", []),
        ("doppel.chatml", ["_defuse"]),
    ]
