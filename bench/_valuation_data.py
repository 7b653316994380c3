"""The valuation benchmark's data: the Lens drone families split by provider, then into train and held-out.

The rows are split across the three providers of `node.partition` (by jurisdiction), and each provider's
rows into train and held-out by `models.valuation.split`, exactly as each node splits its own. Targets come in
two variants (the "target cohorts" question of issue 3):
- pooled: every target against the merged cohort stats of all nodes' TRAIN rows (what a secure cohort-totals
  step would give every node; `merge` of the nodes' stats);
- node-local: each node's targets against its own train rows' cohorts (what `node.training.data.prepare`
  does today).
Held-out rows are always scored against train stats only, so no held-out citation count enters a target.

`tuning_split` carves a validation set out of the train rows with a differently labelled hash, so settings
can be chosen without ever looking at the held-out rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np

from bench._fedsim import NodeShard
from ipspace.sample_data import LENS_FAMILIES
from models.valuation.features import FEATURE_NAMES, feature_matrix
from models.valuation.split import HELD_OUT_FRACTION, ID_FIELD, split_rows
from models.valuation.target import CohortStats, cohort_stats, merge, normalised_targets
from node.partition import partition_by_jurisdiction, read_rows

REFERENCE_YEAR = 2017  # the job grant's default `reference_year`: the drones export is of 2016
PROVIDERS = 3

Row = Mapping[str, str]
Splitter = Callable[[Sequence[Row]], tuple[list[Row], list[Row]]]

# The one fixed input transform the benchmark can apply (--age-decades): age in decades instead of years.
# Every other feature is already a 0/1 flag or a log1p count of order 1; age alone runs to 40+.
AGE_INDEX = FEATURE_NAMES.index("age_years")
AGE_DIVISOR = 10.0


@dataclass(frozen=True)
class Targets:
    """Training shards and held-out targets for one target variant."""

    shards: list[NodeShard]
    held_out: np.ndarray  # float64, in the order of ValuationData.held_out_features


@dataclass(frozen=True)
class ValuationData:
    providers: list[str]
    pooled: Targets
    node_local: Targets
    held_out_features: np.ndarray  # float32, every node's held-out rows, node after node
    held_out_node: np.ndarray  # the index of the provider holding each held-out row
    held_out_counts: dict[str, int]

    def union_train(self) -> tuple[np.ndarray, np.ndarray]:
        """All nodes' train rows with pooled targets: the centralized baseline's training set."""
        return (
            np.concatenate([shard.features for shard in self.pooled.shards]),
            np.concatenate([shard.targets for shard in self.pooled.shards]),
        )


def load_rows_by_provider() -> dict[str, list[Row]]:
    """The shipped Lens rows, split across the three providers as `node.partition` does."""
    _header, rows = read_rows(LENS_FAMILIES)
    return {part.provider: list(part.rows) for part in partition_by_jurisdiction(rows, PROVIDERS)}


def build(
    rows_by_provider: Mapping[str, Sequence[Row]], splitter: Splitter, *, age_decades: bool
) -> ValuationData:
    """Features and both target variants for every provider, split by `splitter` into train / held-out."""
    splits = {provider: splitter(rows) for provider, rows in rows_by_provider.items()}
    local_stats = {provider: cohort_stats(train) for provider, (train, _held) in splits.items()}
    pooled_stats: CohortStats = reduce(merge, local_stats.values(), CohortStats.empty())
    pooled_shards, local_shards = [], []
    pooled_held, local_held, held_features, held_node = [], [], [], []
    for index, (provider, (train, held)) in enumerate(splits.items()):
        features = _features(train, age_decades)
        pooled_shards.append(NodeShard(provider, features, _targets(train, pooled_stats)))
        local_shards.append(NodeShard(provider, features, _targets(train, local_stats[provider])))
        held_features.append(_features(held, age_decades))
        pooled_held.append(normalised_targets(held, pooled_stats))
        local_held.append(normalised_targets(held, local_stats[provider]))
        held_node.append(np.full(len(held), index))
    return ValuationData(
        providers=list(splits),
        pooled=Targets(pooled_shards, np.concatenate(pooled_held)),
        node_local=Targets(local_shards, np.concatenate(local_held)),
        held_out_features=np.concatenate(held_features),
        held_out_node=np.concatenate(held_node),
        held_out_counts={provider: len(held) for provider, (_train, held) in splits.items()},
    )


def held_out_split(rows: Sequence[Row]) -> tuple[list[Row], list[Row]]:
    """The global held-out split of `models.valuation.split`."""
    return split_rows(rows)


def tuning_split(rows: Sequence[Row]) -> tuple[list[Row], list[Row]]:
    """(inner train, validation): the held-out rows dropped, then a fifth of the train rows set aside."""
    train, _held_out = split_rows(rows)
    inner, validation = [], []
    for row in train:
        digest = hashlib.sha256(
            b"ipspace/bench/valuation/tuning\x00" + row[ID_FIELD].strip().encode()
        ).digest()
        position = int.from_bytes(digest[:8], "big") / 2**64
        (validation if position < HELD_OUT_FRACTION else inner).append(row)
    return inner, validation


def _features(rows: Sequence[Row], age_decades: bool) -> np.ndarray:
    features = feature_matrix(rows, reference_year=REFERENCE_YEAR).astype(np.float32)
    if age_decades:
        features[:, AGE_INDEX] /= AGE_DIVISOR
    return features


def _targets(rows: Sequence[Row], stats: CohortStats) -> np.ndarray:
    return normalised_targets(rows, stats).astype(np.float32)
