"""A provider node that a test tampers with while it serves, and a coordinator that knows it.

Shared by the audit index's tests and the dashboard's browser test: the node is a real NodeServer over mTLS
with ten real Lens rows; `edit_entry` rewrites one entry of its log in place, as its provider could.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from contracts.client import NodeClient
from contracts.offers import Action, Constraints, Offer
from coordinator.settings import CoordinatorSettings, NodeEndpoint
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from node.partition import Partition, read_rows, write_partitions
from node.server import NodeServer
from tests.coordinator.conftest import (
    Coordinator,
    FakeRunner,
    Space,
    coordinator_settings,
    serve,
)

Serve = Callable[[Space, CoordinatorSettings, FakeRunner], Coordinator]
# One counter for the whole session: the CA issues an identity only once under one name.
_TAMPERED_NODES = itertools.count()


@contextmanager
def tampered_coordinator(
    space: Space, directory: Path, *, serve_with: Serve = serve
) -> Iterator[tuple[Coordinator, NodeServer, str]]:
    """A coordinator (served by ``serve_with``) that also knows a node of its own, which the test may tamper
    with while it serves; both are stopped on exit. Yields (coordinator, node, node's name)."""
    name = f"node-t{next(_TAMPERED_NODES)}"
    header, rows = read_rows(LENS_FAMILIES)
    csv = write_partitions([Partition(name, ("US",), tuple(rows[:10]))], directory, header)[name]
    offer = Offer(
        offer_id="reveal",
        provider_org="office-t",
        dataset="families",
        actions=(Action.REVEAL,),
        constraints=Constraints(purposes=("research",), reveal_fields=("title",)),
    )
    node_dir = space.local.init_node(
        name, "office-t", offers=[offer], datasets={"families": (csv, LENS_ID_FIELD, "f", LENS_SOURCE)}
    )
    node = NodeServer(node_dir)
    port = node.start()
    try:
        settings = coordinator_settings(space, directory / "coordinator", with_down_node=False)
        settings = settings.model_copy(
            update={"nodes": (*settings.nodes, NodeEndpoint(name=name, address=f"127.0.0.1:{port}"))}
        )
        handle = serve_with(space, settings, FakeRunner())
        try:
            yield handle, node, name
        finally:
            handle.server.stop()
    finally:
        node.stop()


def call_node(space: Space, node: NodeServer, count: int) -> None:
    """``count`` catalog reads by carl at ``node``: each is one allowed entry in its log."""
    with NodeClient(f"127.0.0.1:{node.port}", space.identity("carl"), space.token("carl")) as carl:
        for _ in range(count):
            carl.list_datasets()


def edit_entry(node: NodeServer, index: int) -> None:
    """What a provider could do to its own database while the node serves (its triggers dropped first):
    entry ``index``, one of carl's, now names "cora"."""
    raw = sqlite3.connect(node.paths.state_db)
    try:
        raw.execute("DROP TRIGGER IF EXISTS entries_refuse_update")
        leaf = raw.execute("SELECT leaf FROM entries WHERE idx = ?", (index,)).fetchone()[0]
        assert b'"carl"' in leaf
        raw.execute("UPDATE entries SET leaf = ? WHERE idx = ?", (leaf.replace(b'"carl"', b'"cora"'), index))
        raw.commit()
    finally:
        raw.close()


def first_entry_by(node: NodeServer, actor: str, *, from_index: int) -> int:
    """The index of ``actor``'s first entry at or after ``from_index`` in ``node``'s log (the coordinator's
    own reads of the log are interleaved with the test's calls)."""
    raw = sqlite3.connect(node.paths.state_db)
    try:
        rows = raw.execute(
            "SELECT idx, leaf FROM entries WHERE idx >= ? ORDER BY idx", (from_index,)
        ).fetchall()
    finally:
        raw.close()
    needle = f'"{actor}"'.encode()
    found = next((index for index, leaf in rows if needle in leaf), None)
    if found is None:
        raise LookupError(f"no entry of {actor!r} at or after {from_index} in {node.paths.state_db}")
    return found
