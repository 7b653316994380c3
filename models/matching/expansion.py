"""Related terms for a technology need, found on the consumer's machine before the need is encrypted.

The consumer embeds its need and looks for the nearest public patent phrases in a shipped vocabulary (the
distinct phrases of the human-rated phrase pairs, embedded once by `data/build_vocabulary.py`), in two levels:

- first level: the vocabulary phrases nearest the need's embedding;
- second level: the phrases nearest those first-level phrases, other than them ("second-level associated
  words"); each is scored by its nearest first-level phrase, which it names (`via`).

Phrases the need already says (as whole words, ignoring case) are left out of both levels: they add nothing.
Nothing here leaves the machine; the suggestions only change the need if the consumer adds them to its text.
The vocabulary and the need must be embedded by the same model (`model_id`) and have the same dimension:
cosines between vectors of two models mean nothing, so a mismatch is refused rather than ranked.

numpy only: importing this module imports no model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.matching.phrase_pairs import DATA_DIR

__all__ = [
    "SHIPPED_VOCABULARY",
    "ExpansionError",
    "RelatedTerm",
    "RelatedTerms",
    "Vocabulary",
    "VocabularyMismatch",
    "related_terms",
]

SHIPPED_VOCABULARY = DATA_DIR / "phrase_vocabulary_minilm.npz"
MAX_TERMS = 100  # per level: suggestions are read by a person
_NORM_TOLERANCE = 1e-2  # float16 storage moves a unit vector's norm by about 1e-3


class ExpansionError(ValueError):
    """A vocabulary file or an expansion request that cannot be used; the message says what and why."""


class VocabularyMismatch(ExpansionError):
    """The vocabulary was embedded by another model, or in another dimension, than the need."""


@dataclass(frozen=True)
class RelatedTerm:
    """A suggested phrase; `score` is its cosine to the need (first level) or to `via` (second level)."""

    phrase: str
    score: float
    via: str | None = None


@dataclass(frozen=True)
class RelatedTerms:
    first_level: tuple[RelatedTerm, ...]
    second_level: tuple[RelatedTerm, ...]


class Vocabulary:
    """Phrases and their unit-norm embeddings (float32 in memory) under one model id."""

    def __init__(self, phrases: Sequence[str], vectors: np.ndarray, model_id: str) -> None:
        """Raises ExpansionError for no phrases, an empty or repeated phrase, a phrase with a line break,
        vectors that are not one finite unit-norm row per phrase, or an empty model id."""
        items = tuple(phrases)
        matrix = np.asarray(vectors, dtype=np.float32)
        if not items:
            raise ExpansionError("a vocabulary needs at least one phrase")
        if not model_id:
            raise ExpansionError("a vocabulary must name the model that embedded it")
        bad = [phrase for phrase in items if not phrase.strip() or "\n" in phrase]
        if bad:
            raise ExpansionError(f"vocabulary phrases must be non-empty single lines; {bad[0]!r} is not")
        if len(set(items)) != len(items):
            raise ExpansionError("vocabulary phrases must be distinct")
        if matrix.ndim != 2 or matrix.shape[0] != len(items) or matrix.shape[1] < 1:
            raise ExpansionError(
                f"a vocabulary needs one vector per phrase: {len(items)} phrases, vectors of shape "
                f"{matrix.shape}"
            )
        norms = np.linalg.norm(matrix, axis=1) if np.isfinite(matrix).all() else None
        if norms is None or np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
            raise ExpansionError("vocabulary vectors must be finite and of unit norm")
        self.phrases = items
        self.vectors = matrix / norms[:, None]
        self.model_id = model_id

    @property
    def dimension(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.phrases)

    def save(self, path: Path) -> None:
        """Write an .npz: phrases as UTF-8 lines, vectors as float16, the model id. No pickles."""
        np.savez_compressed(
            path,
            phrases=np.frombuffer("\n".join(self.phrases).encode(), dtype=np.uint8),
            vectors=self.vectors.astype(np.float16),
            model_id=np.frombuffer(self.model_id.encode(), dtype=np.uint8),
        )

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        """Raises ExpansionError for a file that is not a vocabulary (missing arrays, wrong shapes, bad UTF-8)
        and OSError when it cannot be read."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                text, vectors, model_id = (archive[name] for name in ("phrases", "vectors", "model_id"))
            phrases = bytes(text.astype(np.uint8)).decode().split("\n")
            model = bytes(model_id.astype(np.uint8)).decode()
        except (KeyError, ValueError, UnicodeDecodeError) as error:
            raise ExpansionError(f"{path} is not a phrase vocabulary: {error}") from None
        return cls(phrases, vectors, model)

    def require(self, model_id: str, dimension: int) -> None:
        """Raises VocabularyMismatch unless this vocabulary was embedded by `model_id` in `dimension`."""
        if model_id != self.model_id:
            raise VocabularyMismatch(
                f"the vocabulary was embedded by {self.model_id}, the need by {model_id}: their vectors "
                "cannot be compared; rebuild the vocabulary with the need's model (data/build_vocabulary.py)"
            )
        if dimension != self.dimension:
            raise VocabularyMismatch(
                f"the vocabulary's vectors have {self.dimension} dimensions, the need's {dimension}"
            )


def related_terms(
    need: np.ndarray,
    vocabulary: Vocabulary,
    *,
    model_id: str,
    first: int = 8,
    second: int = 8,
    need_text: str = "",
) -> RelatedTerms:
    """The `first` phrases nearest `need` (a unit vector embedded by `model_id`), then the `second` phrases
    nearest those, disjoint from them; both best first, ties by vocabulary order (so the result is the same
    on every call). Phrases found as whole words in `need_text` are skipped.

    Raises VocabularyMismatch for a need of another model or dimension; ExpansionError for a need that is not
    a finite non-zero vector, or counts outside 0..MAX_TERMS.
    """
    for name, count in (("first", first), ("second", second)):
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_TERMS:
            raise ExpansionError(f"{name} must be an int from 0 to {MAX_TERMS}, got {count!r}")
    vector = np.asarray(need, dtype=np.float32)
    if vector.ndim != 1:
        raise ExpansionError(f"the need's embedding must be one vector, got an array of shape {vector.shape}")
    vocabulary.require(model_id, vector.shape[0])
    norm = float(np.linalg.norm(vector)) if np.isfinite(vector).all() else 0.0
    if norm == 0.0:
        raise ExpansionError("the need's embedding must be a finite, non-zero vector")
    candidates = np.array([not _said_in(phrase, need_text) for phrase in vocabulary.phrases])
    to_need = vocabulary.vectors @ (vector / norm)
    chosen = _best(to_need, candidates, first)
    first_level = tuple(RelatedTerm(vocabulary.phrases[i], float(to_need[i])) for i in chosen)
    if not chosen or second == 0:
        return RelatedTerms(first_level, ())
    to_first = vocabulary.vectors @ vocabulary.vectors[chosen].T  # (phrases, first-level terms)
    nearest = to_first.argmax(axis=1)  # argmax takes the first of equal maxima: deterministic
    strength = to_first[np.arange(len(vocabulary)), nearest]
    candidates[chosen] = False
    second_level = tuple(
        RelatedTerm(vocabulary.phrases[i], float(strength[i]), vocabulary.phrases[chosen[nearest[i]]])
        for i in _best(strength, candidates, second)
    )
    return RelatedTerms(first_level, second_level)


def _best(scores: np.ndarray, allowed: np.ndarray, count: int) -> list[int]:
    """Indices of the `count` highest allowed scores, best first, ties by index."""
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[allowed[order]][:count]]


def _said_in(phrase: str, text: str) -> bool:
    if not text:
        return False
    return re.search(rf"(?<!\w){re.escape(phrase.lower())}(?!\w)", text.lower()) is not None
