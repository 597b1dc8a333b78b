"""Who a model can speak as: the personas of a GGUF's ``doppel.*`` metadata, or of a prepared dataset's manifest.

personas = PersonaList.from_gguf(Path("model.gguf"))       # or PersonaList.from_manifest(manifest)
personas.resolve("john")    # "John"; an unknown name is an InputError listing the valid ones, closest first
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppel.errors import InputError


@dataclass(frozen=True)
class Persona:
    """A speaker the model can play, with how much of them it has seen."""

    name: str
    messages: int
    is_owner: bool


@dataclass(frozen=True)
class PersonaList:
    """The personas, most messages first; the owner is the default one."""

    personas: tuple[Persona, ...]
    source: str  # where they came from, for error messages

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], source: str) -> PersonaList:
        personas = [
            Persona(str(record["name"]), int(record.get("messages", 0)), bool(record.get("is_owner", False)))
            for record in records
            if str(record.get("name", "")).strip()
        ]
        if not personas:
            raise InputError(f"{source}: names no personas")
        personas.sort(key=lambda persona: (-persona.messages, persona.name))
        return cls(tuple(personas), source)

    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping[str, Any], source: str) -> PersonaList:
        """From :func:`doppel.formats.gguf_metadata.read_doppel_metadata`'s result."""
        return cls.from_records(metadata.get("personas") or [], source)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], source: str) -> PersonaList:
        """From a prepared dataset's ``manifest.json`` (its ``speakers``)."""
        return cls.from_records(manifest.get("speakers") or [], source)

    @property
    def owner(self) -> Persona:
        return next((persona for persona in self.personas if persona.is_owner), self.personas[0])

    @property
    def names(self) -> list[str]:
        return [persona.name for persona in self.personas]

    def resolve(self, name: str) -> str:
        """The persona called ``name`` (case does not matter); else an error naming the valid ones, closest first."""
        wanted = name.strip().casefold()
        for persona in self.personas:
            if persona.name.casefold() == wanted:
                return persona.name
        by_folded = {persona.name.casefold(): persona for persona in self.personas}
        close = difflib.get_close_matches(wanted, list(by_folded), n=len(by_folded), cutoff=0.0)
        listed = ", ".join(f"{by_folded[folded].name} ({by_folded[folded].messages} messages)" for folded in close)
        raise InputError(f"unknown persona {name!r} in {self.source}; valid: {listed}")

    def partner_for(self, persona: str) -> str:
        """The default name for the other side: who ``persona`` talks to most (the most frequent other speaker)."""
        return next((other.name for other in self.personas if other.name != persona), "You")


def load_personas(model: Path | None, manifest: Mapping[str, Any] | None, dataset: Path | None) -> PersonaList:
    """The personas of a doppel GGUF's metadata, else of the dataset's manifest; neither is a one-line error."""
    if model is not None:
        from doppel.formats.gguf_metadata import read_doppel_metadata

        metadata = read_doppel_metadata(model)
        if metadata.get("personas"):
            return PersonaList.from_gguf_metadata(metadata, str(model))
    if manifest is not None:
        return PersonaList.from_manifest(manifest, str(dataset))
    if model is None:
        raise InputError("with --engine-url, give --dataset DIR (or the MODEL.gguf the server runs) for the personas")
    raise InputError(
        f"{model}: has no doppel metadata (not exported by `doppel export`), so it names no personas; "
        "give --dataset DIR to play the people of a prepared dataset"
    )
