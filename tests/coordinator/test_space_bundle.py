"""The whole data space in one bundle: a regulator exports the coordinator's log, every node's log (straight
from the nodes) and the coordinator's kept heads and alerts, then verifies it offline with the CA alone."""

from __future__ import annotations

import json
from pathlib import Path

from audit.space_bundle import NODES_DIR, is_space_bundle, verify_space
from ipspace.coordinator_client import CoordinatorClient
from ipspace.space_export import export_space
from node.head_pusher import HeadPusher
from tests.coordinator._forged_logs import catalog_entry, forged_log
from tests.coordinator.conftest import Coordinator


def _regulator(coordinator: Coordinator) -> CoordinatorClient:
    space = coordinator.space
    return CoordinatorClient(coordinator.base_url, space.members["rita"], space.token("rita"))


def _export(coordinator: Coordinator, out: Path, *, nodes: tuple[str, ...] = ("node-us", "node-eu")):
    space = coordinator.space
    with _regulator(coordinator) as regulator:
        return export_space(
            out,
            coordinator=regulator,
            nodes={name: space.node_addresses[name] for name in nodes},
            identity=space.identity("rita"),
            token=space.token("rita"),
        )


def _collect_twice(coordinator: Coordinator) -> None:
    with _regulator(coordinator) as regulator:
        regulator.collect_heads()
        regulator.collect_heads()


def test_an_honest_data_space_verifies_with_the_ca_alone(coordinator: Coordinator, tmp_path: Path) -> None:
    _collect_twice(coordinator)
    exported = _export(coordinator, tmp_path / "space")
    assert is_space_bundle(tmp_path / "space")
    assert set(exported.node_entries) == {"node-us", "node-eu"}
    assert exported.not_exported == {}  # node-down never answered, so the coordinator keeps no head of it
    verdict = verify_space(tmp_path / "space", coordinator.space.local.ca.cert_pem)
    by_name = {part.name: part for part in verdict.parts}
    assert by_name["node-us"].ok and by_name["node-eu"].ok and by_name["coordinator"].ok
    assert by_name["coordinator"].summary.entries == exported.coordinator_entries > 0
    # The coordinator kept two heads of each node; both went into the node's bundle with the node's proofs.
    assert by_name["node-us"].summary.heads >= 2
    assert verdict.ok and verdict.failing == []


def test_an_edited_node_entry_names_that_node_and_the_entry(coordinator: Coordinator, tmp_path: Path) -> None:
    _collect_twice(coordinator)
    _export(coordinator, tmp_path / "space")
    entries = tmp_path / "space" / NODES_DIR / "node-eu" / "entries.jsonl"
    lines = entries.read_bytes().splitlines()
    lines[1] = lines[1].replace(b'"decision":"allow"', b'"decision":"deny"')
    entries.write_bytes(b"".join(line + b"\n" for line in lines))
    verdict = verify_space(tmp_path / "space", coordinator.space.local.ca.cert_pem)
    failing = {part.name: part for part in verdict.parts if not part.ok}
    assert set(failing) == {"node-eu"}
    assert failing["node-eu"].first_bad_index == 1


def test_an_equivocating_node_fails_by_the_alert_it_raised(coordinator: Coordinator, tmp_path: Path) -> None:
    space = coordinator.space
    node = space.identity("node-us")
    _collect_twice(coordinator)
    with _regulator(coordinator) as regulator:
        size = regulator.kept_heads("node-us")[-1]["head"]["tree_size"]
    # A second log of the same size, signed with the node's key, pushed by the node: two roots for one size.
    entries = [catalog_entry(n, "node-us", variant="-forged") for n in range(size)]
    with forged_log(tmp_path / "other.db", node, entries) as other:
        pusher = HeadPusher(other, coordinator.base_url, space.members["node-us"], interval_s=3600)
        assert pusher.push_now().verdict == "equivocation"
    _export(coordinator, tmp_path / "space")
    verdict = verify_space(tmp_path / "space", space.local.ca.cert_pem)
    part = {part.name: part for part in verdict.parts}["node-us"]
    assert not part.ok and part.summary is not None  # its log verifies; the alert alone convicts it
    assert any("holds" in problem and "two different roots" in problem for problem in part.problems)
    assert verdict.alerts_upheld == 1


def test_an_alert_that_does_not_hold_is_held_against_the_coordinator(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    _collect_twice(coordinator)
    _export(coordinator, tmp_path / "space")
    gossip_file = tmp_path / "space" / "gossip.json"
    gossip = json.loads(gossip_file.read_text())
    first, second = gossip["heads"]["node-eu"][:2]
    # Two honest heads of node-eu, presented as a fork: the node's own log extends both, so the claim fails.
    gossip["alerts"] = [{"alert_id": 7, "head": second, "conflicting": first, "proof": []}]
    gossip_file.write_text(json.dumps(gossip))
    verdict = verify_space(tmp_path / "space", coordinator.space.local.ca.cert_pem)
    parts = {part.name: part for part in verdict.parts}
    assert parts["node-eu"].ok
    assert not parts["coordinator"].ok
    assert "alert #7 does not hold" in parts["coordinator"].problems[0]


def test_a_node_left_out_of_the_export_fails_the_space(coordinator: Coordinator, tmp_path: Path) -> None:
    _collect_twice(coordinator)
    exported = _export(coordinator, tmp_path / "space", nodes=("node-us",))
    assert exported.not_exported == {"node-eu": "no address was given for it"}
    verdict = verify_space(tmp_path / "space", coordinator.space.local.ca.cert_pem)
    assert verdict.failing == ["node-eu"]
    assert "not exported" in {part.name: part for part in verdict.parts}["node-eu"].problems[0]
