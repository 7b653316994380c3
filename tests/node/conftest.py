"""A real node for the gate tests: CA, members, a node with real Lens rows and offers, served over mTLS."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.offers import Action, Constraints, Offer
from crypto import Identity, Role
from ipspace.cli_identity import read_token
from ipspace.local_space import LocalDataSpace
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from node.partition import Partition, read_rows, write_partitions
from node.server import NodeServer
from node.store import DatasetStore
from tests.node._store_helpers import import_hand_made, lens_partition_store

PROVIDER_ORG = "office-a"
REVEAL_FIELDS = ("title", "applicants", "publication_date", "jurisdiction")
PER_REQUEST = 5
TOTAL = 12


def offers() -> list[Offer]:
    research = Constraints(
        purposes=("research",),
        reveal_fields=REVEAL_FIELDS,
        reveal_max_records_per_request=PER_REQUEST,
        reveal_max_records_total=TOTAL,
    )
    return [
        Offer(
            offer_id="families-research",
            provider_org=PROVIDER_ORG,
            dataset="families",
            actions=(Action.REVEAL,),
            constraints=research,
            description="reveal for research",
        ),
        Offer(
            offer_id="families-licensing",
            provider_org=PROVIDER_ORG,
            dataset="families",
            actions=(Action.REVEAL,),
            approval="manual",
            constraints=Constraints(
                purposes=("licensing",), reveal_fields=("title",), consumer_orgs=("acme",)
            ),
            description="reveal titles for licensing, after the provider's approval",
        ),
    ]


@dataclass
class Space:
    root: Path
    local: LocalDataSpace
    node_dir: Path
    address: str
    record_ids: list[str]
    members: dict[str, Path]

    def identity(self, member: str) -> Identity:
        return Identity.load(self.members[member])

    def client(self, member: str, *, token: str | None = None) -> NodeClient:
        directory = self.members[member]
        return NodeClient(self.address, Identity.load(directory), token or read_token(directory))

    def entries(self) -> list[sqlite3.Row]:
        """The node's audit entries, read straight from its database file (read-only)."""
        import json

        uri = (self.node_dir / "node.db").resolve().as_uri() + "?mode=ro"
        with sqlite3.connect(uri, uri=True) as connection:
            rows = connection.execute("SELECT leaf FROM entries ORDER BY idx").fetchall()
        return [json.loads(row[0]) for row in rows]

    def agreement(
        self, member: str, offer_id: str = "families-research", purpose: str = "research", **kwargs: object
    ) -> Agreement:
        with self.client(member) as client:
            offer = client.offer(offer_id)
            status = client.request_agreement(offer, purpose, **kwargs)
        assert status.state == "approved", status
        return status.agreement


@pytest.fixture(scope="session")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    root = tmp_path_factory.mktemp("space")
    local = LocalDataSpace(root)
    local.create_ca()
    header, rows = read_rows(LENS_FAMILIES)
    sample = [row for row in rows if row["jurisdiction"] == "EP"][:200]
    csv_path = write_partitions([Partition("sample", ("EP",), tuple(sample))], root / "data", header)[
        "sample"
    ]
    node_dir = local.init_node(
        "node-a",
        PROVIDER_ORG,
        offers=offers(),
        head_every=100,
        head_interval_s=0.5,
        datasets={"families": (csv_path, LENS_ID_FIELD, "EP patent families on drones", LENS_SOURCE)},
    )
    members = {
        "alice": local.issue("alice", "acme", Role.CONSUMER),
        "bob": local.issue("bob", "globex", Role.CONSUMER),
        "builder": local.issue("builder", "acme", Role.BUILDER),
        "regulator": local.issue("regulator", "ip-authority", Role.REGULATOR),
        "provider": node_dir / "identity",
    }
    server = NodeServer(node_dir)
    port = server.start()
    try:
        yield Space(
            root, local, node_dir, f"127.0.0.1:{port}", [row[LENS_ID_FIELD] for row in sample], members
        )
    finally:
        server.stop()


def expired_token(space: Space, member: str) -> str:
    identity = space.identity(member)
    past = datetime.now(UTC) - timedelta(hours=3)
    return space.local.ca.issue_token(identity.principal(), ttl=timedelta(hours=1), now=past)


# Dataset-store fixtures, shared by test_store_describe.py and test_store_import_fetch.py.
@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore.for_node(tmp_path)


@pytest.fixture
def hand_made(store: DatasetStore, tmp_path: Path) -> DatasetStore:
    return import_hand_made(store, tmp_path)


@pytest.fixture(scope="module")
def lens_partition(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetStore, list[dict[str, str]]]:
    return lens_partition_store(tmp_path_factory.mktemp("node"))
