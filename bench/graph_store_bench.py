"""Graph store benchmark: write throughput and entity lookup at 100k entities, FalkorDB vs Neo4j.

Each backend gets the same seeded synthetic graph through the GraphStore API (batched
`UNWIND $rows ... MERGE`, each store's own batch size unless `--batch-size` says): documents
of several chunks, entities with two- or three-word invented names (a third with an alias),
mentions linking them to chunks, and RELATES facts between random entities with chunk
provenance. It measures, on the wall clock of each upsert call:

- writes: entities/s, mentions/s, relations/s;
- lookup: `find_entities(q, limit=10)` latency, p50 and p95 over `--queries` queries of each
  kind: a whole name, one word of a name, a word's first 4 letters, 4 letters from inside a
  word, and a miss. On Neo4j it goes through the `entity_search` full-text index; the
  "neo4j scan" rows run the shared label-scan query (what Neo4j ran before, and what
  FalkorDB runs) on the same Neo4j database, for comparison;
- delete: `delete_documents` of one document (its chunks, facts and orphaned entities),
  after one other delete has compiled the statements' plans.

FalkorDB is kgrag's embedded server; Neo4j is Neo4j Community 5 embedded in a JVM
(infra/neo4j/server.sh, G1 GC and full JIT for the long run, heap `--neo4j-heap`), or the
server KGRAG_NEO4J_URI names (then its database is cleared first).

    python bench/graph_store_bench.py                        # both backends, 100k entities
    python bench/graph_store_bench.py --entities 10000 --backends neo4j

Prints a table; writes bench/out/graph_store.json and bench/out/graph_store.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.models import Chunk, Document, Entity, Mention, Relation
from core.settings import load_settings
from kg.store import EmbeddedFalkorServer, FalkorGraphStore, Neo4jGraphStore
from kg.store.base import CypherGraphStore

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "out"
NEO4J_SCRIPT = REPO / "infra" / "neo4j" / "server.sh"
QUERY_KINDS = ("name", "word", "prefix", "inside", "miss")
PREDICATES = ("founded", "located in", "member of", "born in", "works for", "part of")


# --------------------------------------------------------------------------- data


@dataclass
class Graph:
    docs: list[Document]
    chunks: list[Chunk]
    entities: list[Entity]
    mentions: list[Mention]
    relations: list[Relation]


def invented_word(rng: random.Random) -> str:
    onsets = ["b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kl", "l", "m",
              "n", "p", "pr", "r", "s", "st", "t", "tr", "v", "w", "z"]
    vowels = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "ia"]
    codas = ["", "", "n", "r", "s", "l", "th", "x", "m"]
    word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 3)))
    return (word + rng.choice(codas)).capitalize()


def make_graph(n_entities: int, n_docs: int, chunks_per_doc: int, mentions_per_entity: float,
               relations_per_entity: float, seed: int = 0) -> Graph:
    rng = random.Random(seed)
    vocabulary = sorted({invented_word(rng) for _ in range(max(2000, n_entities // 5))})
    docs, chunks = [], []
    for d in range(n_docs):
        doc = Document(id=f"doc{d}", source=f"doc{d}.txt", title=f"Document {d}",
                       sha256=f"sha{d}")
        docs.append(doc)
        for p in range(chunks_per_doc):
            text = f"Chunk {p} of document {d}."
            chunks.append(Chunk(id=f"c{d}_{p}", doc_id=doc.id, text=text, start=p * 100,
                                end=p * 100 + len(text), position=p))
    names: set[str] = set()
    entities: list[Entity] = []
    while len(entities) < n_entities:
        name = " ".join(rng.choice(vocabulary) for _ in range(rng.choice((2, 2, 3))))
        if name in names:
            continue
        names.add(name)
        aliases = (name.split()[-1] + " " + rng.choice(vocabulary),) if rng.random() < 0.3 else ()
        entities.append(Entity(id=f"e{len(entities)}", name=name, type="Thing",
                               aliases=aliases))
    mentions = {(rng.randrange(n_entities), rng.randrange(len(chunks)))
                for _ in range(int(n_entities * mentions_per_entity))}
    relations = []
    for _ in range(int(n_entities * relations_per_entity)):
        chunk = rng.choice(chunks)
        relations.append(Relation(
            subject_id=f"e{rng.randrange(n_entities)}", predicate=rng.choice(PREDICATES),
            object_id=f"e{rng.randrange(n_entities)}", chunk_id=chunk.id, doc_id=chunk.doc_id,
            confidence=round(rng.random(), 3)))
    return Graph(docs, chunks, entities,
                 [Mention(entity_id=f"e{e}", chunk_id=chunks[c].id) for e, c in sorted(mentions)],
                 relations)


def lookup_queries(graph: Graph, per_kind: int, seed: int = 1) -> dict[str, list[str]]:
    rng = random.Random(seed)
    picks = [rng.choice(graph.entities).name for _ in range(per_kind)]
    words = [rng.choice(name.split()) for name in picks]
    return {
        "name": picks,
        "word": words,
        "prefix": [w[:4] for w in words],
        "inside": [w[1:5] if len(w) > 5 else w[1:] for w in words],
        "miss": [f"qqz{rng.randrange(10**6)}" for _ in range(per_kind)],
    }


# --------------------------------------------------------------------------- backends


@contextmanager
def falkor_store(work: Path) -> Iterator[CypherGraphStore]:
    os.environ["KGRAG_CONFIG"] = str(work / "none.toml")
    for key in ("KGRAG_FALKOR_PORT", "KGRAG_FALKOR_EXTERNAL", "KGRAG_FALKOR_HOST"):
        os.environ.pop(key, None)
    server = EmbeddedFalkorServer(load_settings(data_dir=work / "falkor"))
    status = server.start()
    assert status.port is not None
    store = FalkorGraphStore(status.host, status.port, graph_name="bench")
    try:
        store.clear()
        store.ensure_schema()
        yield store
    finally:
        store.close()
        server.stop()


@contextmanager
def neo4j_store(work: Path, heap: str) -> Iterator[CypherGraphStore]:
    uri = os.environ.get("KGRAG_NEO4J_URI", "")
    home = work / "neo4j"
    if uri:
        env = {"KGRAG_NEO4J_URI": uri,
               "KGRAG_NEO4J_USER": os.environ.get("KGRAG_NEO4J_USER", "neo4j"),
               "KGRAG_NEO4J_PASSWORD": os.environ.get("KGRAG_NEO4J_PASSWORD", "")}
    else:
        run_env = {**os.environ, "KGRAG_NEO4J_HEAP": heap,
                   "KGRAG_NEO4J_JAVA_OPTS": "-XX:+UseG1GC"}
        out = subprocess.run(["bash", str(NEO4J_SCRIPT), "start", str(home)], env=run_env,
                             capture_output=True, text=True, check=True).stdout
        env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    store = Neo4jGraphStore(env["KGRAG_NEO4J_URI"], env["KGRAG_NEO4J_USER"],
                            env["KGRAG_NEO4J_PASSWORD"], timeout_s=600.0)
    try:
        store.clear()
        store.ensure_schema()
        yield store
    finally:
        store.close()
        if not uri:
            subprocess.run(["bash", str(NEO4J_SCRIPT), "stop", str(home)], check=True)


# --------------------------------------------------------------------------- measuring


@dataclass
class Result:
    backend: str
    entities: int
    batch_size: int
    writes_per_s: dict[str, float] = field(default_factory=dict)
    lookup_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    delete_one_document_s: float = 0.0


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def write_graph(store: CypherGraphStore, graph: Graph, result: Result) -> None:
    steps: list[tuple[str, Sequence[object], Callable[[], None]]] = [
        ("documents", graph.docs, lambda: store.upsert_documents(graph.docs)),
        ("chunks", graph.chunks, lambda: store.upsert_chunks(graph.chunks)),
        ("entities", graph.entities, lambda: store.upsert_entities(graph.entities)),
        ("mentions", graph.mentions, lambda: store.upsert_mentions(graph.mentions)),
        ("relations", graph.relations, lambda: store.upsert_relations(graph.relations)),
    ]
    for name, rows, write in steps:
        seconds = timed(write)
        result.writes_per_s[name] = round(len(rows) / seconds, 1)
        print(f"  {result.backend}: {len(rows):>8} {name:<10} {seconds:7.1f} s "
              f"({len(rows) / seconds:,.0f}/s)", flush=True)


def lookup_latency(find: Callable[[str], object], queries: dict[str, list[str]]
                   ) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind in QUERY_KINDS:
        find(queries[kind][0])  # warm the plan cache
        samples = sorted(timed(partial(find, q)) * 1000 for q in queries[kind])
        out[kind] = {"p50": round(statistics.median(samples), 2),
                     "p95": round(samples[int(0.95 * (len(samples) - 1))], 2)}
    return out


def bench_backend(name: str, store: CypherGraphStore, graph: Graph,
                  queries: dict[str, list[str]], args: argparse.Namespace) -> list[Result]:
    store.batch_size = args.batch_size or store.batch_size
    result = Result(name, len(graph.entities), store.batch_size)
    write_graph(store, graph, result)
    assert store.stats().nodes["Entity"] == len(graph.entities)
    result.lookup_ms = lookup_latency(lambda q: store.find_entities(q, limit=10), queries)
    results = [result]
    if isinstance(store, Neo4jGraphStore) and not args.no_scan:
        scan = Result("neo4j scan", len(graph.entities), store.batch_size)
        scan.lookup_ms = lookup_latency(
            lambda q: CypherGraphStore.find_entities(store, q, limit=10),
            {k: v[: max(5, len(v) // 5)] for k, v in queries.items()})
        results.append(scan)
    store.delete_documents(["doc1"])  # plans compiled: a running kgrag has them cached
    result.delete_one_document_s = round(timed(lambda: store.delete_documents(["doc0"])), 3)
    return results


# --------------------------------------------------------------------------- report


def print_table(results: list[Result]) -> None:
    print()
    print(f"{'backend':<12} {'batch':>6} {'entities/s':>11} {'mentions/s':>11} "
          f"{'relations/s':>12} "
          + " ".join(f"{k + ' p50/p95 ms':>20}" for k in QUERY_KINDS) + f" {'delete s':>9}")
    for r in results:
        w = r.writes_per_s
        writes = (f"{w.get('entities', 0):>11,.0f} {w.get('mentions', 0):>11,.0f} "
                  f"{w.get('relations', 0):>12,.0f}") if w else f"{'':>11} {'':>11} {'':>12}"
        lookups = " ".join(f"{r.lookup_ms[k]['p50']:>9.1f} /{r.lookup_ms[k]['p95']:>8.1f}"
                           for k in QUERY_KINDS)
        delete = f"{r.delete_one_document_s:>9.2f}" if w else f"{'':>9}"
        print(f"{r.backend:<12} {r.batch_size:>6} {writes} {lookups} {delete}")


def write_outputs(results: list[Result], args: argparse.Namespace, graph: Graph) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 1)},
        "graph": {"documents": len(graph.docs), "chunks": len(graph.chunks),
                  "entities": len(graph.entities), "mentions": len(graph.mentions),
                  "relations": len(graph.relations)},
        "args": vars(args),
        "results": [asdict(r) for r in results],
    }
    (OUT / "graph_store.json").write_text(json.dumps(report, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_w, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    writers = [r for r in results if r.writes_per_s]
    kinds = ["entities", "mentions", "relations"]
    width = 0.8 / max(1, len(writers))
    for i, r in enumerate(writers):
        ax_w.bar([k + i * width for k in range(len(kinds))],
                 [r.writes_per_s[k] for k in kinds], width, label=r.backend)
    ax_w.set_xticks([k + width * (len(writers) - 1) / 2 for k in range(len(kinds))], kinds)
    ax_w.set_ylabel("rows written / s")
    ax_w.set_title("writes (" + ", ".join(f"{r.backend}: {r.batch_size} rows a statement"
                                          for r in writers) + ")")
    ax_w.legend()
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        ax_l.bar([k + i * width for k in range(len(QUERY_KINDS))],
                 [r.lookup_ms[k]["p50"] for k in QUERY_KINDS], width, label=r.backend)
    ax_l.set_xticks([k + width * (len(results) - 1) / 2 for k in range(len(QUERY_KINDS))],
                    QUERY_KINDS)
    ax_l.set_yscale("log")
    ax_l.set_ylabel("find_entities p50 (ms, log)")
    ax_l.set_title(f"entity lookup at {len(graph.entities):,} entities")
    ax_l.legend()
    fig.tight_layout()
    fig.savefig(OUT / "graph_store.png", dpi=110)
    print(f"\nwrote {OUT / 'graph_store.json'} and {OUT / 'graph_store.png'}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="falkor,neo4j")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--chunks-per-document", type=int, default=10)
    parser.add_argument("--mentions-per-entity", type=float, default=1.5)
    parser.add_argument("--relations-per-entity", type=float, default=1.5)
    parser.add_argument("--batch-size", type=int, default=0,
                        help="rows per write statement (default: each store's own)")
    parser.add_argument("--queries", type=int, default=50, help="lookups of each kind")
    parser.add_argument("--no-scan", action="store_true",
                        help="skip the Neo4j label-scan comparison")
    parser.add_argument("--neo4j-heap", default="2g")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    graph = make_graph(args.entities, args.documents, args.chunks_per_document,
                       args.mentions_per_entity, args.relations_per_entity)
    queries = lookup_queries(graph, args.queries)
    print(f"graph: {len(graph.docs)} documents, {len(graph.chunks)} chunks, "
          f"{len(graph.entities)} entities, {len(graph.mentions)} mentions, "
          f"{len(graph.relations)} relations", flush=True)
    results: list[Result] = []
    work = Path(tempfile.mkdtemp(prefix="kgrag-graph-bench-"))
    try:
        for backend in args.backends.split(","):
            opened = (falkor_store(work) if backend == "falkor"
                      else neo4j_store(work, args.neo4j_heap))
            with opened as store:
                results += bench_backend(backend, store, graph, queries, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    write_outputs(results, args, graph)


if __name__ == "__main__":
    main()
