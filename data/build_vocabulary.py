"""Embed the most frequent public patent phrases once and write data/phrase_vocabulary_minilm.npz.

    .venv/bin/python data/build_vocabulary.py           # write the vocabulary (under a minute on 2 cores)
    .venv/bin/python data/build_vocabulary.py --check   # same phrases chosen? a sample re-embedded, compared

What is embedded: the distinct anchor and target phrases of the human-rated pairs in
data/phrase_similarity_train.csv.gz (stripped of surrounding spaces), counted over both columns; the
VOCABULARY_SIZE most frequent, ties by the SHA-256 of the phrase (the same choice on every run, favouring no
part of the alphabet). That takes every one of the 733 anchors (each rated against dozens of targets) and the
targets rated most often. The valid split is left out: it is held out for the quality figures. The vectors
are all-MiniLM-L6-v2's own, rounded to float16. `ipspace match --expand` suggests related terms from them
(models/matching/expansion.py).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.matching.embeddings import MODEL_ID, TextEmbedder  # noqa: E402
from models.matching.expansion import SHIPPED_VOCABULARY, Vocabulary  # noqa: E402
from models.matching.phrase_pairs import load_phrase_pairs  # noqa: E402

VOCABULARY_SIZE = 2400  # 768 bytes a phrase in float16: the file stays under 2 MB
CHECK_SAMPLE = 200
CHECK_TOLERANCE = 2e-3  # float16 rounding, then renormalisation


def frequent_phrases(size: int = VOCABULARY_SIZE) -> list[str]:
    """The `size` phrases of the train pairs named most often (anchor or target), ties by SHA-256."""
    counts: Counter[str] = Counter()
    for pair in load_phrase_pairs("train"):
        counts[pair.anchor.strip()] += 1
        counts[pair.target.strip()] += 1
    return sorted(counts, key=lambda phrase: (-counts[phrase], _digest(phrase)))[:size]


def _digest(phrase: str) -> str:
    return hashlib.sha256(phrase.encode()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped vocabulary")
    arguments = parser.parse_args(argv)
    phrases = frequent_phrases()
    embedder = TextEmbedder()
    if arguments.check:
        shipped = Vocabulary.load(SHIPPED_VOCABULARY)
        if shipped.model_id != MODEL_ID or list(shipped.phrases) != phrases:
            print("the shipped vocabulary is not what this script builds: rebuild it", file=sys.stderr)
            return 1
        rows = list(range(0, len(phrases), max(1, len(phrases) // CHECK_SAMPLE)))
        fresh = embedder.embed([phrases[row] for row in rows])
        worst = float(np.abs(shipped.vectors[rows] - fresh).max())
        print(f"{len(rows)} phrases re-embedded; largest difference {worst:.2e} (at most {CHECK_TOLERANCE})")
        return 0 if worst <= CHECK_TOLERANCE else 1
    vectors = embedder.embed(phrases)
    # Stored as float16, then normalised again when loaded: what --check compares against.
    Vocabulary(phrases, vectors.astype(np.float16), MODEL_ID).save(SHIPPED_VOCABULARY)
    size = SHIPPED_VOCABULARY.stat().st_size
    print(f"{len(phrases)} phrases embedded into {SHIPPED_VOCABULARY} ({size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
