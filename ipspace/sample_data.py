"""The sample data shipped in ``data/`` (derived from real public patent data; see data/README.md)."""

from __future__ import annotations

import csv
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
# A 128-d matching head trained federated with DP (epsilon 8 per node) by bench/matching_federated.py: the
# consumer's default projection until it downloads one from a matching job (data/README.md says how made).
SHIPPED_MATCHING_HEAD = DATA_DIR / "matching_head_dp8.bin"


def shipped_embedder():
    """The text embedder for imports: the shipped vectors where they hold the text, the model elsewhere."""
    from models.matching.embedding_cache import CachedEmbedder, EmbeddingCache
    from models.matching.embeddings import TextEmbedder

    if not SHIPPED_EMBEDDINGS.exists():
        return TextEmbedder()
    return CachedEmbedder(TextEmbedder(), EmbeddingCache.load(SHIPPED_EMBEDDINGS))


PHRASE_PAIRS_ID_FIELD = "id"
PHRASE_PAIRS_SOURCE = (
    "Human-rated patent phrase pairs: a re-split of Google's 'U.S. Patent Phrase to Phrase Matching' "
    "(Aslanyan & Wetherbee, 2022), via alexmoini/Patent_Phrase_Project; CC BY 4.0"
)
PHRASE_PAIR_COLUMNS = ("id", "anchor", "target", "context", "score", "split")


def write_phrase_pair_share(
    path: Path, share: int, nodes: int = 3, *, limits: tuple[int, int] | None = None
) -> tuple[str, ...]:
    """Write provider `share` (0-based) of `nodes` as a CSV a node imports to train the matching head: its
    CPC sections' train pairs and valid pairs, with a `split` column (the data set's own split). `limits`
    keeps only the first (train, valid) pairs of each side, for a quick space. Returns the share's CPC
    sections. Raises PhrasePairError for a share outside 0..nodes-1 (or as split_by_section)."""
    from models.matching.phrase_pairs import PhrasePairError, load_phrase_pairs, split_by_section

    if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share < nodes:
        raise PhrasePairError(f"share must be an int from 0 to {nodes - 1}, got {share!r}")
    sections = split_by_section(load_phrase_pairs("train"), nodes)[share].sections
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PHRASE_PAIR_COLUMNS)
        for side, split in enumerate(("train", "valid")):
            kept = [pair for pair in load_phrase_pairs(split) if pair.section in sections]
            for pair in kept[: limits[side]] if limits else kept:
                writer.writerow((pair.pair_id, pair.anchor, pair.target, pair.context, pair.score, split))
    return sections
