"""The ServerApp's strategy on its own: how long it waits for nodes, and when it gives a job up.

A real job store on a SQLite file and Flower's own client manager; the nodes are client proxies that are
registered and sampled but never called (the message exchange is exercised by tests/federated/).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flwr.common import ndarrays_to_parameters
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy

from coordinator.flower.fast_grid import FastPollGrid, readable_reason
from coordinator.flower.server_app import DeltaFedAvg, JobRun, JobStopped
from coordinator.job_spec import JobSpec, JobState
from coordinator.jobs import JobStore
from models.valuation.wire import initial_weights
from tests.coordinator.conftest import MODEL_SETTINGS

STAGE_TIMEOUT_S = 0.3
JOB_ID = "job-1"


class RegisteredNode(ClientProxy):
    """A node as the client manager knows it: sampled, never sent a message in these tests."""

    def _not_here(self, *args, **kwargs):
        raise AssertionError("these tests never message a node")

    get_properties = get_parameters = fit = evaluate = reconnect = _not_here


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "jobs.sqlite")
    spec = JobSpec(
        task="valuation",
        dataset="lens_drones",
        purpose="valuation-research",
        agreements=("sha256:" + "ab" * 32,),
        rounds=2,
        epsilon=4.0,
        model=MODEL_SETTINGS,
    )
    store.create(job_id=JOB_ID, org="builder", submitted_by="builder/alice", spec=spec, grants={})
    return store


def strategy(store: JobStore, *, rounds: int = 2, min_cohort: int = 3) -> DeltaFedAvg:
    job = JobRun(
        job_id=JOB_ID,
        task="valuation",
        store=store,
        grants_json="{}",
        rounds=rounds,
        min_cohort=min_cohort,
        secagg=True,
        num_shares=3,
        reconstruction_threshold=2,
        max_weight=1e6,
        poll_interval=0.1,
        stage_timeout=STAGE_TIMEOUT_S,
        seed=0,
    )
    # The grid is only asked for the reasons nodes gave; none of these tests sends a message.
    return DeltaFedAvg(job, FastPollGrid(inner=None))  # type: ignore[arg-type]


def online(count: int) -> SimpleClientManager:
    manager = SimpleClientManager()
    for index in range(count):
        manager.register(RegisteredNode(f"node-{index}"))
    return manager


def weights():
    return ndarrays_to_parameters(initial_weights(0))


def test_a_round_starts_with_every_node_online_and_the_round_in_its_config(store: JobStore) -> None:
    instructions = strategy(store).configure_fit(1, weights(), online(3))

    assert sorted(client.cid for client, _ in instructions) == ["node-0", "node-1", "node-2"]
    assert {fit.config["round"] for _, fit in instructions} == {1}


def test_a_round_without_the_cohort_online_fails_the_job_after_a_bounded_wait(store: JobStore) -> None:
    began = time.monotonic()
    with pytest.raises(JobStopped) as stopped:
        strategy(store, min_cohort=3).configure_fit(1, weights(), online(2))

    assert STAGE_TIMEOUT_S <= time.monotonic() - began < 30  # FedAvg alone would wait a day
    assert stopped.value.state == JobState.FAILED
    assert stopped.value.reason == (
        f"round 1: 2 nodes online after waiting {STAGE_TIMEOUT_S:g} s; the job's agreements need at least 3"
    )


def test_a_lost_round_fails_the_job_before_the_next_one_starts(store: JobStore) -> None:
    with pytest.raises(JobStopped) as stopped:
        strategy(store).configure_fit(2, weights(), online(3))  # round 1 never aggregated

    assert stopped.value.state == JobState.FAILED
    assert stopped.value.reason.startswith("round 1 ended without an update")


def test_a_lost_last_round_fails_the_job_instead_of_evaluating(store: JobStore) -> None:
    app_strategy = strategy(store, rounds=2)
    app_strategy.aggregated_round = 1  # round 2, the last, ended without an update

    with pytest.raises(JobStopped) as stopped:
        app_strategy.configure_evaluate(2, weights(), online(3))
    assert stopped.value.reason.startswith("round 2 ended without an update")


def test_the_final_model_is_evaluated_on_every_node_online_even_below_the_cohort_minimum(
    store: JobStore,
) -> None:
    app_strategy = strategy(store, rounds=2, min_cohort=3)
    app_strategy.aggregated_round = 2

    assert app_strategy.configure_evaluate(1, weights(), online(3)) == []  # only after the last round
    instructions = app_strategy.configure_evaluate(2, weights(), online(1))
    assert [client.cid for client, _ in instructions] == ["node-0"]
    assert app_strategy.configure_evaluate(2, weights(), online(0)) == []  # nobody: training figures stand


def test_a_failed_round_is_reported_with_the_reasons_of_that_round_only(store: JobStore) -> None:
    app_strategy = strategy(store)
    app_strategy.grid.node_errors[7] = "office-us refused: PERMISSION_DENIED: the agreement was revoked"
    with pytest.raises(JobStopped) as stopped:
        app_strategy.configure_fit(2, weights(), online(3))  # round 1 ended without an update
    assert "node 7: office-us refused: PERMISSION_DENIED: the agreement was revoked" in stopped.value.reason

    app_strategy.aggregated_round = 1
    app_strategy.configure_fit(2, weights(), online(3))
    assert app_strategy.grid.node_errors == {}  # round 1's reasons do not explain round 2


def test_a_node_s_refusal_reads_in_the_node_s_words() -> None:
    raised = (
        "<class 'node.flower_client.RefusedByNode'>:<'office-eu refused: FAILED_PRECONDITION: the agreement "
        "needs a secure-aggregation cohort of at least 3 nodes; this round has 2'>"
    )
    assert readable_reason(raised) == (
        "office-eu refused: FAILED_PRECONDITION: the agreement needs a secure-aggregation cohort of at least "
        "3 nodes; this round has 2"
    )
    unavailable = "Error: Node Unavailable - The destination node is currently unavailable."
    assert readable_reason(unavailable) == unavailable
