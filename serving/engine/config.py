"""The engine's settings, shared by ``doppel chat``, ``serve`` and ``eval``: one schema, flags built from it.

    doppel chat MODEL.gguf [--persona NAME] [--as NAME] [--dataset DIR] [--engine-url URL] [--temperature 0.7]

The sampling defaults suit small chat models (SmolLM2-class): a temperature of 0.8 with top-p 0.95 and min-p
0.05 keeps replies varied without drifting; a repeat penalty of 1.1 over the last 256 tokens stops the loops
small models fall into; 160 tokens is a long burst of chat messages, and a hard stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from doppel.settings import Cli, StageSettings
from serving.engine.types import Sampling

Memory = Literal["auto", "on", "off"]


class EngineConfig(StageSettings):
    """Which model, which persona, and how to sample."""

    model: Annotated[Path | None, Cli(positional="?", metavar="MODEL.gguf")] = Field(
        None, description="a GGUF from `doppel export` (merged or adapter), or any ChatML GGUF with --dataset"
    )
    engine_url: Annotated[str | None, Cli(metavar="URL")] = Field(
        None, description="an OpenAI-compatible completions server (llama-server, vLLM, Ollama) instead of MODEL"
    )
    dataset: Annotated[Path | None, Cli(metavar="DIR")] = Field(
        None, description="a prepared dataset: its personas, and its past exchanges as in-context examples"
    )
    persona: Annotated[str | None, Cli(metavar="NAME", default_help="the owner")] = Field(
        None, description="whom the model plays"
    )
    partner: Annotated[str | None, Cli(flag="--as", metavar="NAME", default_help="who the persona talks to most")] = (
        Field(None, description="the name you play: the speaker header of your messages")
    )
    memory: Memory = Field(
        "auto",
        description="put past exchanges of the persona from --dataset before the conversation; "
        "auto: only for a model without doppel fine-tuning",
    )
    memory_examples: int = Field(3, ge=0, le=20, description="how many past exchanges memory adds")
    context_size: int = Field(
        1024, ge=256, description="tokens of one chat's prompt and reply together (prepare's training windows are 1024)"
    )
    chats: int = Field(4, ge=1, le=64, description="chats whose KV cache is kept (each costs one context's cache)")
    threads: int | None = Field(None, ge=1, description="CPU threads (default: the usable cores)")
    temperature: float = Field(0.8, ge=0, description="0: greedy and deterministic")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling")
    min_p: float = Field(0.05, ge=0, lt=1, description="drop tokens below this share of the likeliest one")
    repeat_penalty: float = Field(1.1, gt=0, description="1.0: off")
    repeat_last_n: int = Field(256, ge=0, description="tokens the repeat penalty looks back over")
    max_tokens: int = Field(160, ge=1, description="a reply's hard limit")
    max_messages: int = Field(6, ge=1, description="messages of one reply, at most")
    seed: int = Field(0, description="sampling seed")

    @model_validator(mode="after")
    def _reply_fits(self) -> EngineConfig:
        if self.max_tokens >= self.context_size // 2:
            raise ValueError(
                f"--max-tokens {self.max_tokens} leaves no room for the conversation in --context-size "
                f"{self.context_size}; keep it under half"
            )
        return self

    @property
    def sampling(self) -> Sampling:
        return Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            repeat_last_n=self.repeat_last_n,
            max_tokens=self.max_tokens,
            seed=self.seed,
        )
