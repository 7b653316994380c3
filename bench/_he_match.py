"""Encrypted matching as a consumer and a node run it, for bench/matching_he_quality.py.

`EncryptedEngine` keeps the two sides apart: the consumer half holds `ConsumerKeys` (the secret key); the
node half is an `EvaluationContext` made from `ConsumerKeys.evaluation_keys()` bytes alone, and only ever sees
the query as ciphertext bytes. Also here: the shipped Lens titles with their shipped MiniLM vectors, the SBIR
needs, and the tie-aware top-k comparison.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass

import numpy as np

from bench import BenchFailed
from crypto.ckks import ConsumerKeys, EvaluationContext
from models.matching.embeddings import MODEL_ID
from models.matching.encrypted_scores import (
    MATCHING_PARAMETERS,
    PackedPatents,
    decrypt_scores,
    encrypt_query,
    rotation_steps,
)

TOP_K = 10
# Plaintext scores this close are one score (duplicates); far below the kernel's error (about 1e-6).
TIE_TOLERANCE = 1e-12


class EncryptedEngine:
    """One consumer (its own keys, for queries of `dimension` values) and a node that scores for it."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._consumer_keys = ConsumerKeys.generate(MATCHING_PARAMETERS, rotation_steps(dimension))
        # The node's side: the evaluation keys as they travel (bytes), never the ConsumerKeys object.
        self._node_context = EvaluationContext.from_bytes(
            MATCHING_PARAMETERS, self._consumer_keys.evaluation_keys()
        )
        self._node_encoder = EvaluationContext.keyless(MATCHING_PARAMETERS)

    def scores(self, query: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The consumer encrypts `query` (d,); the node packs `targets` (n, d) and scores; the consumer
        decrypts. Returns the n decrypted scores (float64)."""
        ciphertext = encrypt_query(self._consumer_keys, query)  # consumer
        packed = PackedPatents.encode(self._node_encoder, targets)  # node, from here to `blocks`
        blocks = packed.score(ciphertext, self._node_context, query_dimension=self.dimension)
        return decrypt_scores(self._consumer_keys, blocks, packed.count)  # consumer


@dataclass(frozen=True)
class TopComparison:
    """Encrypted against plaintext top-k: `identical` when the indices agree in order; `tied_only` when
    they differ only by swapping items whose plaintext scores are equal (within TIE_TOLERANCE: duplicates)."""

    identical: bool
    tied_only: bool

    @property
    def same_ranking(self) -> bool:
        return self.identical or self.tied_only


def compare_top(plain: np.ndarray, encrypted: np.ndarray, k: int = TOP_K) -> TopComparison:
    """Top-k by score (all items when there are at most k), best first, stable on ties."""
    plain_top = np.argsort(-plain, kind="stable")[:k]
    encrypted_top = np.argsort(-encrypted, kind="stable")[:k]
    if np.array_equal(plain_top, encrypted_top):
        return TopComparison(True, False)
    # Duplicate targets score equally up to float rounding (BLAS may round identical rows differently).
    gaps = np.abs(plain[plain_top] - plain[encrypted_top])
    return TopComparison(False, bool(gaps.max() <= TIE_TOLERANCE))


@dataclass(frozen=True)
class ShippedTitles:
    """The Lens family records (id, title, jurisdiction) and every distinct title's shipped vector."""

    record_ids: tuple[str, ...]
    record_titles: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    titles: tuple[str, ...]  # distinct, sorted
    vectors: np.ndarray  # (len(titles), 384) float32, unit rows


def shipped_titles() -> ShippedTitles:
    """Read data/lens_drone_families.csv.gz and look every title up in data/embeddings_minilm.npz.
    BenchFailed when a title has no shipped vector (the model would have to run)."""
    from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, SHIPPED_EMBEDDINGS
    from models.matching.embedding_cache import EmbeddingCache

    with gzip.open(LENS_FAMILIES, "rt", encoding="utf-8", newline="") as handle:
        rows = tuple(csv.DictReader(handle))
    titles = tuple(sorted({row["title"] for row in rows}))
    found = EmbeddingCache.load(SHIPPED_EMBEDDINGS).lookup(MODEL_ID, titles)
    missing = [title for title, vector in zip(titles, found, strict=True) if vector is None]
    if missing:
        raise BenchFailed(f"{len(missing)} Lens titles have no shipped vector, e.g. {missing[0]!r}")
    return ShippedTitles(
        tuple(row[LENS_ID_FIELD] for row in rows),
        tuple(row["title"] for row in rows),
        rows,
        titles,
        np.stack(found).astype(np.float32),
    )


def sbir_needs(first: str, count: int) -> list[tuple[str, str, str]]:
    """(topic id, title, title + description) of `first` and then the next topics of the shipped sample in
    file order, `count` in all: the need texts `ipspace.demo_matching.sbir_need` builds."""
    from ipspace.demo_matching import SBIR_TOPICS, sbir_need

    with gzip.open(SBIR_TOPICS, "rt", encoding="utf-8", newline="") as handle:
        others = [row["topic_id"] for row in csv.DictReader(handle) if row["topic_id"] != first]
    return [(topic, *sbir_need(topic)) for topic in [first, *others][:count]]
