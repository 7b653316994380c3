"""Embeddings computed once and looked up by text, so that importing a known dataset does not run the model.

On two shared cores all-MiniLM-L6-v2 embeds 20 to 70 patent titles a second: the 5,884 shipped Lens titles
take minutes, longer than the whole demo may. `data/build_sample.py` therefore embeds the shipped texts once
with the real model and ships the vectors (`data/embeddings_minilm.npz`); an import looks each text up there
and runs the model only for the texts it lacks. A hit is the model's own output for exactly that text under
exactly that model id (the key is SHA-256 over both), rounded to float16 and normalised again (cosines move
by under 1e-3); a different model or text misses and is embedded afresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

KEY_BYTES = 16  # a truncated SHA-256 names a text: collisions among thousands of texts are out of reach


def text_key(model_id: str, text: str) -> bytes:
    return hashlib.sha256(model_id.encode() + b"\x00" + text.encode()).digest()[:KEY_BYTES]


class EmbeddingCache:
    """Read-only vectors by text key, loaded from an .npz with arrays `keys` (n x 16 bytes) and `vectors`."""

    def __init__(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or vectors.ndim != 2 or len(keys) != len(vectors):
            raise ValueError(f"an embedding cache needs n x {KEY_BYTES} keys and n vectors")
        self._rows = {bytes(key): row for row, key in enumerate(keys)}
        self._vectors = vectors

    @classmethod
    def load(cls, path: Path) -> EmbeddingCache:
        with np.load(path) as archive:
            return cls(archive["keys"], archive["vectors"])

    @staticmethod
    def save(path: Path, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        keys = np.frombuffer(b"".join(text_key(model_id, text) for text in texts), dtype=np.uint8)
        np.savez_compressed(
            path, keys=keys.reshape(len(texts), KEY_BYTES), vectors=np.asarray(vectors, dtype=np.float16)
        )

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, model_id: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Each text's cached vector (float32, unit norm), or None where the cache has none."""
        found: list[np.ndarray | None] = []
        for text in texts:
            row = self._rows.get(text_key(model_id, text))
            if row is None:
                found.append(None)
                continue
            vector = self._vectors[row].astype(np.float32)
            found.append(vector / np.linalg.norm(vector))
        return found


class CachedEmbedder:
    """An embedder that answers from the cache and runs `embedder` on the texts the cache lacks."""

    def __init__(self, embedder, cache: EmbeddingCache) -> None:
        self._embedder = embedder
        self._cache = cache
        self.model_id = embedder.model_id
        self.misses = 0  # texts the model embedded, for the import's report

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = list(texts)
        found = self._cache.lookup(self.model_id, items)
        missing = [index for index, vector in enumerate(found) if vector is None]
        if missing:
            fresh = self._embedder.embed([items[index] for index in missing])
            for index, vector in zip(missing, fresh, strict=True):
                found[index] = vector
        self.misses += len(missing)
        if not items:
            return np.zeros((0, getattr(self._embedder, "dimension", 0)), dtype=np.float32)
        return np.stack(found).astype(np.float32)
