"""The job routes over real mTLS: submit, list, status, cancel, model download, and the record of each action.

The ServerApp's side (running, rounds, the final model) is played by writing to the job store directly, as
the ServerApp process does.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from contracts.job_grants import sign_job_grant
from coordinator.job_spec import JobState
from coordinator.jobs import JobStore
from tests.coordinator.conftest import (
    DP_BUDGET,
    MIN_COHORT,
    MODEL_SETTINGS,
    Coordinator,
    register,
    submission,
)

WEIGHTS = [np.full((2, 2), 0.25, dtype=np.float32), np.array([1.0, -1.0], dtype=np.float32)]


def _store(coordinator: Coordinator) -> JobStore:
    return JobStore(coordinator.settings.database, coordinator.settings.models_dir)


def _registered(coordinator: Coordinator, *nodes: str, member: str = "bea", offer_id: str = "train") -> list:
    agreements = [coordinator.space.agreement(member, node, offer_id) for node in nodes]
    with coordinator.client(member) as client:
        for agreement in agreements:
            assert register(client, agreement).status_code in (200, 201)
    return agreements


def _submit(coordinator: Coordinator, body: dict, member: str = "bea") -> dict:
    with coordinator.client(member) as client:
        response = client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_submitted_job_is_started_listed_and_shows_its_rounds(coordinator: Coordinator) -> None:
    body = submission(coordinator.space, _registered(coordinator, "node-us", "node-eu"))
    created = _submit(coordinator, body)
    job_id = body["job_id"]
    assert created == {"job_id": job_id, "state": "queued", "status_path": f"/jobs/{job_id}"}
    assert coordinator.runner.started == [job_id]

    store = _store(coordinator)  # the ServerApp's side
    store.set_state(job_id, JobState.RUNNING)
    store.record_round(job_id, 1, {"train_loss": 0.9, "r2": 0.1}, {"node-us": 0.6, "node-eu": 0.7})
    store.record_round(job_id, 2, {"train_loss": 0.7, "r2": 0.3}, {"node-us": 1.1, "node-eu": 1.2})

    with coordinator.client("bea") as client:
        [summary] = client.get("/jobs").json()
        status = client.get(f"/jobs/{job_id}").json()
    assert (summary["job_id"], summary["state"], summary["rounds_completed"]) == (job_id, "running", 2)
    assert [r["metrics"]["r2"] for r in status["rounds"]] == [0.1, 0.3]
    assert status["epsilon_spent_by_node"] == {"node-us": 1.1, "node-eu": 1.2}
    assert status["spec"]["agreements"] == body["agreements"] and status["submitted_by"] == "bea"
    assert "grants" not in status and "model_file" not in status


def _first(body: dict) -> str:
    return body["agreements"][0]


def _regrant(body: dict, space, agreement, **changes) -> None:
    """Replace the first grant by one signed with ``changes`` (job_id, rounds, epsilon)."""
    terms = {"job_id": body["job_id"], "rounds": body["rounds"], "epsilon": body["epsilon"], **changes}
    signed = sign_job_grant(
        space.identity("bea"), agreement, settings=MODEL_SETTINGS, **terms
    ).model_dump_json()
    body["grants"][_first(body)] = signed


def _refusal_cases() -> list:
    def change(**fields):
        return lambda body, _space, _agreements: body.update(fields)

    def drop_grant(body, _space, _agreements):
        body["grants"].pop(_first(body))

    def foreign_job_grant(body, space, agreements):
        _regrant(body, space, agreements[0], job_id="job-someone-else")

    def fewer_rounds_granted(body, space, agreements):
        _regrant(body, space, agreements[0], rounds=2)

    def crossed_grant(body, space, agreements):
        body["grants"][_first(body)] = body["grants"].pop(agreements[1].agreement_id)
        body["agreements"] = [_first(body)]

    def expired_grant(body, space, agreements):
        long_ago = datetime.now(UTC) - timedelta(days=3)
        grant = sign_job_grant(
            space.identity("bea"),
            agreements[0],
            job_id=body["job_id"],
            rounds=body["rounds"],
            epsilon=body["epsilon"],
            settings=MODEL_SETTINGS,
            now=long_ago,
        )
        body["grants"][_first(body)] = grant.model_dump_json()

    def extra_grant(body, _space, agreements):
        body["agreements"] = [_first(body)]

    def garbled_grant(body, _space, _agreements):
        body["grants"][_first(body)] = '{"body": {}}'

    return [
        pytest.param(change(dataset="other_data"), "covers dataset 'lens_drones'", id="dataset"),
        pytest.param(change(purpose="licensing"), "is for the purpose", id="purpose"),
        pytest.param(
            change(rounds=4), "consents to rounds=3; the job asks for rounds=4", id="spec-not-granted"
        ),
        pytest.param(drop_grant, "no grant for agreement", id="missing-grant"),
        pytest.param(foreign_job_grant, "was signed for job 'job-someone-else'", id="grant-of-another-job"),
        pytest.param(fewer_rounds_granted, "consents to rounds=2", id="grant-of-another-spec"),
        pytest.param(crossed_grant, "names another agreement", id="grant-naming-another-agreement"),
        pytest.param(expired_grant, "expired at", id="expired-grant"),
        pytest.param(extra_grant, "which the job does not name", id="grant-for-no-agreement"),
        pytest.param(garbled_grant, "is not a job grant", id="garbled-grant"),
    ]


@pytest.mark.parametrize(("change", "expected"), _refusal_cases())
def test_a_job_that_does_not_hold_is_400_with_the_reason_and_recorded(
    shared_coordinator: Coordinator, change, expected: str
) -> None:
    agreements = _registered(shared_coordinator, "node-us", "node-eu")
    body = submission(shared_coordinator.space, agreements)
    change(body, shared_coordinator.space, agreements)
    with shared_coordinator.client("bea") as client:
        response = client.post("/jobs", json=body)
    assert response.status_code == 400, response.text
    assert expected in response.json()["detail"]
    assert body["job_id"] not in shared_coordinator.runner.started
    [event] = shared_coordinator.events(body["job_id"])
    assert (event["action"], event["outcome"], event["status"]) == ("job.submit", "refused", 400)
    assert expected in event["reason"] and event["target"] == body["job_id"]


@pytest.mark.parametrize(
    ("offer_id", "member", "expected"),
    [
        ("reveal", "bea", "does not allow training (it allows: reveal)"),
        ("train-licensing", "bea", "is for the purpose 'licensing', not 'valuation-research'"),
        ("train", "gil", "is held by org 'globex', not by your org 'acme'"),
    ],
)
def test_agreements_that_do_not_cover_the_job_are_refused(
    shared_coordinator: Coordinator, offer_id: str, member: str, expected: str
) -> None:
    agreements = _registered(shared_coordinator, "node-us", member=member, offer_id=offer_id)
    with shared_coordinator.client("bea") as client:
        response = client.post("/jobs", json=submission(shared_coordinator.space, agreements))
    assert response.status_code == 400 and expected in response.json()["detail"]


@pytest.mark.parametrize(
    ("nodes", "epsilon", "secagg", "expected"),
    [
        (("node-us", "node-eu"), None, True, "requires differential privacy"),
        (("node-us", "node-eu"), DP_BUDGET * 2, True, f"allows at most ε = {DP_BUDGET} in total"),
        (("node-us", "node-eu"), DP_BUDGET, True, f"cohort of at least {MIN_COHORT} nodes; the job has 2"),
        (("node-us", "node-eu"), DP_BUDGET, False, "requires SecAgg+"),
    ],
    ids=["no-dp", "over-budget", "cohort-too-small", "secagg-off"],
)
def test_an_agreements_privacy_terms_are_checked_before_the_job_starts(
    shared_coordinator: Coordinator, nodes: tuple, epsilon: float | None, secagg: bool, expected: str
) -> None:
    agreements = _registered(shared_coordinator, *nodes, offer_id="train-dp")
    body = submission(shared_coordinator.space, agreements, epsilon=epsilon, secagg=secagg)
    with shared_coordinator.client("bea") as client:
        response = client.post("/jobs", json=body)
    assert response.status_code == 400 and expected in response.json()["detail"]


def test_an_unregistered_agreement_is_refused(shared_coordinator: Coordinator) -> None:
    # Made with the node, never registered with this module's coordinator (no other test here uses it).
    agreement = shared_coordinator.space.agreement("bea", "node-eu", "train-licensing")
    with shared_coordinator.client("bea") as client:
        response = client.post("/jobs", json=submission(shared_coordinator.space, [agreement]))
    assert response.status_code == 400
    assert f"agreement {agreement.agreement_id} is not registered" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rounds", 0),
        ("rounds", 101),
        ("epsilon", 0),
        ("epsilon", -1.0),
        ("agreements", []),
        ("job_id", "../../etc"),
        ("task", "ranking"),
        ("surprise", True),
    ],
)
def test_a_malformed_spec_is_422_and_recorded(
    shared_coordinator: Coordinator, field: str, value: object
) -> None:
    body = submission(shared_coordinator.space, _registered(shared_coordinator, "node-us"))
    body[field] = value
    with shared_coordinator.client("bea") as client:
        response = client.post("/jobs", json=body)
    assert response.status_code == 422
    assert any(field in problem["loc"] for problem in response.json()["detail"])
    event = shared_coordinator.events("/jobs")[-1]  # the body was not read, so the target is the route
    assert (event["action"], event["outcome"], event["status"]) == ("job.submit", "refused", 422)
    assert field in event["reason"]


def test_epsilon_may_be_null_but_not_left_out(shared_coordinator: Coordinator) -> None:
    agreements = _registered(shared_coordinator, "node-us")
    _submit(shared_coordinator, submission(shared_coordinator.space, agreements, epsilon=None))
    body = submission(shared_coordinator.space, agreements)
    del body["epsilon"]
    with shared_coordinator.client("bea") as client:
        assert client.post("/jobs", json=body).status_code == 422


def test_a_job_id_is_used_once(shared_coordinator: Coordinator) -> None:
    body = submission(shared_coordinator.space, _registered(shared_coordinator, "node-us"))
    _submit(shared_coordinator, body)
    with shared_coordinator.client("bea") as client:
        response = client.post("/jobs", json=body)
    assert response.status_code == 409 and "already exists" in response.json()["detail"]


def test_other_orgs_jobs_are_invisible_and_a_regulator_reads_them_all(coordinator: Coordinator) -> None:
    body = submission(coordinator.space, _registered(coordinator, "node-us"))
    job_id = _submit(coordinator, body)["job_id"]
    with coordinator.client("gil") as client:
        assert client.get("/jobs").json() == []
        for method, path in [("GET", f"/jobs/{job_id}"), ("POST", f"/jobs/{job_id}/cancel")]:
            response = client.request(method, path)
            assert response.status_code == 404
            assert response.json()["detail"] == f"no job {job_id!r} among the jobs you may see"
    with coordinator.client("rita") as client:
        assert [job["job_id"] for job in client.get("/jobs").json()] == [job_id]
        assert client.get(f"/jobs/{job_id}").json()["org"] == "acme"
    assert coordinator.runner.cancelled == []


def test_cancel_ends_a_queued_job_and_asks_a_running_one_to_stop(coordinator: Coordinator) -> None:
    agreements = _registered(coordinator, "node-us")
    queued = _submit(coordinator, submission(coordinator.space, agreements))["job_id"]
    running = _submit(coordinator, submission(coordinator.space, agreements))["job_id"]
    _store(coordinator).set_state(running, JobState.RUNNING)
    with coordinator.client("bea") as client:
        first = client.post(f"/jobs/{queued}/cancel")
        second = client.post(f"/jobs/{running}/cancel")
        again = client.post(f"/jobs/{queued}/cancel")
    assert first.status_code == 202 and first.json()["state"] == "cancelled"
    assert first.json()["reason"] == "cancelled by acme/bea"
    assert second.status_code == 202 and second.json()["state"] == "running"
    assert second.json()["cancel_requested"] is True and _store(coordinator).is_cancel_requested(running)
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]
    assert coordinator.runner.cancelled == [queued, running]
    outcomes = [(e["action"], e["target"], e["outcome"], e["status"]) for e in coordinator.events()]
    assert outcomes[-3:] == [
        ("job.cancel", queued, "ok", 202),
        ("job.cancel", running, "ok", 202),
        ("job.cancel", queued, "refused", 409),
    ]


def _finished(coordinator: Coordinator, agreements: list) -> str:
    job_id = _submit(coordinator, submission(coordinator.space, agreements))["job_id"]
    store = _store(coordinator)
    store.set_state(job_id, JobState.RUNNING)
    store.save_model(job_id, WEIGHTS)
    store.set_state(job_id, JobState.SUCCEEDED)
    return job_id


def test_no_model_download_unless_every_agreement_allows_export(coordinator: Coordinator) -> None:
    agreements = _registered(coordinator, "node-us", "node-eu")  # node-eu's offer never allows export
    job_id = _finished(coordinator, agreements)
    with coordinator.client("bea") as client:
        response = client.get(f"/jobs/{job_id}/model")
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert agreements[1].agreement_id in detail and "model_export" in detail
    assert agreements[0].agreement_id not in detail  # node-us's offer allows export
    event = coordinator.events()[-1]
    assert (event["action"], event["outcome"], event["status"]) == ("model.download", "refused", 403)


def test_the_final_model_downloads_as_saved_once_the_job_succeeded(coordinator: Coordinator) -> None:
    agreements = _registered(coordinator, "node-us")
    running = _submit(coordinator, submission(coordinator.space, agreements))["job_id"]
    _store(coordinator).set_state(running, JobState.RUNNING)
    done = _finished(coordinator, agreements)
    with coordinator.client("bea") as client:
        early = client.get(f"/jobs/{running}/model")
        response = client.get(f"/jobs/{done}/model")
    assert early.status_code == 409 and "no final model: it is running" in early.json()["detail"]
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    with np.load(io.BytesIO(response.content), allow_pickle=False) as archive:
        assert [archive[name].tolist() for name in ("arr_0", "arr_1")] == [w.tolist() for w in WEIGHTS]
    assert response.headers["x-model-sha256"] == _store(coordinator).get(done).model_sha256
    event = coordinator.events()[-1]
    assert (event["action"], event["target"], event["outcome"]) == ("model.download", done, "ok")


def test_each_event_says_who_did_what_with_which_outcome(coordinator: Coordinator) -> None:
    agreements = _registered(coordinator, "node-us")
    body = submission(coordinator.space, agreements)
    _submit(coordinator, body)
    [event] = coordinator.events(body["job_id"])
    assert event["actor"] == {"name": "bea", "org": "acme", "role": "builder"}
    assert (event["action"], event["target"], event["outcome"], event["status"]) == (
        "job.submit",
        body["job_id"],
        "ok",
        201,
    )
    assert (event["dataset"], event["purpose"]) == (body["dataset"], body["purpose"])
    assert event["agreement_id"] == agreements[0].agreement_id
    assert event["time"].endswith("Z") and event["node"] == "coordinator"
