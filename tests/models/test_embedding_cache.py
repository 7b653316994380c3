"""The shipped embeddings are the real model's, found only for the same model and text; misses run it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ipspace.sample_data import LENS_FAMILIES, SHIPPED_EMBEDDINGS, shipped_embedder
from models.matching.embedding_cache import CachedEmbedder, EmbeddingCache
from models.matching.embeddings import MODEL_ID, TextEmbedder
from node.partition import read_rows


@pytest.fixture(scope="module")
def titles() -> list[str]:
    _, rows = read_rows(LENS_FAMILIES)
    return [row["title"].strip() for row in rows[:: len(rows) // 12] if row["title"].strip()][:10]


def test_the_shipped_vectors_are_the_model_s_own_for_the_shipped_titles(titles: list[str]) -> None:
    cache = EmbeddingCache.load(SHIPPED_EMBEDDINGS)
    shipped = cache.lookup(MODEL_ID, titles)
    assert all(vector is not None for vector in shipped)
    np.testing.assert_allclose(np.stack(shipped), TextEmbedder().embed(titles), atol=2e-3)


def test_a_text_or_model_the_cache_does_not_hold_is_embedded_by_the_model(titles: list[str]) -> None:
    cache = EmbeddingCache.load(SHIPPED_EMBEDDINGS)
    assert cache.lookup("another-model@1", titles[:1]) == [None]
    embedder = shipped_embedder()
    assert isinstance(embedder, CachedEmbedder)
    need = "launch and recovery of small unmanned aircraft from a moving vehicle"  # not a shipped title
    vectors = embedder.embed([titles[0], need])
    assert embedder.misses == 1
    np.testing.assert_allclose(vectors[1], TextEmbedder().embed_one(need), atol=1e-6)


def test_a_cache_round_trips_through_its_file(tmp_path: Path) -> None:
    vectors = np.eye(3, 384, dtype=np.float32)
    EmbeddingCache.save(tmp_path / "cache.npz", "model@1", ["a", "b", "c"], vectors)
    loaded = EmbeddingCache.load(tmp_path / "cache.npz")
    assert len(loaded) == 3
    found = loaded.lookup("model@1", ["c", "z"])
    np.testing.assert_allclose(found[0], vectors[2])
    assert found[1] is None
