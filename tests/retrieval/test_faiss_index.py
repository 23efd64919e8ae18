"""FaissVectorIndex on real faiss with small random vectors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from core.errors import ConfigError
from core.protocols import VectorIndex
from core.settings import Settings
from retrieval.index import FaissVectorIndex, atomic_files, open_index

DIM = 32
MODEL = "test-model"


def unit(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(len(centres), size=n)]
    x = x + 0.5 * rng.standard_normal(x.shape).astype(np.float32) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def ids(n: int, prefix: str = "v") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ base.T), axis=1)[:, :k]


@pytest.fixture
def index(tmp_path: Path) -> FaissVectorIndex:
    return FaissVectorIndex(tmp_path / "chunks", DIM, MODEL, device="cpu")


def test_it_is_a_vector_index(index: FaissVectorIndex) -> None:
    assert isinstance(index, VectorIndex)


def test_exact_search_returns_the_nearest_vectors_by_cosine(index: FaissVectorIndex) -> None:
    base = unit(300, seed=1)
    index.add(ids(300), base)
    queries = unit(20, seed=2)

    results = index.search(queries, k=5)

    expected = exact_top(base, queries, 5)
    assert [[hit.id for hit in hits] for hits in results] == [
        [f"v{i}" for i in row] for row in expected
    ]
    assert results[0][0].score == pytest.approx(float(queries[0] @ base[expected[0, 0]]), abs=1e-5)


def test_vectors_are_normalised_so_scale_does_not_change_the_answer(
    index: FaissVectorIndex,
) -> None:
    base = unit(50, seed=3)
    index.add(ids(50), base * 7.0)
    hit = index.search(base[11] * 0.01, k=1)[0][0]
    assert hit.id == "v11"
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_re_adding_an_id_replaces_its_vector(index: FaissVectorIndex) -> None:
    base = unit(3, seed=4)
    index.add(["a", "b"], base[:2])

    index.add(["a", "a"], np.stack([base[1], base[2]]))  # repeated in one batch: last wins

    assert len(index) == 2
    top = index.search(base[2], k=2)[0]
    assert top[0].id == "a" and top[0].score == pytest.approx(1.0, abs=1e-5)
    assert [hit.id for hit in index.search(base[0], k=5)[0]].count("a") == 1


def test_remove_drops_vectors_from_results_and_len(index: FaissVectorIndex) -> None:
    base = unit(100, seed=5)
    index.add(ids(100), base)

    assert index.remove(["v3", "v4", "v3", "missing"]) == 2

    assert len(index) == 98
    found = {hit.id for hit in index.search(base[3:5], k=100)[0]}
    assert "v3" not in found and "v4" not in found and len(found) == 98
    assert index.remove(["v3"]) == 0


def test_search_on_empty_index_and_k_past_the_count(index: FaissVectorIndex) -> None:
    assert index.search(unit(2, seed=6), k=3) == [[], []]
    index.add(["only"], unit(1, seed=7))
    assert [hit.id for hit in index.search(unit(1, seed=8), k=10)[0]] == ["only"]


def test_wrong_dimension_is_refused(index: FaissVectorIndex) -> None:
    with pytest.raises(ValueError, match="dimension 32"):
        index.add(["x"], unit(1, seed=9, dim=16))


def test_save_and_load_round_trip_keeps_ids_and_results(
    index: FaissVectorIndex, tmp_path: Path
) -> None:
    base = unit(200, seed=10)
    index.add(ids(200), base)
    index.remove(["v0"])
    queries = unit(10, seed=11)
    before = index.search(queries, k=7)
    index.save()

    loaded = FaissVectorIndex.load(tmp_path / "chunks", DIM, MODEL, device="cpu")

    assert len(loaded) == 199 and "v5" in loaded and "v0" not in loaded
    assert loaded.search(queries, k=7) == before
    # new ids after a load get fresh labels: nothing stored earlier is overwritten
    loaded.add(["new"], unit(1, seed=12))
    assert loaded.search(base[5], k=1)[0][0].id == "v5"
    assert len(loaded) == 200


def test_save_writes_meta_json(index: FaissVectorIndex, tmp_path: Path) -> None:
    index.add(ids(5), unit(5, seed=13))
    index.save()
    index.save()  # a second save replaces the first generation's files

    meta = json.loads((tmp_path / "chunks" / "meta.json").read_text())
    assert meta["model"] == MODEL and meta["dimension"] == DIM and meta["count"] == 5
    assert meta["metric"] == "inner_product" and meta["kind"] == "flat"
    assert meta["faiss_version"] == faiss.__version__
    assert sorted(p.name for p in (tmp_path / "chunks").iterdir()) == [
        "ids-2.json",
        "index-2.faiss",
        "meta.json",
    ]


@pytest.mark.parametrize(("dimension", "model"), [(16, MODEL), (DIM, "other-model")])
def test_loading_with_another_embedder_is_a_config_error(
    index: FaissVectorIndex, tmp_path: Path, dimension: int, model: str
) -> None:
    index.add(ids(5), unit(5, seed=14))
    index.save()

    with pytest.raises(ConfigError) as err:
        FaissVectorIndex.load(tmp_path / "chunks", dimension, model, device="cpu")
    assert "kgrag reindex" in err.value.hint


def test_crossing_the_threshold_switches_to_ivf_with_high_recall(tmp_path: Path) -> None:
    centres = unit(40, seed=15)
    base = clustered(5000, seed=16, centres=centres)
    index = FaissVectorIndex(tmp_path / "big", DIM, MODEL, approx_threshold=1000, device="cpu")

    index.add(ids(800), base[:800])
    assert index.kind == "flat"
    index.save()
    index = FaissVectorIndex.load(tmp_path / "big", DIM, MODEL, approx_threshold=1000, device="cpu")
    for start in range(800, 5000, 1400):  # crosses at 2200, then adds into the IVF index
        index.add(ids(5000)[start : start + 1400], base[start : start + 1400])

    assert index.kind == "ivf" and index.nprobe > 0 and len(index) == 5000
    queries = clustered(200, seed=17, centres=centres)
    expected = exact_top(base, queries, 10)
    results = index.search(queries, k=10)
    recall = np.mean(
        [
            len({hit.id for hit in hits} & {f"v{i}" for i in row}) / 10
            for hits, row in zip(results, expected, strict=True)
        ]
    )
    assert recall >= 0.95

    # removal, replacement and persistence keep working on the IVF index
    assert index.remove(["v1", "v2"]) == 2
    index.add(["v3"], base[4000])
    assert len(index) == 4998
    index.save()
    loaded = FaissVectorIndex.load(tmp_path / "big", DIM, MODEL, device="cpu")
    assert loaded.kind == "ivf" and loaded.nprobe == index.nprobe
    assert {hit.id for hit in loaded.search(base[4000], k=2)[0]} == {"v3", "v4000"}
    assert "v1" not in {hit.id for hit in loaded.search(base[1], k=20)[0]}


def test_an_ivf_index_that_grows_eightfold_is_retrained_with_more_lists(tmp_path: Path) -> None:
    base = clustered(6000, seed=20, centres=unit(40, seed=21))
    index = FaissVectorIndex(tmp_path / "grow", DIM, MODEL, approx_threshold=500, device="cpu")
    index.add(ids(600), base[:600])
    small_nlist = index.nlist

    index.add(ids(6000)[600:], base[600:])

    assert index.kind == "ivf" and index.nlist > small_nlist and len(index) == 6000
    found = [hits[0].id for hits in index.search(base[::500], k=1)]
    assert found == [f"v{i}" for i in range(0, 6000, 500)]


@pytest.mark.parametrize("crashing_file", ["index-", "ids-", "meta.json"])
def test_a_crash_during_save_keeps_the_previous_save_loadable(
    index: FaissVectorIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crashing_file: str
) -> None:
    base = unit(60, seed=18)
    index.add(ids(50), base[:50])
    index.save()
    expected = index.search(base[:5], k=3)
    index.add(ids(60)[50:], base[50:])
    index.remove(["v0"])

    real_replace = os.replace

    def crash_on_rename(src: str, dst: str) -> None:
        if Path(dst).name.startswith(crashing_file):
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", crash_on_rename)
    with pytest.raises(OSError, match="killed"):
        index.save()
    monkeypatch.undo()

    loaded = FaissVectorIndex.load(tmp_path / "chunks", DIM, MODEL, device="cpu")
    assert len(loaded) == 50 and "v0" in loaded
    assert loaded.search(base[:5], k=3) == expected
    assert not [p for p in (tmp_path / "chunks").iterdir() if ".tmp-" in p.name]
    index.save()  # the next save succeeds and cleans up the orphaned files
    assert len(FaissVectorIndex.load(tmp_path / "chunks", DIM, MODEL, device="cpu")) == 59


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="this machine has a GPU")
def test_gpu_device_without_a_gpu_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        FaissVectorIndex(tmp_path, DIM, MODEL, device="gpu")
    assert "faiss-gpu" in err.value.hint


def test_open_index_starts_empty_then_loads_what_was_saved(tmp_path: Path) -> None:
    settings = Settings.model_construct(data_dir=tmp_path, faiss_device="cpu")
    chunks = open_index(settings, "chunks", DIM, MODEL)
    assert len(chunks) == 0
    chunks.add(ids(3), unit(3, seed=19))
    chunks.save()

    reopened = open_index(settings, "chunks", DIM, MODEL)

    assert len(reopened) == 3
    assert (tmp_path / "indexes" / "chunks" / "meta.json").exists()
    with pytest.raises(ValueError):
        open_index(settings, "../escape", DIM, MODEL)
