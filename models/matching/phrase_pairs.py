"""Human-rated patent phrase pairs (`data/phrase_similarity_*.csv.gz`) and their split across nodes.

Each pair is an anchor phrase, a target phrase, the CPC subclass the rating was made in (`context`, e.g.
``G03``) and a human similarity score in {0, 0.25, 0.5, 0.75, 1}. The projection head learns from the train
pairs; the valid pairs are held out for scoring.

For federated training the train pairs are split across nodes by CPC section, the first letter of the
context (A human necessities, B operations and transport, C chemistry and metallurgy, D textiles and paper,
E fixed constructions, F mechanical engineering, G physics, H electricity, Y cross-sectional tags). A
section is never split, so every node holds whole technology fields, as real providers do, and nodes differ
in what they hold (non-IID data).
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "CPC_SECTIONS",
    "DATA_DIR",
    "SCORES",
    "NodeShare",
    "PhrasePair",
    "PhrasePairError",
    "cpc_section",
    "load_phrase_pairs",
    "split_by_section",
]

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
CPC_SECTIONS = ("A", "B", "C", "D", "E", "F", "G", "H", "Y")
SCORES = (0.0, 0.25, 0.5, 0.75, 1.0)
_COLUMNS = ("id", "anchor", "target", "context", "score")

Split = Literal["train", "valid"]


class PhrasePairError(ValueError):
    """A pair file or a pair that is not as the data set defines it, or an impossible split request."""


@dataclass(frozen=True)
class PhrasePair:
    """One rated pair: `score` is the human similarity of `anchor` and `target` within CPC subclass
    `context`. `pair_id` is the data set's own id (unique within a split)."""

    pair_id: str
    anchor: str
    target: str
    context: str
    score: float

    @property
    def section(self) -> str:
        """The CPC section of the context: its first letter."""
        return cpc_section(self.context)


@dataclass(frozen=True)
class NodeShare:
    """The train pairs one node holds: every pair of `sections` (in file order)."""

    sections: tuple[str, ...]
    pairs: tuple[PhrasePair, ...]


def cpc_section(context: str) -> str:
    """The CPC section of a subclass such as ``G03`` (``G``). Raises PhrasePairError for another letter."""
    section = context[:1]
    if section not in CPC_SECTIONS:
        raise PhrasePairError(
            f"context {context!r} does not start with a CPC section letter ({', '.join(CPC_SECTIONS)})"
        )
    return section


def load_phrase_pairs(split: Split, *, data_dir: Path = DATA_DIR) -> list[PhrasePair]:
    """Every pair of one split, in file order.

    Raises PhrasePairError for an unknown split, a file without the columns id, anchor, target, context,
    score, an empty phrase, a score outside `SCORES`, a context without a CPC section, or a repeated id;
    OSError when the file cannot be read.
    """
    if split not in ("train", "valid"):
        raise PhrasePairError(f"split must be 'train' or 'valid', got {split!r}")
    path = data_dir / f"phrase_similarity_{split}.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != _COLUMNS:
            raise PhrasePairError(f"{path.name} has columns {reader.fieldnames}; expected {list(_COLUMNS)}")
        pairs = [_pair(row, path.name, line) for line, row in enumerate(reader, start=2)]
    seen: set[str] = set()
    for pair in pairs:
        if pair.pair_id in seen:
            raise PhrasePairError(f"{path.name} repeats the id {pair.pair_id!r}")
        seen.add(pair.pair_id)
    return pairs


def _pair(row: dict[str, str], file_name: str, line: int) -> PhrasePair:
    where = f"{file_name} line {line}"
    if not row["anchor"].strip() or not row["target"].strip():
        raise PhrasePairError(f"{where}: an empty phrase")
    try:
        score = float(row["score"])
    except ValueError:
        raise PhrasePairError(f"{where}: score {row['score']!r} is not a number") from None
    if score not in SCORES:
        raise PhrasePairError(f"{where}: score {score} is not one of {SCORES}")
    try:
        cpc_section(row["context"])
    except PhrasePairError as error:
        raise PhrasePairError(f"{where}: {error}") from None
    return PhrasePair(row["id"], row["anchor"], row["target"], row["context"], score)


def split_by_section(pairs: Sequence[PhrasePair], nodes: int) -> list[NodeShare]:
    """The pairs grouped into `nodes` shares of whole CPC sections, of similar pair counts.

    Deterministic: sections are placed largest first (ties by letter), each into the share holding the
    fewest pairs so far (ties to the lower share), and the shares are returned in order of their first
    section letter. Every pair lands in exactly one share, in its input order. With the 29,178 train pairs
    and 3 nodes: B+F 9,682, A+E+H 9,427, C+D+G 10,069.

    Raises PhrasePairError when `nodes` is not a positive int or exceeds the number of sections present
    (each node must hold at least one section).
    """
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise PhrasePairError(f"nodes must be a positive int, got {nodes!r}")
    by_section: dict[str, list[PhrasePair]] = {}
    for pair in pairs:
        by_section.setdefault(pair.section, []).append(pair)
    if nodes > len(by_section):
        raise PhrasePairError(
            f"{nodes} nodes asked for, but the pairs span {len(by_section)} CPC sections "
            f"({', '.join(sorted(by_section))}) and a section is never split"
        )
    groups: list[list[str]] = [[] for _ in range(nodes)]
    sizes = [0] * nodes
    for section in sorted(by_section, key=lambda letter: (-len(by_section[letter]), letter)):
        smallest = min(range(nodes), key=lambda index: (sizes[index], index))
        groups[smallest].append(section)
        sizes[smallest] += len(by_section[section])
    shares = [_share(sorted(sections), pairs) for sections in groups]
    return sorted(shares, key=lambda share: share.sections)


def _share(sections: Iterable[str], pairs: Sequence[PhrasePair]) -> NodeShare:
    chosen = tuple(sections)
    return NodeShare(chosen, tuple(pair for pair in pairs if pair.section in chosen))
