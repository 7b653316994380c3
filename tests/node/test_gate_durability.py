"""No access without its entry, no budget spent twice, and the standard health and reflection services."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from audit import AuditCorrupted, leaf_hash
from contracts.client import NodeRefused
from crypto import channel_credentials
from ipspace.sample_data import LENS_ID_FIELD, LENS_SOURCE
from node.config import NodeConfigError
from node.server import NodeServer
from tests.node.conftest import PER_REQUEST, PROVIDER_ORG, TOTAL, Space, offers


@pytest.fixture
def own_node(space: Space) -> Iterator[tuple[Space, NodeServer]]:
    """A node of its own (same org, data, offers): a test may break it without touching the shared one."""
    csv_path = space.root / "data" / "sample.csv"
    node_dir = space.local.init_node(
        f"node-{len(list((space.root / 'nodes').iterdir()))}",
        PROVIDER_ORG,
        offers=offers(),
        datasets={"families": (csv_path, LENS_ID_FIELD, "EP patent families on drones", LENS_SOURCE)},
    )
    server = NodeServer(node_dir)
    port = server.start()
    try:
        yield replace(space, node_dir=node_dir, address=f"127.0.0.1:{port}"), server
    finally:
        server.stop()


def test_a_second_server_on_the_same_node_directory_is_refused(own_node) -> None:
    node_space, _server = own_node
    with pytest.raises(NodeConfigError, match="in use"):
        NodeServer(node_space.node_dir).start()


def test_a_call_whose_entry_cannot_be_written_fails_and_returns_no_data(own_node) -> None:
    node_space, server = own_node
    agreement = node_space.agreement("alice")
    entries_before = len(node_space.entries())
    # Stop the node's audit writer, as a full disk or a lost file would: appends now fail.
    server._log.close()
    with node_space.client("alice") as client, pytest.raises(NodeRefused) as refused:
        client.reveal(agreement, node_space.record_ids[:1], ["title"])
    assert refused.value.status == grpc.StatusCode.UNAVAILABLE
    assert "could not record" in refused.value.reason
    assert len(node_space.entries()) == entries_before
    # Nothing was charged either: the charge commits with the entry or not at all.
    assert _budget_used(node_space.node_dir / "node.db", agreement.agreement_id) == 0


def test_concurrent_reveals_cannot_overspend_the_agreement(space: Space) -> None:
    agreement = space.agreement("alice")
    callers = 4  # 4 x 5 records asked for at once, against a total of 12: only two can be served
    barrier = threading.Barrier(callers)
    outcomes: list[str] = []

    def reveal(number: int) -> None:
        ids = space.record_ids[100 + number * PER_REQUEST : 100 + (number + 1) * PER_REQUEST]
        with space.client("alice") as client:
            barrier.wait(timeout=10)
            try:
                client.reveal(agreement, ids, ["title"])
                outcomes.append("served")
            except NodeRefused as refused:
                outcomes.append(refused.status.name)

    threads = [threading.Thread(target=reveal, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["RESOURCE_EXHAUSTED"] * 2 + ["served"] * 2
    used = _budget_used(space.node_dir / "node.db", agreement.agreement_id)
    assert used == 2 * PER_REQUEST <= TOTAL


def _budget_used(database: Path, agreement_id: str) -> int:
    with sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True) as connection:
        row = connection.execute(
            "SELECT used FROM budgets WHERE agreement_id = ? AND kind = 'reveal.records'", (agreement_id,)
        ).fetchone()
    return row[0] if row else 0


def test_health_checking_answers_serving_over_mtls(space: Space) -> None:
    with grpc.secure_channel(space.address, channel_credentials(space.identity("alice"))) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        reveal = stub.Check(health_pb2.HealthCheckRequest(service="ipspace.v1.Reveal"), timeout=10)
    assert overall.status == reveal.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_node_services(space: Space) -> None:
    with grpc.secure_channel(space.address, channel_credentials(space.identity("alice"))) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {service.name for service in responses[0].list_services_response.service}
    assert {"ipspace.v1.Catalog", "ipspace.v1.Negotiation", "ipspace.v1.Reveal", "ipspace.v1.Audit"} <= names


@pytest.mark.parametrize("edit", ["leaf", "leaf_and_hash"])
def test_a_node_whose_log_was_edited_on_disk_refuses_to_start(own_node, edit: str) -> None:
    node_space, server = own_node
    with node_space.client("builder") as client:
        client.list_datasets()
    server.stop()
    database = node_space.node_dir / "node.db"
    with sqlite3.connect(database) as connection:  # what someone with the disk can do
        connection.execute("DROP TRIGGER IF EXISTS entries_refuse_update")
        leaf = connection.execute("SELECT leaf FROM entries WHERE idx = 0").fetchone()[0]
        forged = bytes(leaf).replace(b'"allow"', b'"deny"') if b'"allow"' in leaf else bytes(leaf) + b" "
        update = "UPDATE entries SET leaf = ?" + (", leaf_hash = ?" if edit == "leaf_and_hash" else "")
        arguments = (forged, leaf_hash(forged)) if edit == "leaf_and_hash" else (forged,)
        connection.execute(update + " WHERE idx = 0", arguments)
    with pytest.raises(AuditCorrupted, match=r"entry 0|root"):
        NodeServer(node_space.node_dir).start()
