"""The federated catalog (live from real nodes, one of them down) and the agreement registry, over mTLS."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from contracts.agreements import Agreement, propose
from ipspace.sample_data import LENS_ID_FIELD
from tests.coordinator.conftest import (
    DATASET,
    Coordinator,
    FakeRunner,
    coordinator_settings,
    register,
    serve,
)


def test_the_catalog_lists_every_node_and_marks_the_one_that_is_down(coordinator: Coordinator) -> None:
    with coordinator.client("carl") as client:
        response = client.get("/catalog")
    assert response.status_code == 200
    nodes = {entry["node"]: entry for entry in response.json()["nodes"]}
    assert list(nodes) == ["node-us", "node-eu", "node-down"]  # the configured order
    assert "did not answer" in nodes["node-down"]["error"] and nodes["node-down"]["datasets"] == []
    for name in ("node-us", "node-eu"):
        entry = nodes[name]
        assert entry["error"] is None
        [dataset] = entry["datasets"]
        assert (dataset["name"], dataset["row_count"]) == (DATASET, 120)
        assert {stats["name"] for stats in dataset["statistics"]} == set(dataset["fields"])
        assert dataset["mock_rows"] and all(
            row[LENS_ID_FIELD].startswith("mock-") for row in dataset["mock_rows"]
        )
        assert {offer["offer"]["offer_id"] for offer in entry["offers"]} == {
            "train",
            "train-dp",
            "train-licensing",
            "reveal",
            "match",
        }
        assert all(offer["offer_digest"].startswith("sha256:") for offer in entry["offers"])


def test_the_catalog_carries_no_real_record(coordinator: Coordinator) -> None:
    with coordinator.client("bea") as client:
        text = client.get("/catalog").text
    leaked = [record_id for record_id in coordinator.space.record_ids if record_id in text]
    assert leaked == []


def test_without_its_own_token_the_coordinator_says_so(coordinator: Coordinator, tmp_path: Path) -> None:
    settings = coordinator_settings(coordinator.space, tmp_path / "no-token").model_copy(
        update={"token_file": tmp_path / "missing-token"}
    )
    handle = serve(coordinator.space, settings, FakeRunner())
    try:
        with handle.client("bea") as client:
            response = client.get("/catalog")
    finally:
        handle.server.stop()
    assert response.status_code == 503 and "cannot read the coordinator's token" in response.json()["detail"]


def test_either_party_registers_an_agreement_once(coordinator: Coordinator) -> None:
    agreement = coordinator.space.agreement("bea", "node-eu")
    with coordinator.client("node-eu") as provider, coordinator.client("bea") as consumer:
        first = register(provider, agreement)
        second = register(consumer, agreement)
        listed_by_provider = provider.get("/agreements").json()
        listed_by_consumer = consumer.get("/agreements").json()
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()  # the first registration stands
    assert first.json()["registered_by"] == "office-eu/node-eu"
    assert Agreement.model_validate(first.json()["agreement"]) == agreement
    assert [entry["agreement_id"] for entry in listed_by_provider] == [agreement.agreement_id]
    assert [entry["agreement_id"] for entry in listed_by_consumer] == [agreement.agreement_id]
    with coordinator.client("gil") as outsider:
        assert outsider.get("/agreements").json() == []


def test_a_third_party_may_not_register_someone_elses_agreement(coordinator: Coordinator) -> None:
    agreement = coordinator.space.agreement("bea", "node-us")
    with coordinator.client("gil") as client:
        response = register(client, agreement)
    assert response.status_code == 403
    assert "only the agreement's parties may register it" in response.json()["detail"]


def test_an_agreement_whose_signatures_do_not_hold_is_400(coordinator: Coordinator) -> None:
    space = coordinator.space
    agreement = space.agreement("bea", "node-us")
    later = agreement.terms.created_at + timedelta(seconds=1)  # still valid terms, but not the signed ones
    altered = agreement.model_copy(update={"terms": agreement.terms.model_copy(update={"created_at": later})})
    half_signed = propose(agreement.terms, space.identity("bea"))
    with coordinator.client("bea") as client:
        for candidate, expected in [
            (altered, "signature does not match"),
            (half_signed, "needs a consumer and a provider signature"),
        ]:
            response = register(client, candidate)
            assert response.status_code == 400, response.text
            assert "signatures do not hold" in response.json()["detail"]
            assert expected in response.json()["detail"]
        assert client.get("/agreements").json() == []


def test_a_malformed_agreement_is_422(coordinator: Coordinator) -> None:
    with coordinator.client("bea") as client:
        response = client.post("/agreements", json={"terms": {"offer_id": "train"}})
    assert response.status_code == 422
