"""GET /jobs/{id}/valuation and POST /jobs/{id}/valuations: a succeeded job's model values a consumer's
encrypted features; only the consumer's key reads the answer, and the coordinator refuses what the
agreements, the job's state, the budget or the input do not allow, each refusal on record.

Real nodes' identities sign the agreements (tests/coordinator/conftest.py), the real coordinator serves over
HTTPS with client certificates, and the job is submitted through the API; its model is saved through the job
store, as the ServerApp saves it, so no Flower run is needed. The model is the valuation network's fresh
weights (`initial_weights`): what is tested is that the coordinator computes the head of whatever model the
job holds, exactly as the plaintext head does.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contracts.agreements import Agreement, countersign, propose
from contracts.offers import Action, Constraints, Offer
from contracts.terms import terms_from_offer
from coordinator.job_spec import JobState
from coordinator.jobs import JobStore
from crypto.ckks import CkksParameters, ConsumerKeys
from ipspace.sample_data import DATA_DIR
from ipspace.valuation_query import read_patent, valuation_request
from models.valuation.encrypted import decrypt_value, valuation_keys
from models.valuation.features import extract_features
from models.valuation.he_head import PolynomialHead
from models.valuation.wire import initial_weights
from tests.coordinator.conftest import (
    DATASET,
    NODES,
    PURPOSE,
    Coordinator,
    FakeRunner,
    Space,
    coordinator_settings,
    register,
    serve,
    submission,
)

EXAMPLE_PATENT = DATA_DIR / "valuation_example_patent.json"
REFERENCE_YEAR = 2017  # the conftest's training settings keep TrainingSettings' default year
WEIGHTS_SEED = 11


def _agreement(space: Space, node: str, *, valuate: bool = True, **limits: int) -> Agreement:
    """An agreement of acme's builder with `node` on a training offer, signed by both (as the node would)."""
    actions = (Action.TRAIN, Action.VALUATE) if valuate else (Action.TRAIN,)
    offer = Offer(
        offer_id="train-valuate" if valuate else "train-only",
        provider_org=NODES[node][0],
        dataset=DATASET,
        actions=actions,
        constraints=Constraints(purposes=(PURPOSE,), model_export=True, **limits),
    )
    terms = terms_from_offer(offer, consumer_org="acme", consumer_name="bea", purpose=PURPOSE)
    return countersign(propose(terms, space.identity("bea")), space.identity(node))


def _job(coordinator: Coordinator, agreements: list[Agreement], *, succeed: bool = True) -> str:
    """A job of acme over `agreements`, submitted through the API; with `succeed`, its model saved and the job
    succeeded through the job store, as the ServerApp does at the end of a run."""
    with coordinator.client("bea") as client:
        for agreement in agreements:
            assert register(client, agreement).status_code in (200, 201)
        response = client.post("/jobs", json=submission(coordinator.space, agreements))
        assert response.status_code == 201, response.text
    job_id = response.json()["job_id"]
    if succeed:
        store = JobStore(coordinator.settings.database, coordinator.settings.models_dir)
        store.set_state(job_id, JobState.RUNNING)
        store.save_model(job_id, initial_weights(WEIGHTS_SEED))
        store.set_state(job_id, JobState.SUCCEEDED)
    return job_id


@pytest.fixture(scope="module")
def keys() -> ConsumerKeys:
    return valuation_keys()


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return extract_features(read_patent(EXAMPLE_PATENT), reference_year=REFERENCE_YEAR)


@pytest.fixture(scope="module")
def body(keys: ConsumerKeys, features: np.ndarray) -> dict[str, str]:
    """A well-formed query body (38 MB of evaluation keys, base64): built once, sent by several tests."""
    return valuation_request({"parameter_set": "ckks-valuation-n16384-v1"}, keys, features)


# The refusals that come before the consumer's bytes are decoded (job, agreements, budget) are sent this
# small body: the 38 MB of keys would change nothing but the time the test takes.
SMALL_BODY = {"parameter_set": "ckks-valuation-n16384-v1", "evaluation_keys": "AAAA", "features": "AAAA"}


def _valuate(coordinator: Coordinator, member: str, job_id: str, body: dict) -> tuple[int, dict]:
    with coordinator.client(member) as client:
        response = client.post(f"/jobs/{job_id}/valuations", json=body, timeout=120)
    return response.status_code, response.json()


def _left(coordinator: Coordinator, job_id: str) -> tuple[int, int]:
    with coordinator.client("carl") as client:
        terms = client.get(f"/jobs/{job_id}/valuation").json()
    return terms["queries_left_today"], terms["queries_left_total"]


def _valuate_events(coordinator: Coordinator) -> list[dict]:
    return [event for event in coordinator.events() if event["action"] == "query.valuate"]


def test_a_served_valuation_decrypts_to_the_plaintext_head_s_value(
    coordinator: Coordinator, keys: ConsumerKeys, features: np.ndarray, body: dict
) -> None:
    job_id = _job(
        coordinator, [_agreement(coordinator.space, "node-us"), _agreement(coordinator.space, "node-eu")]
    )
    with coordinator.client("carl") as client:
        terms = client.get(f"/jobs/{job_id}/valuation")
    assert terms.status_code == 200, terms.text
    assert terms.json()["reference_year"] == REFERENCE_YEAR
    assert terms.json()["rotation_steps"] == list(keys.rotation_steps)
    assert (terms.json()["queries_left_today"], terms.json()["queries_left_total"]) == (20, 100)  # defaults

    status, answer = _valuate(coordinator, "carl", job_id, body)
    assert status == 200, answer
    value = decrypt_value(keys, base64.b64decode(answer["value"]))
    expected = PolynomialHead.from_weights(initial_weights(WEIGHTS_SEED)).predict(features)[0]
    assert abs(value - expected) <= 1e-3
    assert (answer["queries_left_today"], answer["queries_left_total"]) == (19, 99)
    [event] = _valuate_events(coordinator)
    assert (event["outcome"], event["target"], event["actor"]["name"]) == ("ok", job_id, "carl")


def test_a_model_is_not_served_when_an_agreement_lacks_valuate(coordinator: Coordinator) -> None:
    space = coordinator.space
    job_id = _job(coordinator, [_agreement(space, "node-us"), _agreement(space, "node-eu", valuate=False)])
    status, refusal = _valuate(coordinator, "carl", job_id, SMALL_BODY)
    assert status == 403
    assert (
        "every agreement it trained under is registered, unexpired and lists the action 'valuate'"
        in (refusal["detail"])
    )
    assert "does not list 'valuate' (it lists: train)" in refusal["detail"]
    [event] = _valuate_events(coordinator)
    assert (event["outcome"], event["status"]) == ("refused", 403)


def test_a_job_that_has_not_succeeded_answers_no_valuation(coordinator: Coordinator) -> None:
    job_id = _job(coordinator, [_agreement(coordinator.space, "node-us")], succeed=False)
    status, refusal = _valuate(coordinator, "carl", job_id, SMALL_BODY)
    assert status == 409
    assert refusal["detail"] == f"job {job_id!r} has no final model to value with: it is queued"


def test_a_job_whose_model_is_not_the_valuation_network_answers_no_valuation(
    coordinator: Coordinator,
) -> None:
    job_id = _job(coordinator, [_agreement(coordinator.space, "node-us")], succeed=False)
    store = JobStore(coordinator.settings.database, coordinator.settings.models_dir)
    store.set_state(job_id, JobState.RUNNING)
    store.save_model(job_id, [np.zeros((128, 384), dtype=np.float32)])  # a matching head's shape
    store.set_state(job_id, JobState.SUCCEEDED)
    status, refusal = _valuate(coordinator, "carl", job_id, SMALL_BODY)
    assert status == 409 and "the valuation network's are" in refusal["detail"], refusal


def test_another_org_s_job_and_an_unknown_job_read_the_same(coordinator: Coordinator) -> None:
    job_id = _job(coordinator, [_agreement(coordinator.space, "node-us")])
    other_org = _valuate(coordinator, "gil", job_id, SMALL_BODY)
    unknown = _valuate(coordinator, "carl", "job-does-not-exist", SMALL_BODY)
    assert other_org[0] == unknown[0] == 404
    assert other_org[1]["detail"].replace(job_id, "X") == unknown[1]["detail"].replace(
        "job-does-not-exist", "X"
    )


def test_a_regulator_sends_no_valuations_and_the_refusal_is_recorded(coordinator: Coordinator) -> None:
    with coordinator.client("rita") as client:
        response = client.post("/jobs/any/valuations", json=SMALL_BODY)
    assert response.status_code == 403
    [event] = _valuate_events(coordinator)
    assert (event["outcome"], event["actor"]["role"]) == ("refused", "regulator")


@pytest.fixture(scope="module")
def open_job(shared_coordinator: Coordinator) -> str:
    """A succeeded job whose budget the malformed queries below must leave untouched."""
    return _job(shared_coordinator, [_agreement(shared_coordinator.space, "node-us")])


@pytest.mark.parametrize(
    ("real_keys", "change", "status", "fragment"),
    [
        (False, {"features": "not base64!"}, 400, "features is not base64"),
        (False, {"parameter_set": "ckks-n8192"}, 400, "unknown parameter set 'ckks-n8192'"),
        (
            False,
            {"evaluation_keys": base64.b64encode(os.urandom(4096)).decode()},
            400,
            "not a valid set of Galois keys",
        ),
        (
            True,
            {"features": base64.b64encode(b"\xa1\x5e" + os.urandom(512)).decode()},
            400,
            "not a valid ciphertext",
        ),
        (False, {"features": "QUJD" * (4 * 2**20 // 3 + 2)}, 422, "at most"),
        (False, {"features": None}, 422, "features"),
    ],
    ids=["not-base64", "other-parameter-set", "not-keys", "not-a-ciphertext", "too-large", "missing"],
)
def test_a_malformed_query_is_refused_with_the_reason_recorded_and_charges_nothing(
    shared_coordinator: Coordinator,
    open_job: str,
    body: dict,
    real_keys: bool,
    change: dict,
    status: int,
    fragment: str,
) -> None:
    base = body if real_keys else SMALL_BODY
    malformed = {key: value for key, value in {**base, **change}.items() if value is not None}
    before = [event for event in _valuate_events(shared_coordinator) if open_job in event["target"]]
    answer = _valuate(shared_coordinator, "carl", open_job, malformed)
    assert answer[0] == status and fragment in str(answer[1]["detail"]), answer
    events = [event for event in _valuate_events(shared_coordinator) if open_job in event["target"]]
    assert [(event["outcome"], event["status"]) for event in events[len(before) :]] == [("refused", status)]
    assert _left(shared_coordinator, open_job) == (20, 100)


def test_keys_or_a_query_of_the_matching_parameters_are_refused(
    shared_coordinator: Coordinator, open_job: str, body: dict, features: np.ndarray
) -> None:
    matching_keys = ConsumerKeys.generate(CkksParameters(), (1, 8))
    matching_keys_bytes = base64.b64encode(matching_keys.evaluation_keys()).decode()
    matching_query = base64.b64encode(matching_keys.encrypt(np.resize(features, 4096))).decode()
    for change, fragment in (
        ({"evaluation_keys": matching_keys_bytes}, "not a valid set of Galois keys for these parameters"),
        ({"features": matching_query}, "not a valid ciphertext for these parameters"),
    ):
        status, refusal = _valuate(shared_coordinator, "carl", open_job, {**body, **change})
        assert status == 400 and fragment in refusal["detail"], refusal
    assert _left(shared_coordinator, open_job) == (20, 100)


def test_a_spent_budget_is_refused_with_when_it_resets_and_stays_spent_across_a_restart(
    space: Space, tmp_path: Path, body: dict
) -> None:
    settings = coordinator_settings(space, tmp_path / "coordinator", with_down_node=False)
    first = serve(space, settings, FakeRunner())
    try:
        tight = _agreement(space, "node-us", valuation_queries_per_day=1, valuation_queries_total=5)
        job_id = _job(first, [tight, _agreement(space, "node-eu")])  # the tighter agreement holds
        assert _valuate(first, "carl", job_id, body)[0] == 200
        status, refusal = _valuate(first, "carl", job_id, SMALL_BODY)
    finally:
        first.server.stop()
    assert status == 429
    assert "all 1 valuation queries this model allows your org per UTC day are used" in refusal["detail"]
    assert "resets at" in refusal["detail"] and "with 4 left in total" in refusal["detail"]

    second = serve(space, settings, FakeRunner())
    try:
        status, refusal = _valuate(second, "bea", job_id, SMALL_BODY)  # the org's count, whoever asks
        left = _left(second, job_id)
    finally:
        second.server.stop()
    assert status == 429 and "per UTC day are used" in refusal["detail"]
    assert left == (0, 4)
    events = [event for event in second.events(job_id) if event["action"] == "query.valuate"]
    assert [(event["outcome"], event["status"]) for event in events] == [
        ("ok", 200),
        ("refused", 429),
        ("refused", 429),
    ]


def test_ipspace_valuate_prints_the_value_the_plaintext_head_gives(
    coordinator: Coordinator, features: np.ndarray
) -> None:
    space = coordinator.space
    job_id = _job(coordinator, [_agreement(space, "node-us")])
    result = subprocess.run(
        [
            sys.executable, "-m", "ipspace", "valuate", str(EXAMPLE_PATENT), "--job", job_id,
            "--coordinator", coordinator.base_url, "--identity", str(space.members["carl"]),
        ],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    expected = PolynomialHead.from_weights(initial_weights(WEIGHTS_SEED)).predict(features)[0]
    printed = float(result.stdout.split("value ", 1)[1].split()[0])
    assert abs(printed - expected) <= 1e-3  # printed to 3 decimals
    assert "19 today, 99 in total" in result.stdout
    secret = space.members["carl"] / "ckks" / "valuation" / "ckks-secret.key"
    assert secret.stat().st_mode & 0o077 == 0


def test_the_demo_s_valuation_step_sets_the_decrypted_value_beside_both_plaintext_models(
    coordinator: Coordinator, features: np.ndarray
) -> None:
    from rich.console import Console

    from coordinator.model_files import load_model
    from ipspace.demo_valuation import run_encrypted_valuation
    from models.valuation.he_head import relu_predict

    job_id = _job(coordinator, [_agreement(coordinator.space, "node-us")])
    record = JobStore(coordinator.settings.database, coordinator.settings.models_dir).get(job_id)
    model_file = coordinator.settings.models_dir / str(record.model_file)
    console = Console(record=True, width=160)
    outcome = run_encrypted_valuation(
        coordinator.space.members["carl"], coordinator.base_url, job_id, model_file, console
    )
    weights = load_model(model_file)
    assert outcome.publication_number == "US 9075415 B2"
    assert outcome.head == pytest.approx(PolynomialHead.from_weights(weights).predict(features)[0], abs=1e-12)
    assert outcome.relu == pytest.approx(relu_predict(weights, features[None, :])[0], abs=1e-12)
    assert abs(outcome.encrypted - outcome.head) <= 1e-3
    printed = console.export_text()
    assert "held out from training" in printed and "polynomial replacement" in printed
