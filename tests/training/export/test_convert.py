"""llama.cpp's converters come from the sdist of exactly the installed llama-cpp-python, extracted once and only
what is needed, and know which architectures they convert."""

from __future__ import annotations

import importlib.metadata
import json
import tarfile
from pathlib import Path

import pytest

from doppel.errors import InputError
from training.export.convert import SDIST_ENV, ensure_sources, extract_sources, extracted_path, installed_version


def test_sources_match_the_installed_llama_cpp_python(smollm2_env: Path) -> None:
    """What ``ensure_sources`` fetched and extracted (once per machine and version of convert.py, see
    ``conftest.machine_converters``) is all the export needs, and it finds it in the data directory's cache."""
    sources = ensure_sources()
    assert sources.version == importlib.metadata.version("llama-cpp-python").split("+")[0] == installed_version()
    assert sources.root == smollm2_env / "cache" / f"llama-cpp-{sources.version}"
    marker = json.loads((sources.root / "doppel-sources.json").read_text(encoding="utf-8"))
    assert marker["version"] == sources.version
    assert marker["sdist"] == f"llama_cpp_python-{sources.version}.tar.gz"
    top = sorted(path.name for path in sources.root.iterdir())
    assert top == [
        "LICENSE",
        "conversion",
        "convert_hf_to_gguf.py",
        "convert_lora_to_gguf.py",
        "doppel-sources.json",
        "gguf-py",
    ]
    files = [path for path in sources.root.rglob("*") if path.is_file()]
    assert all(path.suffix in {".py", ".json", ".typed", ""} for path in files), "only the Python converters"
    assert sum(path.stat().st_size for path in files) < 5_000_000
    assert not list(sources.root.parent.glob(".tmp-*"))
    supported = sources.supported_architectures()
    assert {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"} <= supported
    assert ensure_sources() == sources  # a cache hit


def test_only_the_converter_files_are_taken_from_the_sdist() -> None:
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    assert str(extracted_path(prefix + "convert_hf_to_gguf.py")) == "convert_hf_to_gguf.py"
    assert str(extracted_path(prefix + "conversion/llama.py")) == "conversion/llama.py"
    assert str(extracted_path(prefix + "gguf-py/gguf/gguf_writer.py")) == "gguf-py/gguf/gguf_writer.py"
    assert extracted_path(prefix + "gguf-py/tests/test_quants.py") is None
    assert extracted_path(prefix + "src/llama.cpp") is None
    assert extracted_path(prefix + "conversion/../../../etc/passwd") is None
    assert extracted_path("llama_cpp_python-0.3.36/llama_cpp/llama.py") is None


def test_an_sdist_without_converters_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    readme = tmp_path / "README.md"
    readme.write_text("not llama.cpp", encoding="utf-8")
    with tarfile.open(fake, "w:gz") as archive:
        archive.add(readme, arcname="llama_cpp_python-9.9.9/README.md")
    with pytest.raises(InputError, match=r"not a llama-cpp-python sdist with llama\.cpp's converters"):
        extract_sources(fake, tmp_path / "llama-cpp-9.9.9", "9.9.9")
    assert not (tmp_path / "llama-cpp-9.9.9").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_an_offline_sdist_must_exist_and_be_the_right_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOPPEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(SDIST_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(InputError, match="no such file"):
        ensure_sources("1.2.3")
    other = tmp_path / "llama_cpp_python-0.0.1.tar.gz"
    other.write_bytes(b"")
    monkeypatch.setenv(SDIST_ENV, str(other))
    with pytest.raises(InputError, match=r"expected the sdist of llama-cpp-python 1\.2\.3"):
        ensure_sources("1.2.3")
