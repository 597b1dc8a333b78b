"""Loading GGUF files into llama.cpp: weight repacking off where it crashes, on elsewhere."""

from __future__ import annotations

from pathlib import Path

import llama_cpp.llama_cpp as api

from doppel.llama_loader import cpu_has_amx, weight_repacking


def test_repacking_can_be_switched_off_while_a_model_loads_and_comes_back_after() -> None:
    assert api.llama_model_default_params().use_extra_bufts is True  # llama.cpp's default
    with weight_repacking(enabled=False):
        assert api.llama_model_default_params().use_extra_bufts is False
    assert api.llama_model_default_params().use_extra_bufts is True
    with weight_repacking(enabled=True):
        assert api.llama_model_default_params().use_extra_bufts is True


def test_amx_is_read_from_the_cpu_flags() -> None:
    with Path("/proc/cpuinfo").open(encoding="utf-8") as cpuinfo:
        flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    assert cpu_has_amx() == ("amx_tile" in flags or "amx_int8" in flags or "amx_bf16" in flags)
