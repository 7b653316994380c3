"""Tree-head gossip over real sockets: nodes push signed heads to a real coordinator over mTLS, the
coordinator pulls them from real nodes, and a regulator compares what a node shows it with what the
coordinator kept.

A node that equivocates is played by a second audit log signed with the real node's own key (what a dishonest
provider could run beside its served log); a rolled-back node by a log restored from fewer entries.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from audit import AuditEntry, AuditLog, SignedTreeHead, verify_tree_head
from audit.gossip import Verdict
from contracts.client import NodeClient
from contracts.offers import Action, Constraints, Offer
from ipspace.coordinator_client import CoordinatorClient
from ipspace.head_check import check_node
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from node.head_pusher import HeadPusher
from node.partition import Partition, read_rows, write_partitions
from node.server import NodeServer
from tests.coordinator._forged_logs import catalog_entry, forged_log
from tests.coordinator.conftest import Coordinator

WAIT_S = 20.0


def _entry(n: int, *, variant: str = "") -> AuditEntry:
    return catalog_entry(n, "node-us", variant=variant)


def _pusher(coordinator: Coordinator, log: AuditLog, member: str) -> HeadPusher:
    return HeadPusher(log, coordinator.base_url, coordinator.space.members[member], interval_s=3600)


def _regulator(coordinator: Coordinator) -> CoordinatorClient:
    space = coordinator.space
    return CoordinatorClient(coordinator.base_url, space.members["rita"], space.token("rita"))


def test_a_node_pushes_its_heads_and_each_new_one_is_proven_consistent(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    node = coordinator.space.identity("node-us")
    with forged_log(tmp_path / "node.db", node, [_entry(i) for i in range(10)]) as log:
        pusher = _pusher(coordinator, log, "node-us")
        first = pusher.push_now()
        assert (first.status, first.verdict) == (201, "consistent")
        for i in range(10, 25):
            log.append(_entry(i))
        grown = pusher.push_now()  # the coordinator asks (428) for a proof from 10 to 25; the pusher gives it
        assert (grown.status, grown.verdict) == (201, "consistent"), grown.detail
        assert pusher.push_now().status == 200  # nothing new: not pushed again
    with _regulator(coordinator) as regulator:
        kept = regulator.kept_heads("node-us")
        summary = {item["node"]: item for item in regulator.head_summary()}
    assert [item["head"]["tree_size"] for item in kept] == [10, 25]
    assert all(item["source"] == "pushed by node-us" for item in kept)
    assert summary["node-us"]["latest"]["head"]["tree_size"] == 25
    assert summary["node-us"]["alerts"] == 0


def test_a_node_showing_the_regulator_another_log_than_the_coordinator_is_caught(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    space = coordinator.space
    at_node = NodeClient(space.node_addresses["node-us"], space.identity("rita"), space.token("rita"))
    with at_node, _regulator(coordinator) as regulator:
        for _ in range(3):
            at_node.list_datasets()  # the served log now holds at least 3 entries
        # node-us shows the coordinator a log of its own making, signed with its real key ...
        with forged_log(tmp_path / "shown.db", space.identity("node-us"), [_entry(0), _entry(1)]) as shown:
            assert _pusher(coordinator, shown, "node-us").push_now().status == 201
        # ... and the regulator the log its server really keeps: the node's own consistency proof from size 2
        # leads to its real roots, not to the root it showed the coordinator.
        check = check_node(at_node, regulator, space.local.ca.cert_pem)
        alerts = regulator.alerts()
    assert check.judgement.verdict is Verdict.FORK, check.judgement
    assert check.agrees and check.coordinator_status == 409
    assert check.kept == 1 and check.head.tree_size >= 3
    [alert] = alerts
    assert alert["node"] == "node-us" and alert["kind"] == "fork"
    assert alert["source"] == "observed by ip-authority/rita"
    # The evidence is the node's own: both heads are signed by it and verify against the CA alone.
    for key in ("head", "conflicting"):
        verify_tree_head(SignedTreeHead.from_dict(alert[key]), space.local.ca.cert_pem)
    assert alert["conflicting"]["tree_size"] == 2


def test_a_regulator_finds_an_honest_node_consistent_with_the_coordinator(coordinator: Coordinator) -> None:
    space = coordinator.space
    at_node = NodeClient(space.node_addresses["node-eu"], space.identity("rita"), space.token("rita"))
    with at_node, _regulator(coordinator) as regulator:
        regulator.collect_heads()
        at_node.list_datasets()
        check = check_node(at_node, regulator, space.local.ca.cert_pem)
        assert regulator.alerts() == []
    assert check.judgement.verdict is Verdict.CONSISTENT and check.agrees
    assert check.coordinator_status == 201


def test_two_roots_for_one_size_raise_an_equivocation_alert(coordinator: Coordinator, tmp_path: Path) -> None:
    node = coordinator.space.identity("node-us")
    with forged_log(tmp_path / "a.db", node, [_entry(i) for i in range(12)]) as honest:
        assert _pusher(coordinator, honest, "node-us").push_now().status == 201
    with forged_log(tmp_path / "b.db", node, [_entry(i, variant="-other") for i in range(12)]) as other:
        outcome = _pusher(coordinator, other, "node-us").push_now()
    assert (outcome.status, outcome.verdict) == (409, "equivocation")
    assert "two different roots for size 12" in outcome.detail
    with _regulator(coordinator) as regulator:
        [alert] = regulator.alerts()
        kept = regulator.kept_heads("node-us")
    assert alert["kind"] == "equivocation"
    assert [item["head"]["root_hash"] for item in kept] == [alert["conflicting"]["root_hash"]]  # not replaced


def test_a_rolled_back_log_raises_a_rollback_alert(coordinator: Coordinator, tmp_path: Path) -> None:
    node = coordinator.space.identity("node-us")
    entries = [_entry(i) for i in range(30)]
    with forged_log(tmp_path / "full.db", node, entries) as full:
        assert _pusher(coordinator, full, "node-us").push_now().status == 201
    # Restored from a backup of 20 entries, then serving again: its next head is smaller and later.
    with forged_log(
        tmp_path / "restored.db", node, [*entries[:20], _entry(99, variant="-after")]
    ) as restored:
        outcome = _pusher(coordinator, restored, "node-us").push_now()
    assert (outcome.status, outcome.verdict) == (409, "rollback")
    assert "lost entries" in outcome.detail


def test_a_grown_head_over_a_rewritten_history_is_a_fork(coordinator: Coordinator, tmp_path: Path) -> None:
    node = coordinator.space.identity("node-us")
    with forged_log(tmp_path / "a.db", node, [_entry(i) for i in range(20)]) as honest:
        assert _pusher(coordinator, honest, "node-us").push_now().status == 201
    rewritten = [_entry(i) for i in range(5)] + [_entry(i, variant="-edited") for i in range(5, 32)]
    with forged_log(tmp_path / "b.db", node, rewritten) as forked:
        outcome = _pusher(coordinator, forked, "node-us").push_now()  # its own proof, from its own tree
    assert (outcome.status, outcome.verdict) == (409, "fork")


def test_the_coordinator_pulls_fresh_heads_from_every_node_on_demand(coordinator: Coordinator) -> None:
    with _regulator(coordinator) as regulator:
        first = {item["node"]: item for item in regulator.collect_heads()}
        second = {item["node"]: item for item in regulator.collect_heads()}
        kept = regulator.kept_heads("node-eu")
    for node in ("node-us", "node-eu"):
        assert first[node]["receipt"]["verdict"] in ("consistent", "known")
        # The first pull was itself recorded at the node, so the second head is larger and needs a proof.
        assert second[node]["receipt"]["verdict"] == "consistent", second[node]
    assert first["node-down"]["receipt"] is None and "UNAVAILABLE" in first["node-down"]["error"]
    assert len(kept) >= 2


def test_a_node_may_push_only_its_own_heads(coordinator: Coordinator, tmp_path: Path) -> None:
    node = coordinator.space.identity("node-us")
    with forged_log(tmp_path / "a.db", node, [_entry(i) for i in range(3)]) as log:
        head = log.sign_head()
    with coordinator.client("node-eu") as node_eu:
        refused = node_eu.post("/audit/heads", json={"head": head.to_dict()})
    assert refused.status_code == 403
    assert "only its own tree heads" in refused.json()["detail"]


def test_a_forged_head_is_refused_with_the_reason(coordinator: Coordinator, tmp_path: Path) -> None:
    node = coordinator.space.identity("node-us")
    with forged_log(tmp_path / "a.db", node, [_entry(i) for i in range(3)]) as log:
        head = log.sign_head().to_dict()
    head["tree_size"] = 4  # no longer what was signed
    with coordinator.client("node-us") as node_us:
        refused = node_us.post("/audit/heads", json={"head": head})
    assert refused.status_code == 400
    assert "does not verify" in refused.json()["detail"]


@pytest.mark.parametrize("member", ["bea", "carl", "node-us"])
def test_only_a_regulator_reads_the_heads_and_alerts(coordinator: Coordinator, member: str) -> None:
    with coordinator.client(member) as client:
        for path in ("/audit/heads", "/audit/alerts", "/audit/heads/node-us"):
            assert client.get(path).status_code == 403, path
        assert client.post("/audit/heads/collect").status_code == 403


def test_a_served_node_pushes_its_heads_on_its_own_schedule(coordinator: Coordinator, tmp_path: Path) -> None:
    space = coordinator.space
    header, rows = read_rows(LENS_FAMILIES)
    csv_path = write_partitions([Partition("node-gossip", ("US",), tuple(rows[:20]))], tmp_path, header)
    offer = Offer(
        offer_id="catalog",
        provider_org="office-gossip",
        dataset="families",
        actions=(Action.REVEAL,),
        constraints=Constraints(purposes=("research",), reveal_fields=("title",)),
    )
    directory = space.local.init_node(
        "node-gossip",
        "office-gossip",
        offers=[offer],
        datasets={"families": (csv_path["node-gossip"], LENS_ID_FIELD, "families", LENS_SOURCE)},
    )
    server = NodeServer(directory, push_heads_to=coordinator.base_url, push_interval_s=0.3)
    port = server.start()
    try:
        with NodeClient(f"127.0.0.1:{port}", space.identity("carl"), space.token("carl")) as client:
            client.list_datasets()
            with _regulator(coordinator) as regulator:
                sizes = _wait_for_heads(regulator, "node-gossip", count=1)
                client.list_datasets()  # the log grows: the next scheduled push brings a larger head
                sizes = _wait_for_heads(regulator, "node-gossip", count=len(sizes) + 1)
        assert sizes == sorted(sizes) and sizes[-1] >= 2
        assert server.push_heads_now().accepted
    finally:
        server.stop()


def _wait_for_heads(regulator: CoordinatorClient, node: str, *, count: int) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        sizes = [item["head"]["tree_size"] for item in regulator.kept_heads(node)]
        if len(sizes) >= count:
            return sizes
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} heads of {node} kept after {WAIT_S:g}s")
