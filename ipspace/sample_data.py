"""The sample data shipped in ``data/`` (derived from real public patent data; see data/README.md)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
LENS_FAMILIES = DATA_DIR / "lens_drone_families.csv.gz"
LENS_ID_FIELD = "publication_number"
LENS_SOURCE = (
    "Lens.org patent families on drones (2016 export), via the WIPO Manual on Open Source Patent "
    "Analytics (poldham/opensource-patent-analytics); Lens.org terms: attribution required"
)

# all-MiniLM-L6-v2 vectors of the shipped texts, made by data/build_embeddings.py (a lookup, not a model run).
SHIPPED_EMBEDDINGS = DATA_DIR / "embeddings_minilm.npz"


def shipped_embedder():
    """The text embedder for imports: the shipped vectors where they hold the text, the model elsewhere."""
    from models.matching.embedding_cache import CachedEmbedder, EmbeddingCache
    from models.matching.embeddings import TextEmbedder

    if not SHIPPED_EMBEDDINGS.exists():
        return TextEmbedder()
    return CachedEmbedder(TextEmbedder(), EmbeddingCache.load(SHIPPED_EMBEDDINGS))
