"""A federated valuation job end to end: Flower rounds over three real nodes, with and without SecAgg+."""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from coordinator.job_spec import JobState
from coordinator.model_files import load_model
from models.valuation.wire import weight_shapes
from tests.federated.conftest import FederatedSpace


def _train_entries(space: FederatedSpace, org: str, agreement_id: str) -> list[dict]:
    uri = (space.nodes[org] / "node.db").resolve().as_uri() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        leaves = [json.loads(row[0]) for row in connection.execute("SELECT leaf FROM entries ORDER BY idx")]
    return [
        leaf for leaf in leaves if leaf["method"].endswith("/Train") and leaf["agreement_id"] == agreement_id
    ]


def test_a_secagg_dp_job_trains_over_three_nodes_and_accounts_every_epsilon(
    federated: FederatedSpace,
) -> None:
    agreements = federated.agreements("dp")
    job_id = federated.submit(agreements, rounds=2, epsilon=4.0, secagg=True)
    record = federated.wait(job_id)
    assert record.state == JobState.SUCCEEDED, record.reason
    assert [round_.round for round_ in record.rounds] == [1, 2]
    last = record.rounds[-1]
    assert set(last.epsilon_by_node) == set(federated.nodes)
    assert all(0 < epsilon <= 4.0 for epsilon in last.epsilon_by_node.values())
    assert last.metrics["held_out_rows"] > 0 and np.isfinite(last.metrics["held_out_r2"])
    weights = load_model(federated.store.model_path(record))
    assert [array.shape for array in weights] == weight_shapes()
    for agreement in agreements:
        org = agreement.terms.provider_org
        entries = _train_entries(federated, org, agreement.agreement_id)
        assert [entry["decision"] for entry in entries] == ["allow", "allow"]


def test_a_plain_job_without_dp_is_refused_where_the_agreement_needs_a_cohort(
    federated: FederatedSpace,
) -> None:
    # The dp offers ask for a SecAgg+ cohort of 2: without SecAgg+ the coordinator would see each update.
    job_id = federated.submit(federated.agreements("dp"), rounds=1, epsilon=4.0, secagg=False)
    record = federated.wait(job_id)
    assert record.state == JobState.FAILED
    assert "cohort of at least 2" in record.reason
