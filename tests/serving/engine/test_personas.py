"""Personas come from a model's doppel metadata or a dataset's manifest; a wrong name lists the right ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from doppel.errors import InputError
from serving.engine.personas import PersonaList, load_personas
from tests.serving.conftest import PERSONAS


def test_names_resolve_whatever_their_case_and_the_owner_is_the_default(persona_gguf: Path) -> None:
    personas = load_personas(persona_gguf, None, None)
    assert personas.names == ["Olga", "Anna", "Bob Smith"]
    assert personas.owner.name == "Olga"
    assert personas.resolve("bob smith") == "Bob Smith"
    assert personas.partner_for("Olga") == "Anna"


def test_an_unknown_name_lists_the_valid_ones_closest_first() -> None:
    personas = PersonaList.from_records(PERSONAS, "model.gguf")
    with pytest.raises(InputError) as caught:
        personas.resolve("Ana")
    message = str(caught.value)
    assert message.startswith("unknown persona 'Ana' in model.gguf; valid: Anna (80 messages), ")
    assert "Olga (120 messages)" in message and "Bob Smith (20 messages)" in message


def test_a_gguf_without_doppel_metadata_needs_a_dataset(smollm2_gguf: Path) -> None:
    with pytest.raises(InputError, match=r"has no doppel metadata.*--dataset DIR"):
        load_personas(smollm2_gguf, None, None)
    manifest = {"speakers": PERSONAS}
    assert load_personas(smollm2_gguf, manifest, Path("dataset")).owner.name == "Olga"
