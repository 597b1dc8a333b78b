"""doppel's GGUF keys: what export writes reads back unchanged (through llama.cpp's quantizer too), every file
says what it is, and llama.cpp ends generation at ``<|im_end|>``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from doppel.chatml import IM_END
from doppel.formats.gguf_metadata import (
    read_doppel_metadata,
    read_fields,
    stop_token_ids,
    unflatten,
    write_with_metadata,
)
from tests.helpers.gguf import Exported
from training.export.run import build_metadata, load_run


def im_end_id(trained: tuple[Any, Any]) -> int:
    return int(trained[1].convert_tokens_to_ids(IM_END))


def test_merged_model_carries_the_run_metadata(merged_export: Exported, lora_run: Path, dataset_dir: Path) -> None:
    metadata = read_doppel_metadata(merged_export.out)
    run = load_run(lora_run)
    assert metadata == build_metadata(run, "model", converter=metadata["converter"])
    manifest = json.loads((dataset_dir / "manifest.json").read_text(encoding="utf-8"))
    assert metadata["role"] == "model"
    assert metadata["owner"] == {"id": "user1", "name": "Me"}
    assert metadata["personas"] == [
        {key: speaker[key] for key in ("id", "name", "messages", "turns", "is_owner")}
        for speaker in manifest["speakers"]
    ]
    assert metadata["message_format"] == {"template": "chatml", "prefix": ">>> ", "roles": "speaker names"}
    assert metadata["loss_scope"] == "all"
    assert metadata["method"] == "lora"
    assert metadata["dataset"] == {"sha256": manifest["source"]["sha256"]}
    run_json = json.loads((lora_run / "run.json").read_text(encoding="utf-8"))
    assert metadata["base"] == {"source": run_json["base"]["source"], "sha256": run_json["base"]["sha256"]}
    assert metadata["run"] == {"step": run_json["step"]}
    assert metadata["converter"].startswith("llama-cpp-python ")


def test_adapter_and_its_quantized_base_say_what_they_are(adapter_export: Exported, lora_run: Path) -> None:
    assert adapter_export.base is not None
    adapter = read_doppel_metadata(adapter_export.out)
    base = read_doppel_metadata(adapter_export.base)  # written before quantizing: llama.cpp copied the keys
    assert adapter["role"] == "adapter"
    assert adapter["adapter"] == {"base_file": adapter_export.base.name}
    assert (adapter_export.out.parent / adapter["adapter"]["base_file"]).is_file()
    assert adapter["owner"]["name"] == "Me" and len(adapter["personas"]) == 3
    assert base == {key: adapter[key] for key in ("format", "role", "version", "converter", "base")} | {"role": "base"}
    file_type = read_fields(adapter_export.base, lambda key: key == "general.file_type")["general.file_type"]
    assert file_type == gguf.LlamaFileType.MOSTLY_Q8_0
    assert read_fields(adapter_export.out, lambda key: key == "general.type") == {"general.type": "adapter"}


def test_llama_cpp_stops_at_im_end(merged_export: Exported, adapter_export: Exported, trained: tuple[Any, Any]) -> None:
    import llama_cpp

    im_end = im_end_id(trained)
    assert adapter_export.base is not None
    for path in (merged_export.out, adapter_export.base):
        assert stop_token_ids(path) == {"eos": im_end, "eot": im_end}
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        try:
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            assert llm.token_eos() == im_end
            assert llama_cpp.llama_vocab_eot(vocab) == im_end
            assert llama_cpp.llama_vocab_is_eog(vocab, im_end)
        finally:
            llm.close()


def test_metadata_round_trip_on_any_gguf(adapter_export: Exported, tmp_path: Path) -> None:
    """Every kind of value, unicode names and an empty persona list survive; tensors are copied bit for bit."""
    metadata = {
        "format": "doppel-gguf/1",
        "role": "model",
        "owner": {"id": "user42", "name": "Анна 🌸"},
        "personas": [
            {"id": "user42", "name": "Анна 🌸", "messages": 12_345_678_901, "turns": 3, "is_owner": True},
            {"id": "user7", "name": "Bob", "messages": 0, "turns": 0, "is_owner": False},
        ],
        "run": {"step": 0, "best_val_loss": 1.25, "offset": -3},
        "tags": ["a", "b"],
    }
    first = tmp_path / "first.gguf"
    write_with_metadata(adapter_export.out, first, metadata, stop_token_id=5)
    assert read_doppel_metadata(first) == metadata
    assert stop_token_ids(first) == {"eos": 5, "eot": 5}

    # Writing again replaces doppel's keys instead of piling them up, and keeps everything else.
    second = tmp_path / "second.gguf"
    write_with_metadata(first, second, {"role": "base", "personas": []})
    assert read_doppel_metadata(second) == {"role": "base"}
    original, copied = gguf.GGUFReader(adapter_export.out), gguf.GGUFReader(second)
    others = {name for name in original.fields if not name.startswith(("doppel.", "GGUF.", "tokenizer.ggml.eo"))}
    assert others <= set(copied.fields)
    for name in others:
        assert _value(copied.fields[name]) == _value(original.fields[name]), name
    assert [tensor.name for tensor in copied.tensors] == [tensor.name for tensor in original.tensors]
    for a, b in zip(original.tensors, copied.tensors, strict=True):
        assert a.tensor_type == b.tensor_type
        assert np.array_equal(np.asarray(a.data), np.asarray(b.data)), a.name


def _value(field: Any) -> Any:
    contents = field.contents()
    return contents.tolist() if isinstance(contents, np.ndarray) else contents


def test_the_fast_key_reader_agrees_with_gguf_py(merged_export: Exported) -> None:
    """read_fields skips a vocabulary in milliseconds; it must decode every key exactly as gguf-py does."""
    expected = {name: _value(field) for name, field in gguf.GGUFReader(merged_export.out).fields.items()}
    expected = {name: value for name, value in expected.items() if not name.startswith("GGUF.")}
    assert read_fields(merged_export.out, lambda key: True) == expected
    assert read_fields(merged_export.out, lambda key: key == "general.architecture") == {
        "general.architecture": "llama"
    }


def test_a_file_without_doppel_keys_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "plain.gguf"
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_tensor("x", np.zeros((2, 3), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_doppel_metadata(path) == {}
    assert unflatten({}) == {}


def test_values_gguf_cannot_hold_are_refused(adapter_export: Exported, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot store a dict"):
        write_with_metadata(adapter_export.out, tmp_path / "x.gguf", {"tags": [{"nested": 1}]})
    with pytest.raises(ValueError, match="one type of value"):
        write_with_metadata(adapter_export.out, tmp_path / "y.gguf", {"tags": ["a", 1]})
    with pytest.raises(ValueError, match="dots separate levels"):
        write_with_metadata(adapter_export.out, tmp_path / "z.gguf", {"a.b": "c"})
    assert not list(tmp_path.iterdir())  # refused before a file was opened
