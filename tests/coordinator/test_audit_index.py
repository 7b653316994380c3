"""The regulator's view at the coordinator: every log verified against its signed head and indexed, then
searched by dataset, org, agreement, purpose, decision and time, and summed up per agreement against its
limits. Over real nodes and a real coordinator; one extra node is tampered with while it serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.client import NodeClient, NodeRefused
from node.server import NodeServer
from tests.coordinator._tampered_node import call_node, edit_entry, tampered_coordinator
from tests.coordinator.conftest import DATASET, MATCH_PURPOSE, Coordinator, Space, register


def _sync(coordinator: Coordinator) -> dict[str, dict]:
    with coordinator.client("rita") as rita:
        answer = rita.post("/audit/sync")
    assert answer.status_code == 200, answer.text
    return {item["log"]: item for item in answer.json()}


def _entries(coordinator: Coordinator, **filters: object) -> dict:
    with coordinator.client("rita") as rita:
        answer = rita.get("/audit/entries", params=filters)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_every_log_is_verified_and_indexed_and_an_unreachable_node_says_so(coordinator: Coordinator) -> None:
    with space_client(coordinator.space, "carl", "node-us") as carl:
        carl.list_datasets()
    statuses = _sync(coordinator)
    assert statuses["node-us"]["state"] == "verified" and statuses["node-eu"]["state"] == "verified"
    assert (
        statuses["node-down"]["state"] == "unreachable" and "UNAVAILABLE" in statuses["node-down"]["reason"]
    )
    assert statuses["coordinator"]["kind"] == "coordinator" and statuses["coordinator"]["state"] == "verified"
    us = statuses["node-us"]
    assert us["verified_size"] == us["head"]["tree_size"] > 0
    # The coordinator's own log holds this very sync (recorded once it ended: the next sync indexes it).
    _sync(coordinator)
    own = _entries(coordinator, log="coordinator", method="audit.sync")
    assert own["total"] >= 1 and own["entries"][0]["actor"] == "rita"


def test_a_denial_is_found_with_its_reason_by_org_agreement_and_purpose(coordinator: Coordinator) -> None:
    space = coordinator.space
    agreement = space.agreement("carl", "node-us", "match")
    with space_client(space, "carl", "node-us") as carl, pytest.raises(NodeRefused):
        carl.reveal(agreement, space.record_ids[:1], ["title"])  # a match agreement reveals nothing
    _sync(coordinator)
    found = _entries(
        coordinator, log="node-us", org="acme", agreement=agreement.agreement_id, decision="deny"
    )
    assert found["total"] >= 1
    denial = found["entries"][0]
    assert denial["method"] == "/ipspace.v1.Reveal/Reveal" and denial["status"] == "PERMISSION_DENIED"
    assert "reveal" in denial["reason"] and denial["purpose"] == MATCH_PURPOSE
    assert denial["dataset"] == DATASET
    assert _entries(coordinator, purpose="no-such-purpose")["total"] == 0
    later = _entries(coordinator, since=denial["time"], decision="deny", log="node-us")
    assert denial in later["entries"]


def test_usage_counts_match_queries_against_the_agreements_limits(coordinator: Coordinator) -> None:
    space = coordinator.space
    agreement = space.agreement("carl", "node-us", "match")
    with coordinator.client("carl") as carl:
        assert register(carl, agreement).status_code in (200, 201)
    _sync(coordinator)
    with coordinator.client("rita") as rita:
        usage = {item["agreement_id"]: item for item in rita.get("/audit/usage").json()}
    item = usage[agreement.agreement_id]
    assert item["consumer_org"] == "acme" and item["provider_org"] == "office-us"
    assert item["match_queries_limit"] == 40 and item["match_queries_per_day_limit"] == 20
    assert item["match_queries"] == sum(
        entry["charges"].get("match.queries", 0)
        for entry in _entries(coordinator, agreement=agreement.agreement_id, limit=500)["entries"]
    )
    assert item["revoked_at"] is None and item["epsilon_spent"] == 0.0


@pytest.mark.parametrize("member", ["bea", "carl", "node-us"])
def test_only_a_regulator_reads_the_index(coordinator: Coordinator, member: str) -> None:
    with coordinator.client(member) as client:
        for path in ("/audit/status", "/audit/entries", "/audit/usage"):
            assert client.get(path).status_code == 403, path
        assert client.post("/audit/sync").status_code == 403


def test_a_bad_time_filter_is_refused_with_the_format(coordinator: Coordinator) -> None:
    with coordinator.client("rita") as rita:
        answer = rita.get("/audit/entries", params={"since": "yesterday"})
    assert answer.status_code == 422


@pytest.fixture
def tampered_space(space: Space, tmp_path: Path) -> Iterator[tuple[Coordinator, NodeServer, str]]:
    """A coordinator that also knows a node of its own, which the test tampers with while it serves."""
    with tampered_coordinator(space, tmp_path) as handle:
        yield handle


def test_a_node_serving_an_edited_new_entry_fails_at_that_entry(
    tampered_space: tuple[Coordinator, NodeServer, str],
) -> None:
    coordinator, node, name = tampered_space
    space = coordinator.space
    call_node(space, node, 3)
    verified = _sync(coordinator)[name]
    assert verified["state"] == "verified"
    call_node(space, node, 4)
    edited = verified["verified_size"] + 2  # written after the sync, so not indexed yet
    edit_entry(node, edited)
    status = _sync(coordinator)[name]
    assert status["state"] == "failed", status
    assert status["first_bad_index"] == edited
    assert status["verified_size"] == verified["verified_size"]  # nothing of the bad batch was indexed
    assert _sync(coordinator)[name]["state"] == "failed"  # and it stays failed


def test_a_full_sync_catches_an_entry_edited_after_it_was_indexed(
    tampered_space: tuple[Coordinator, NodeServer, str],
) -> None:
    coordinator, node, name = tampered_space
    call_node(coordinator.space, node, 3)
    assert _sync(coordinator)[name]["state"] == "verified"
    edit_entry(node, 0)
    assert _sync(coordinator)[name]["state"] == "verified"  # only new entries are fetched
    with coordinator.client("rita") as rita:
        statuses = {item["log"]: item for item in rita.post("/audit/sync", params={"full": "true"}).json()}
    assert statuses[name]["state"] == "failed"
    assert statuses[name]["first_bad_index"] == 0


def space_client(space: Space, member: str, node: str, *, port: int | None = None) -> NodeClient:
    address = f"127.0.0.1:{port}" if port is not None else space.node_addresses[node]
    return NodeClient(address, space.identity(member), space.token(member))
