# kgrag: `make demo` runs the main job on the embedded default; `make test` runs the tests.
# Both set everything up on a fresh machine and are quick when it is already set up.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    := data
MODEL   := $(DATA)/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf

export KGRAG_DATA_DIR ?= $(CURDIR)/$(DATA)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/$(DATA)/prefect
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-fast lint clean-data help

help:
	@echo "make demo   set up, start the embedded services, run the main job"
	@echo "make test   set up and run the whole test suite (what CI runs)"
	@echo "make lint   ruff + mypy"

# torch first and pinned: the CPU build lies on this machine's disk; anything looser
# would pull a multi-GB CUDA build. llama-cpp-python compiles once (~4 min); pip caches it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(MODEL): | $(STAMP)
	$(BIN)/python -m core.model_files --variant 0.5b

setup: $(STAMP) $(MODEL)

SAMPLES := ingest/samples

demo: setup
	$(BIN)/kgrag services start
	$(BIN)/kgrag ingest $(SAMPLES)
	$(BIN)/kgrag graph stats
	$(BIN)/kgrag cypher "MATCH (s:Entity)-[r:RELATES]->(o:Entity) RETURN s.name AS subject, r.predicate AS predicate, o.name AS object, r.judge_score AS support ORDER BY support DESC LIMIT 15"
	$(BIN)/kgrag doctor

test: setup
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not services and not llm"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean-data:
	-$(BIN)/kgrag services stop
	rm -rf $(DATA)
