"""A real data space for the coordinator tests: a CA, two provider nodes serving real Lens rows over mTLS,
members of several orgs and roles, agreements made through the nodes, and a coordinator served by uvicorn
over mTLS on 127.0.0.1 (a fresh one, with its own state directory, per test)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from audit import AuditEntry, decode_leaf
from audit.store import connect, iter_entries
from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.job_grants import TrainingSettings, sign_job_grant
from contracts.offers import Action, Constraints, Offer
from coordinator.api import create_app
from coordinator.job_spec import new_job_id
from coordinator.own_log import event_outcome
from coordinator.server import CoordinatorServer
from coordinator.settings import CoordinatorSettings, NodeEndpoint
from crypto import Identity, Role
from ipspace.cli_identity import read_token
from ipspace.local_space import LOOPBACK_HOSTS, LocalDataSpace
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from node.partition import Partition, read_rows, write_partitions
from node.server import NodeServer

DATASET = "lens_drones"
PURPOSE = "valuation-research"
MATCH_PURPOSE = "technology-scouting"
ROWS_PER_NODE = 120
DP_BUDGET = 2.0  # the "train-dp" offers' epsilon
MIN_COHORT = 3  # and their minimum SecAgg+ cohort


def _constraints(purpose: str, **limits: object) -> Constraints:
    return Constraints(purposes=(purpose,), **limits)


def _offers(org: str, *, export: bool) -> list[Offer]:
    return [
        Offer(
            offer_id="train",
            provider_org=org,
            dataset=DATASET,
            actions=(Action.TRAIN,),
            constraints=_constraints(PURPOSE, model_export=export),
        ),
        Offer(
            offer_id="train-dp",
            provider_org=org,
            dataset=DATASET,
            actions=(Action.TRAIN,),
            constraints=_constraints(PURPOSE, epsilon=DP_BUDGET, delta=1e-5, min_cohort=MIN_COHORT),
        ),
        Offer(
            offer_id="train-licensing",
            provider_org=org,
            dataset=DATASET,
            actions=(Action.TRAIN,),
            constraints=_constraints("licensing", model_export=export),
        ),
        Offer(
            offer_id="reveal",
            provider_org=org,
            dataset=DATASET,
            actions=(Action.REVEAL,),
            constraints=_constraints(PURPOSE, reveal_fields=("title",)),
        ),
        Offer(
            offer_id="match",
            provider_org=org,
            dataset=DATASET,
            actions=(Action.MATCH,),
            constraints=_constraints(MATCH_PURPOSE),
        ),
    ]


# node name -> (org, jurisdiction of its rows, whether its training offers allow model export)
NODES = {"node-us": ("office-us", "US", True), "node-eu": ("office-eu", "EP", False)}


@dataclass
class Space:
    root: Path
    local: LocalDataSpace
    members: dict[str, Path]
    node_addresses: dict[str, str]
    record_ids: list[str]
    agreements: dict[tuple[str, str, str], Agreement] = field(default_factory=dict)

    def identity(self, member: str) -> Identity:
        return Identity.load(self.members[member])

    def token(self, member: str) -> str:
        return read_token(self.members[member])

    def agreement(self, member: str, node: str, offer_id: str = "train") -> Agreement:
        """An agreement ``member`` made with ``node`` on ``offer_id`` (made once, then reused)."""
        key = (member, node, offer_id)
        if key not in self.agreements:
            client = NodeClient(self.node_addresses[node], self.identity(member), self.token(member))
            with client:
                offer = client.offer(offer_id)
                purpose = offer.constraints.purposes[0]
                status = client.request_agreement(offer, purpose)
            assert status.state == "approved", status
            self.agreements[key] = status.agreement
        return self.agreements[key]


@pytest.fixture(scope="session")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    root = tmp_path_factory.mktemp("coordinator-space")
    local = LocalDataSpace(root)
    local.create_ca()
    header, rows = read_rows(LENS_FAMILIES)
    servers, addresses, record_ids = [], {}, []
    members = {
        "coordinator": local.issue("coordinator", "ipspace-ops", Role.COORDINATOR, hosts=LOOPBACK_HOSTS),
        "bea": local.issue("bea", "acme", Role.BUILDER),
        "gil": local.issue("gil", "globex", Role.BUILDER),
        "carl": local.issue("carl", "acme", Role.CONSUMER),
        "rita": local.issue("rita", "ip-authority", Role.REGULATOR),
    }
    try:
        for name, (org, jurisdiction, export) in NODES.items():
            share = [row for row in rows if row["jurisdiction"] == jurisdiction][:ROWS_PER_NODE]
            record_ids.extend(row[LENS_ID_FIELD] for row in share)
            partition = Partition(name, (jurisdiction,), tuple(share))
            csv_path = write_partitions([partition], root / "data", header)[name]
            node_dir = local.init_node(
                name,
                org,
                offers=_offers(org, export=export),
                datasets={DATASET: (csv_path, LENS_ID_FIELD, "drone patent families", LENS_SOURCE)},
                embed={DATASET: ("title",)},
            )
            members[name] = node_dir / "identity"
            server = NodeServer(node_dir)
            addresses[name] = f"127.0.0.1:{server.start()}"
            servers.append(server)
        yield Space(root, local, members, addresses, record_ids)
    finally:
        for server in servers:
            server.stop()


class FakeRunner:
    """Stands in for the Flower runner (the lead's, not part of these tests): it records what the API asks
    of it, and ``is_alive`` answers from ``alive``, so restart recovery can be driven from a test."""

    def __init__(self, alive: set[str] | None = None) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.alive: set[str] = set(alive or ())

    def start(self, job_id: str) -> None:
        self.started.append(job_id)
        self.alive.add(job_id)

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def is_alive(self, job_id: str) -> bool:
        return job_id in self.alive


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Coordinator:
    space: Space
    settings: CoordinatorSettings
    runner: FakeRunner
    server: CoordinatorServer
    port: int
    app: FastAPI

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(
        self, member: str, *, token: str | None = None, certificate_of: str | None = None
    ) -> httpx.Client:
        """An HTTPS client presenting ``certificate_of``'s (default: ``member``'s) certificate and
        ``member``'s token (or ``token``)."""
        holder = self.space.members[certificate_of or member]
        context = ssl.create_default_context(cafile=holder / "ca.crt")
        context.load_cert_chain(holder / "tls.crt", holder / "tls.key")
        headers = {"Authorization": f"Bearer {token or self.space.token(member)}"}
        return httpx.Client(base_url=self.base_url, verify=context, headers=headers, timeout=10)

    def events(self, target: str | None = None) -> list[dict]:
        """The entries of the coordinator's own log, as dicts (those about ``target`` only, when given).

        Read from the log's SQLite file, so also after the coordinator stopped: the index and every entry
        field, plus "action" (the method), "actor" ({name, org, role}), "outcome" and "status" as an int.
        """
        path = self.settings.own_log_file
        if not path.exists():
            return []
        with closing(connect(path, read_only=True)) as conn:
            leaves = [leaf for _, leaf, _ in iter_entries(conn, 0, 2**53)]
        events = [_event(*decode_leaf(leaf)) for leaf in leaves]
        return [event for event in events if target is None or event["target"] == target]


def _event(index: int, entry: AuditEntry) -> dict:
    return {
        **entry.to_dict(),
        "index": index,
        "action": entry.method,
        "actor": {"name": entry.actor, "org": entry.org, "role": entry.role},
        "outcome": event_outcome(entry),
        "status": int(entry.status),
    }


def coordinator_settings(space: Space, data_dir: Path, *, with_down_node: bool = True) -> CoordinatorSettings:
    nodes = [NodeEndpoint(name=name, address=address) for name, address in space.node_addresses.items()]
    if with_down_node:
        nodes.append(NodeEndpoint(name="node-down", address=f"127.0.0.1:{closed_port()}"))
    return CoordinatorSettings(
        identity_dir=space.members["coordinator"],
        data_dir=data_dir,
        nodes=tuple(nodes),
        node_timeout_s=5.0,
        audit_sync_interval_s=0,  # the audit index syncs when a test asks (POST /audit/sync), not on a timer
    )


def serve(space: Space, settings: CoordinatorSettings, runner: FakeRunner) -> Coordinator:
    app = create_app(settings, runner)
    server = CoordinatorServer(settings, app)
    return Coordinator(space, settings, runner, server, server.start(), app)


@pytest.fixture
def coordinator(space: Space, tmp_path: Path) -> Iterator[Coordinator]:
    """A fresh coordinator (empty state) for a test that counts what it changed."""
    handle = serve(space, coordinator_settings(space, tmp_path / "coordinator"), FakeRunner())
    try:
        yield handle
    finally:
        handle.server.stop()


@pytest.fixture(scope="module")
def shared_coordinator(space: Space, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    """One coordinator for a module's tests that each work on their own job ids (starting one costs time)."""
    handle = serve(space, coordinator_settings(space, tmp_path_factory.mktemp("shared")), FakeRunner())
    try:
        yield handle
    finally:
        handle.server.stop()


# --- requests the tests send -------------------------------------------------------------------------------

MODEL_SETTINGS = TrainingSettings(local_steps=5, batch_size=32, learning_rate=0.05, max_grad_norm=1.0)


def signed_grants(
    space: Space, agreements: list[Agreement], job_id: str, *, rounds: int, epsilon: float | None
) -> dict[str, str]:
    """One JobGrant per agreement, signed by that agreement's consumer (a member named in its terms)."""
    return {
        agreement.agreement_id: sign_job_grant(
            space.identity(agreement.terms.consumer_name),
            agreement,
            job_id=job_id,
            rounds=rounds,
            epsilon=epsilon,
            settings=MODEL_SETTINGS,
        ).model_dump_json()
        for agreement in agreements
    }


def submission(
    space: Space,
    agreements: list[Agreement],
    /,
    *,
    job_id: str | None = None,
    rounds: int = 3,
    epsilon: float | None = 1.0,
    **overrides: object,
) -> dict:
    """A POST /jobs body over ``agreements`` with a signed grant each for exactly this spec; ``overrides``
    then replace top-level fields of the body only (so the grants no longer match them)."""
    job_id = job_id or new_job_id()
    body: dict[str, object] = {
        "job_id": job_id,
        "task": "valuation",
        "dataset": DATASET,
        "purpose": PURPOSE,
        "agreements": [agreement.agreement_id for agreement in agreements],
        "rounds": rounds,
        "epsilon": epsilon,
        "model": MODEL_SETTINGS.model_dump(),
        "secagg": True,
        "grants": signed_grants(space, agreements, job_id, rounds=rounds, epsilon=epsilon),
    }
    body.update(overrides)
    return body


def register(client: httpx.Client, agreement: Agreement) -> httpx.Response:
    return client.post(
        "/agreements", content=agreement.model_dump_json(), headers={"content-type": "application/json"}
    )
