"""A coordinator restart on the same SQLite file: no job is left "running" without a run behind it."""

from __future__ import annotations

from pathlib import Path

from coordinator.job_spec import JobState
from coordinator.jobs import JobStore
from tests.coordinator.conftest import FakeRunner, Space, coordinator_settings, register, serve, submission


def test_a_restart_interrupts_orphaned_jobs_with_the_reason_and_keeps_live_ones(
    space: Space, tmp_path: Path
) -> None:
    settings = coordinator_settings(space, tmp_path / "coordinator", with_down_node=False)
    agreement = space.agreement("bea", "node-us")
    first = serve(space, settings, FakeRunner())
    try:
        with first.client("bea") as client:
            assert register(client, agreement).status_code == 201
            jobs = {}
            for name in ("orphan", "live", "queued", "failed"):
                response = client.post("/jobs", json=submission(space, [agreement]))
                assert response.status_code == 201, response.text
                jobs[name] = response.json()["job_id"]
        store = JobStore(settings.database, settings.models_dir)  # the ServerApp's side, mid-job
        for name in ("orphan", "live", "failed"):
            store.set_state(jobs[name], JobState.RUNNING)
        store.record_round(jobs["orphan"], 1, {"train_loss": 0.9}, {"node-us": 0.4})
        store.record_round(jobs["orphan"], 2, {"train_loss": 0.8}, {"node-us": 0.7})
        store.set_state(jobs["failed"], JobState.FAILED, reason="node-us refused round 1")
    finally:
        first.server.stop()

    # A second coordinator process on the same file; its runner still runs only the "live" job.
    second = serve(space, settings, FakeRunner(alive={jobs["live"]}))
    try:
        with second.client("bea") as client:
            status = {name: client.get(f"/jobs/{job_id}").json() for name, job_id in jobs.items()}
            listed = {job["job_id"]: job["state"] for job in client.get("/jobs").json()}
    finally:
        second.server.stop()

    assert status["orphan"]["state"] == "interrupted"
    assert status["orphan"]["reason"] == (
        "the coordinator restarted while the job was running; last completed round 2"
    )
    assert [r["round"] for r in status["orphan"]["rounds"]] == [1, 2]  # its history survives
    assert status["queued"]["state"] == "interrupted"
    assert status["queued"]["reason"].endswith("while the job was queued; no round had completed")
    assert status["live"]["state"] == "running"
    assert (status["failed"]["state"], status["failed"]["reason"]) == ("failed", "node-us refused round 1")
    assert [job_id for job_id, state in listed.items() if state == "running"] == [jobs["live"]]
