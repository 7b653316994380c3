"""A federated matching-head job end to end: SecAgg+ rounds of node-side DP-SGD on the nodes' phrase pairs."""

from __future__ import annotations

import numpy as np

from coordinator.job_spec import JobState
from coordinator.model_files import load_model
from models.matching.projection import Projection, initial_weights
from tests.federated.conftest import PAIRS_PER_NODE, FederatedSpace


def test_a_secagg_dp_matching_job_trains_the_head_over_three_nodes_pooling_the_held_out_pearson(
    federated: FederatedSpace,
) -> None:
    agreements = federated.agreements("pairs-dp")
    job_id = federated.submit(agreements, rounds=2, epsilon=4.0, secagg=True, task="matching")
    record = federated.wait(job_id)
    assert record.state == JobState.SUCCEEDED, record.reason
    assert [round_.round for round_ in record.rounds] == [1, 2]
    last = record.rounds[-1]
    assert set(last.epsilon_by_node) == set(federated.nodes)
    assert all(0 < epsilon <= 4.0 for epsilon in last.epsilon_by_node.values())
    # Every node's held-out pairs, pooled exactly from the nodes' sums.
    assert last.metrics["held_out_rows"] == 3 * PAIRS_PER_NODE[1]
    assert -1 <= last.metrics["held_out_pearson"] <= 1
    weights = load_model(federated.store.model_path(record))
    head = Projection.from_weights(weights)  # the consumer's projection loads it as is
    assert head.dimension == 128
    assert not np.array_equal(weights[0], initial_weights(0)[0])  # the rounds moved it from its start
