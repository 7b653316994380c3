"""The job store on a real SQLite file: state machine, round reports, models, cancels, restart recovery."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from coordinator.job_spec import JobSpec, JobState, JobStatus
from coordinator.jobs import (
    InvalidRound,
    InvalidTransition,
    JobExists,
    JobStore,
    UnknownJob,
    recover_jobs,
)
from coordinator.model_files import load_model
from tests.coordinator.conftest import MODEL_SETTINGS, FakeRunner

AGREEMENT = "sha256:" + "ab" * 32
SPEC = JobSpec(
    task="valuation",
    dataset="lens_drones",
    purpose="valuation-research",
    agreements=(AGREEMENT,),
    rounds=3,
    epsilon=4.0,
    model=MODEL_SETTINGS,
)
WEIGHTS = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.5], dtype=np.float32)]

# The state machine, written out independently of coordinator.jobs.TRANSITIONS.
ALLOWED = {
    ("queued", "running"),
    ("queued", "failed"),
    ("queued", "cancelled"),
    ("queued", "interrupted"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("running", "interrupted"),
}


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "coordinator.db")


def _job(store: JobStore, job_id: str = "job-1") -> str:
    store.create(job_id=job_id, org="acme", submitted_by="bea", spec=SPEC, grants={AGREEMENT: '{"g": 1}'})
    return job_id


def _drive_to(store: JobStore, job_id: str, state: str) -> None:
    if state == "queued":
        return
    store.set_state(job_id, JobState.RUNNING)
    if state == "succeeded":
        store.save_model(job_id, WEIGHTS)
    if state != "running":
        store.set_state(job_id, state, reason="test")


def test_the_file_is_in_wal_mode(store: JobStore) -> None:
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_created_job_reads_back_queued_with_its_spec_and_grants(store: JobStore) -> None:
    record = store.get(_job(store))
    assert (record.state, record.org, record.submitted_by) == (JobState.QUEUED, "acme", "bea")
    assert record.spec == SPEC and record.grants == {AGREEMENT: '{"g": 1}'}
    assert [job.job_id for job in store.list_jobs(org="acme")] == ["job-1"]
    assert store.list_jobs(org="globex") == []


def test_ids_are_unique_and_well_formed(store: JobStore) -> None:
    _job(store)
    with pytest.raises(JobExists):
        _job(store)
    with pytest.raises(ValueError, match="is not allowed"):
        _job(store, "../escape")
    with pytest.raises(UnknownJob):
        store.get("job-404")


@pytest.mark.parametrize("start", [state.value for state in JobState])
@pytest.mark.parametrize("target", [state.value for state in JobState])
def test_the_state_machine(store: JobStore, start: str, target: str) -> None:
    job_id = _job(store)
    _drive_to(store, job_id, start)
    if (start, target) in ALLOWED:
        if target == "succeeded":
            store.save_model(job_id, WEIGHTS)
        assert store.set_state(job_id, target, reason="because").state == target
    else:
        with pytest.raises(InvalidTransition, match=f"is {start}; it cannot become {target}"):
            store.set_state(job_id, target, reason="because")
        assert store.get(job_id).state == start


def test_success_needs_a_saved_model_and_failure_needs_a_reason(store: JobStore) -> None:
    job_id = _job(store)
    store.set_state(job_id, JobState.RUNNING)
    with pytest.raises(InvalidTransition, match="before its model is saved"):
        store.set_state(job_id, JobState.SUCCEEDED)
    with pytest.raises(ValueError, match="needs a reason"):
        store.set_state(job_id, JobState.FAILED, reason="  ")


def test_two_writers_racing_to_end_a_job_cannot_both_win(store: JobStore) -> None:
    job_id = _job(store)
    store.set_state(job_id, JobState.RUNNING)
    other = JobStore(store.path)  # a second handle, as the ServerApp process holds
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def end(handle: JobStore, state: JobState) -> None:
        barrier.wait()
        try:
            handle.set_state(job_id, state, reason=f"ended as {state.value}")
            outcomes.append(state.value)
        except InvalidTransition:
            outcomes.append("refused")

    threads = [
        threading.Thread(target=end, args=(handle, state))
        for handle, state in [(store, JobState.FAILED), (other, JobState.INTERRUPTED)] * 4
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes).count("refused") == 7
    winner = next(outcome for outcome in outcomes if outcome != "refused")
    assert store.get(job_id).state == winner


def test_rounds_arrive_in_order_while_running_with_finite_values(store: JobStore) -> None:
    job_id = _job(store)
    with pytest.raises(InvalidTransition, match="only a running job records rounds"):
        store.record_round(job_id, 1, {"loss": 1.0}, {"node-us": 0.5})
    store.set_state(job_id, JobState.RUNNING)
    with pytest.raises(InvalidRound, match="round 2 cannot come next"):
        store.record_round(job_id, 2, {"loss": 1.0}, {"node-us": 0.5})
    with pytest.raises(InvalidRound, match="finite"):
        store.record_round(job_id, 1, {"loss": float("nan")}, {"node-us": 0.5})
    store.record_round(job_id, 1, {"loss": 1.0}, {"node-us": 0.5, "node-eu": 0.4})
    with pytest.raises(InvalidRound, match="round 1 cannot come next"):
        store.record_round(job_id, 1, {"loss": 0.9}, {"node-us": 0.5})
    store.record_round(job_id, 2, {"loss": 0.8}, {"node-us": 0.9})
    store.record_round(job_id, 3, {"loss": 0.7}, {"node-us": 1.2})
    with pytest.raises(InvalidRound, match="completed 3 of 3"):
        store.record_round(job_id, 4, {"loss": 0.6}, {"node-us": 1.5})
    rounds = store.get(job_id).rounds
    assert [(r.round, r.metrics["loss"]) for r in rounds] == [(1, 1.0), (2, 0.8), (3, 0.7)]


def test_the_status_view_shows_each_nodes_latest_epsilon_and_no_internal_field(store: JobStore) -> None:
    job_id = _job(store)
    store.set_state(job_id, JobState.RUNNING)
    store.record_round(job_id, 1, {"loss": 1.0}, {"node-us": 0.5, "node-eu": 0.4})
    store.record_round(job_id, 2, {"loss": 0.8}, {"node-us": 0.9})  # node-eu missed round 2
    store.save_model(job_id, WEIGHTS)
    view = json.loads(JobStatus.of(store.get(job_id)).model_dump_json())
    assert view["epsilon_spent_by_node"] == {"node-us": 0.9, "node-eu": 0.4}
    assert view["rounds_completed"] == 2 and view["model_available"] is True
    assert "grants" not in view and "model_file" not in view
    assert json.dumps(view).find(store.models_dir.as_posix()) == -1  # no path on disk leaks


def test_a_saved_model_reads_back_exactly_with_its_digest(store: JobStore) -> None:
    job_id = _job(store)
    store.set_state(job_id, JobState.RUNNING)
    path = store.save_model(job_id, WEIGHTS)
    loaded = load_model(path)
    assert len(loaded) == len(WEIGHTS)
    for saved, original in zip(loaded, WEIGHTS, strict=True):
        assert saved.dtype == np.float32 and np.array_equal(saved, original)
    assert store.get(job_id).model_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        ([], "at least one"),
        ([np.zeros(3, dtype=np.float64)], "not a float32"),
        ([np.array([np.inf], dtype=np.float32)], "NaN or infinite"),
    ],
)
def test_bad_weights_are_refused(store: JobStore, weights: list, reason: str) -> None:
    job_id = _job(store)
    store.set_state(job_id, JobState.RUNNING)
    with pytest.raises(ValueError, match=reason):
        store.save_model(job_id, weights)


def test_an_ended_job_takes_no_model_and_leaves_no_file(store: JobStore) -> None:
    job_id = _job(store)
    store.set_state(job_id, JobState.CANCELLED, reason="stop")
    with pytest.raises(InvalidTransition, match="not running"):
        store.save_model(job_id, WEIGHTS)
    assert list(store.models_dir.iterdir()) == []


def test_cancel_ends_a_queued_job_and_flags_a_running_one(store: JobStore) -> None:
    queued, running = _job(store, "job-q"), _job(store, "job-r")
    store.set_state(running, JobState.RUNNING)
    record = store.cancel(queued, reason="cancelled by acme/bea")
    assert (record.state, record.reason) == (JobState.CANCELLED, "cancelled by acme/bea")
    record = store.cancel(running, reason="cancelled by acme/bea")
    assert record.state == JobState.RUNNING and store.is_cancel_requested(running)
    with pytest.raises(InvalidTransition, match="already ended"):
        store.cancel(queued, reason="again")


def test_recovery_interrupts_every_job_whose_run_is_gone_and_says_where_it_stopped(store: JobStore) -> None:
    queued, dead, alive, done = (_job(store, name) for name in ("job-q", "job-dead", "job-alive", "job-done"))
    for job_id in (dead, alive, done):
        store.set_state(job_id, JobState.RUNNING)
    store.record_round(dead, 1, {"loss": 1.0}, {"node-us": 0.5})
    store.record_round(dead, 2, {"loss": 0.9}, {"node-us": 0.8})
    store.set_state(done, JobState.FAILED, reason="a node refused")

    interrupted = recover_jobs(store, FakeRunner(alive={alive}))

    assert sorted(job.job_id for job in interrupted) == [dead, queued]
    assert (
        store.get(dead).reason
        == "the coordinator restarted while the job was running; last completed round 2"
    )
    assert (
        store.get(queued).reason
        == "the coordinator restarted while the job was queued; no round had completed"
    )
    assert store.get(alive).state == JobState.RUNNING
    assert (store.get(done).state, store.get(done).reason) == (JobState.FAILED, "a node refused")
