"""Embed the shipped texts once with all-MiniLM-L6-v2 and write data/embeddings_minilm.npz.

    .venv/bin/python data/build_embeddings.py           # write data/embeddings_minilm.npz (minutes)
    .venv/bin/python data/build_embeddings.py --check   # embed a sample again, compare

What is embedded: the title of every Lens family in data/lens_drone_families.csv.gz, as a node embeds it at
import (`ipspace node init --embed title`). The vectors are the model's own, rounded to float16; each is keyed
by SHA-256 over the model id and the exact text (models/matching/embedding_cache.py), so an import finds them
only for the same model and the same text. No text is made up: only the shipped rows are read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ipspace.sample_data import LENS_FAMILIES, SHIPPED_EMBEDDINGS  # noqa: E402
from models.matching.embedding_cache import EmbeddingCache  # noqa: E402
from models.matching.embeddings import MODEL_ID, TextEmbedder  # noqa: E402
from node.partition import read_rows  # noqa: E402

CHECK_SAMPLE = 200
CHECK_TOLERANCE = 2e-3  # float16 rounding, then renormalisation


def shipped_texts() -> list[str]:
    _, rows = read_rows(LENS_FAMILIES)
    return sorted({row["title"].strip() for row in rows if row["title"].strip()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="re-embed a sample and compare")
    arguments = parser.parse_args(argv)
    texts = shipped_texts()
    embedder = TextEmbedder()
    if arguments.check:
        cache = EmbeddingCache.load(SHIPPED_EMBEDDINGS)
        sample = texts[:: max(1, len(texts) // CHECK_SAMPLE)]
        shipped = cache.lookup(MODEL_ID, sample)
        if any(vector is None for vector in shipped):
            print("the shipped embeddings lack some shipped texts: rebuild them", file=sys.stderr)
            return 1
        worst = float(np.abs(np.stack(shipped) - embedder.embed(sample)).max())
        print(f"{len(sample)} texts re-embedded; largest difference {worst:.2e} (at most {CHECK_TOLERANCE})")
        return 0 if worst <= CHECK_TOLERANCE else 1
    vectors = embedder.embed(texts)
    EmbeddingCache.save(SHIPPED_EMBEDDINGS, MODEL_ID, texts, vectors)
    size = SHIPPED_EMBEDDINGS.stat().st_size
    print(f"{len(texts)} texts embedded into {SHIPPED_EMBEDDINGS} ({size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
