"""Model provenance over a real coordinator and real nodes: a succeeded job's record names its model's digest
and each node's fresh signed tree head; it verifies offline and against the nodes' own logs, and a flipped
model byte, an edited record or a node whose log was rewritten since is named.

Jobs here are driven by hand, as the ServerApp drives them (the FakeRunner runs nothing): each node's own
runner identity calls Train once under the job's grant, then the model is saved and the job marked
succeeded. The rewritten log is real: a node of the test's own is stopped, its node.db replaced by a copy
taken before the job, and started again, so it serves a log that forks from the one it signed for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audit import SignedTreeHead
from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.offers import Action, Constraints, Offer
from coordinator.api import create_app
from coordinator.head_gossip import HeadGossip
from coordinator.job_spec import JobSpec, JobState, new_job_id
from coordinator.provenance import (
    PROVENANCE_TYPE,
    InvalidProvenance,
    ProvenanceUnavailable,
    sign_provenance,
    verify_provenance,
)
from coordinator.provenance_issuer import ProvenanceIssuer, ProvenanceStore
from coordinator.provenance_routes import install_provenance
from coordinator.server import CoordinatorServer
from coordinator.settings import CoordinatorSettings, NodeEndpoint
from crypto import Identity, canonical_json
from ipspace import cli_job, cli_model
from ipspace.cli_identity import read_token
from ipspace.provenance_check import check_nodes
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from models.valuation.wire import weight_shapes, weights_to_bytes
from node.partition import Partition, read_rows, write_partitions
from node.server import NodeServer
from tests.coordinator.conftest import (
    DATASET,
    MODEL_SETTINGS,
    NODES,
    PURPOSE,
    Coordinator,
    FakeRunner,
    Space,
    closed_port,
    register,
    signed_grants,
)

FORK = "node-fork"
FORK_ORG = "office-fork"
GROW_CALLS = 200  # at most this many calls to grow the forked log past the recorded head


@dataclass
class ForkNode:
    """A node of this module's own, which a test may stop, rewrite and start again."""

    directory: Path
    server: NodeServer
    address: str
    snapshot: Path = field(init=False)

    def __post_init__(self) -> None:
        self.snapshot = self.directory.parent / f"{FORK}-snapshot.db"

    def keep_snapshot(self) -> None:
        """Copy the live node.db now (SQLite's online backup: a consistent state while the node serves)."""
        with (
            closing(sqlite3.connect(self.directory / "node.db")) as live,
            closing(sqlite3.connect(self.snapshot)) as copy,
        ):
            live.backup(copy)

    def restart_from_snapshot(self) -> None:
        """Stop, put the snapshot in node.db's place, start again (on a new port)."""
        self.server.stop()
        for suffix in ("", "-wal", "-shm"):
            (self.directory / f"node.db{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.snapshot, self.directory / "node.db")
        self.server = NodeServer(self.directory)
        self.address = f"127.0.0.1:{self.server.start()}"


@dataclass
class World:
    coordinator: Coordinator
    fork: ForkNode
    addresses: dict[str, str]  # node name -> address
    node_of_org: dict[str, str]

    @property
    def space(self) -> Space:
        return self.coordinator.space

    def agreement(self, node: str) -> Agreement:
        """bea's training agreement with ``node``, registered with the coordinator."""
        agreement = self._fork_agreement() if node == FORK else self.space.agreement("bea", node)
        with self.coordinator.client("bea") as client:
            assert register(client, agreement).status_code in (200, 201)
        return agreement

    def _fork_agreement(self) -> Agreement:
        key = ("bea", FORK, "train")
        if key not in self.space.agreements:
            with NodeClient(self.fork.address, self.space.identity("bea"), self.space.token("bea")) as client:
                status = client.request_agreement(client.offer("train"), PURPOSE)
            assert status.state == "approved", status
            self.space.agreements[key] = status.agreement
        return self.space.agreements[key]

    def job(self, agreements: list[Agreement], *, succeed: bool = True) -> str:
        """A job of bea's over ``agreements`` whose every node trained one round; saved and succeeded."""
        store = self.coordinator.app.state.services.store
        job_id = new_job_id()
        spec = JobSpec(
            task="valuation",
            dataset=DATASET,
            purpose=PURPOSE,
            agreements=tuple(agreement.agreement_id for agreement in agreements),
            rounds=1,
            epsilon=None,
            model=MODEL_SETTINGS,
            secagg=True,
        )
        grants = signed_grants(self.space, agreements, job_id, rounds=1, epsilon=None)
        store.create(job_id=job_id, org="acme", submitted_by="bea", spec=spec, grants=grants)
        store.set_state(job_id, JobState.RUNNING)
        weights = [np.full(shape, 0.01, dtype=np.float32) for shape in weight_shapes()]
        for agreement in agreements:
            node = self.node_of_org[agreement.terms.provider_org]
            runner = self.fork.directory / "identity" if node == FORK else self.space.members[node]
            with NodeClient(self._address(node), Identity.load(runner), read_token(runner)) as client:
                client.train(
                    grants[agreement.agreement_id], weights_to_bytes(weights), round_number=1, cohort_size=2
                )
        if succeed:
            store.save_model(job_id, weights)
            store.set_state(job_id, JobState.SUCCEEDED)
        return job_id

    def _address(self, node: str) -> str:
        return self.fork.address if node == FORK else self.addresses[node]

    def model_bytes(self, job_id: str) -> bytes:
        store = self.coordinator.app.state.services.store
        return store.model_path(store.get(job_id)).read_bytes()

    def issue(self, job_id: str) -> dict:
        return self.coordinator.app.state.provenance.issue(job_id)


@pytest.fixture(scope="module")
def world(space: Space, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("provenance")
    header, rows = read_rows(LENS_FAMILIES)
    share = tuple(row for row in rows if row["jurisdiction"] == "US")[:80]
    csv_path = write_partitions([Partition(FORK, ("US",), share)], root / "data", header)[FORK]
    offer = Offer(
        offer_id="train",
        provider_org=FORK_ORG,
        dataset=DATASET,
        actions=(Action.TRAIN,),
        constraints=Constraints(purposes=(PURPOSE,), model_export=True),
    )
    directory = space.local.init_node(
        FORK, FORK_ORG, offers=[offer], datasets={DATASET: (csv_path, LENS_ID_FIELD, "families", LENS_SOURCE)}
    )
    server = NodeServer(directory)
    fork = ForkNode(directory, server, f"127.0.0.1:{server.start()}")
    # The conftest nodes with no org configured (found by their heads' signers), the fork node with its org,
    # and a node that is down (of no configured org).
    nodes = [NodeEndpoint(name=name, address=address) for name, address in space.node_addresses.items()]
    nodes.append(NodeEndpoint(name=FORK, address=fork.address, org=FORK_ORG))
    nodes.append(NodeEndpoint(name="node-down", address=f"127.0.0.1:{closed_port()}"))
    settings = CoordinatorSettings(
        identity_dir=space.members["coordinator"], data_dir=root / "coordinator", nodes=tuple(nodes)
    )
    app = create_app(settings, FakeRunner())
    install_provenance(app, settings, settings.load_identity())  # a no-op once create_app installs it
    coordinator_server = CoordinatorServer(settings, app)
    handle = Coordinator(space, settings, app.state.services.runner, coordinator_server, 0, app)
    try:
        handle.port = coordinator_server.start()
        node_of_org = {org: name for name, (org, _, _) in NODES.items()} | {FORK_ORG: FORK}
        yield World(handle, fork, dict(space.node_addresses), node_of_org)
    finally:
        coordinator_server.stop()
        fork.server.stop()


@pytest.fixture(scope="module")
def trained(world: World) -> tuple[str, dict]:
    """A succeeded job over node-us and node-eu, and its issued record."""
    job_id = world.job([world.agreement("node-us"), world.agreement("node-eu")])
    return job_id, world.issue(job_id)


def test_a_succeeded_jobs_record_names_its_model_spec_agreements_and_each_nodes_fresh_head(
    world: World, trained: tuple[str, dict]
) -> None:
    job_id, document = trained
    record = document["record"]
    assert record["type"] == PROVENANCE_TYPE and record["job_id"] == job_id
    assert record["submitted_by"] == {"name": "bea", "org": "acme"}
    assert (record["task"], record["dataset"], record["purpose"], record["rounds"]) == (
        "valuation",
        DATASET,
        PURPOSE,
        1,
    )
    assert record["agreements"] == list(
        world.coordinator.app.state.services.store.get(job_id).spec.agreements
    )
    assert record["model_sha256"] == hashlib.sha256(world.model_bytes(job_id)).hexdigest()
    # The down node and the fork node are of no provider of this job: neither is listed.
    assert set(record["node_heads"]) == {"node-us", "node-eu"}
    assert record["nodes_unheard"] == [] and record["head_alerts"] == {}

    verified = verify_provenance(document, world.space.local.ca.cert_pem, world.model_bytes(job_id))
    assert verified.coordinator.name == "coordinator" and verified.job_id == job_id
    # Each head was signed after the node's Train call of this job: the head covers it (checked below too).
    assert all(head.tree_size > 0 for head in verified.node_heads.values())
    checks = check_nodes(
        verified, world.addresses, world.space.identity("rita"), world.space.token("rita"), timeout_s=10
    )
    assert [(check.node, check.ok, check.train_calls) for check in checks] == [
        ("node-eu", True, 1),
        ("node-us", True, 1),
    ]
    # The issue is on record in the coordinator's own log, and issuing again gives the same record.
    assert [event["action"] for event in world.coordinator.events(job_id)] == ["model.provenance.issue"]
    assert world.issue(job_id) == document


def test_the_builder_and_a_regulator_read_it_another_org_gets_404_a_consumer_403(
    world: World, trained: tuple[str, dict]
) -> None:
    job_id, document = trained
    for member in ("bea", "rita"):
        with world.coordinator.client(member) as client:
            answer = client.get(f"/jobs/{job_id}/provenance")
        assert answer.status_code == 200, answer.text
        assert answer.json() == document
    with world.coordinator.client("gil") as client:
        other_org = client.get(f"/jobs/{job_id}/provenance")
        unknown = client.get("/jobs/job-none/provenance")
    assert other_org.status_code == unknown.status_code == 404
    assert other_org.json()["detail"] == f"no job {job_id!r} among the jobs you may see"
    with world.coordinator.client("carl") as client:
        assert client.get(f"/jobs/{job_id}/provenance").status_code == 403


def test_a_job_that_has_not_succeeded_has_no_provenance(world: World) -> None:
    job_id = world.job([world.agreement("node-us")], succeed=False)  # trained, still running
    with world.coordinator.client("bea") as client:
        answer = client.get(f"/jobs/{job_id}/provenance")
    assert answer.status_code == 409
    assert answer.json()["detail"] == f"job {job_id!r} has no model provenance: it is running"
    with pytest.raises(ProvenanceUnavailable, match="only a succeeded job"):
        world.issue(job_id)


def test_a_succeeded_job_without_a_record_gets_one_on_its_first_request(world: World) -> None:
    job_id = world.job([world.agreement("node-us")])  # succeeded while no runner listened
    assert world.coordinator.app.state.provenance.records.get(job_id) is None
    with world.coordinator.client("bea") as client:
        answer = client.get(f"/jobs/{job_id}/provenance")
    assert answer.status_code == 200
    verify_provenance(answer.json(), world.space.local.ca.cert_pem, world.model_bytes(job_id))


def test_a_flipped_model_byte_an_edited_record_or_a_bad_head_fails_verification(
    world: World, trained: tuple[str, dict]
) -> None:
    job_id, document = trained
    ca = world.space.local.ca.cert_pem
    model = bytearray(world.model_bytes(job_id))
    model[len(model) // 2] ^= 0x01
    with pytest.raises(InvalidProvenance, match="the model's SHA-256 is"):
        verify_provenance(document, ca, bytes(model))

    edited = {**document, "record": {**document["record"], "rounds": 2}}
    with pytest.raises(InvalidProvenance, match="signature does not hold"):
        verify_provenance(edited, ca, world.model_bytes(job_id))
    head = document["record"]["node_heads"]["node-us"]
    moved = {**head, "tree_size": head["tree_size"] + 1}
    edited = {**document, "record": {**document["record"], "node_heads": {"node-us": moved}}}
    with pytest.raises(InvalidProvenance, match="signature does not hold"):
        verify_provenance(edited, ca, world.model_bytes(job_id))

    # Signed by the coordinator, but over a head the node never signed: the head's own check names it.
    job = world.coordinator.app.state.services.store.get(job_id)
    coordinator = world.space.identity("coordinator")
    forged = SignedTreeHead(**moved)
    resigned = sign_provenance(coordinator, job, world.model_bytes(job_id), node_heads={"node-us": forged})
    with pytest.raises(InvalidProvenance, match="the head of node 'node-us' does not verify"):
        verify_provenance(resigned, ca, world.model_bytes(job_id))

    # The same record signed by a builder (not a coordinator) is refused.
    bea = world.space.identity("bea")
    signature = bea.sign(canonical_json(document["record"]))
    by_builder = {
        "record": document["record"],
        "signature": base64.b64encode(signature).decode(),
        "certificate_pem": bea.signing_cert_pem.decode(),
    }
    with pytest.raises(InvalidProvenance, match="not a coordinator"):
        verify_provenance(by_builder, ca, world.model_bytes(job_id))


def test_a_node_of_the_job_that_gives_no_head_is_listed_with_why(
    world: World, trained: tuple[str, dict], tmp_path: Path
) -> None:
    job_id, _ = trained
    space, services = world.space, world.coordinator.app.state.services
    # node-eu's org configured on an address where nothing listens: it is named, with the reason.
    nodes = [
        NodeEndpoint(name="node-us", address=world.addresses["node-us"]),
        NodeEndpoint(name="node-eu-old", address=f"127.0.0.1:{closed_port()}", org="office-eu"),
    ]
    issuer = ProvenanceIssuer(
        jobs=services.store,
        registry=services.registry,
        records=ProvenanceStore(tmp_path / "records.db"),
        gossip=HeadGossip(tmp_path / "records.db", space.local.ca.cert_pem),
        identity=space.identity("coordinator"),
        nodes=nodes,
        read_token=lambda: space.token("coordinator"),
        timeout_s=3.0,
    )
    record = issuer.issue(job_id)["record"]
    assert set(record["node_heads"]) == {"node-us"}
    [unheard] = record["nodes_unheard"]
    assert (unheard["node"], unheard["org"]) == ("node-eu-old", "office-eu")
    assert unheard["reason"].startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED"))

    model = tmp_path / "model.npz"
    model.write_bytes(world.model_bytes(job_id))
    provenance = tmp_path / "provenance.json"
    provenance.write_text(json.dumps(issuer.records.get(job_id)))
    ca = space.members["rita"] / "ca.crt"
    result = CliRunner().invoke(
        cli_model.app, ["provenance", "verify", str(model), "--provenance", str(provenance), "--ca", str(ca)]
    )
    assert result.exit_code == 1, result.output
    assert "FAILED node-eu-old: UNAVAILABLE" in _text(result.output)


def test_the_cli_fetches_and_verifies_a_downloaded_model_offline_and_against_the_nodes_logs(
    world: World, tmp_path: Path
) -> None:
    job_id = world.job([world.agreement("node-us")])
    world.issue(job_id)
    url, bea, rita = world.coordinator.base_url, world.space.members["bea"], world.space.members["rita"]
    cli = CliRunner()
    model, provenance = tmp_path / "model.npz", tmp_path / "provenance.json"
    for command, out in (("model", model), ("provenance", provenance)):
        result = cli.invoke(
            cli_job.app, [command, job_id, "--out", str(out), "--coordinator", url, "--identity", str(bea)]
        )
        assert result.exit_code == 0, result.output
    verify = [
        "provenance",
        "verify",
        str(model),
        "--provenance",
        str(provenance),
        "--ca",
        str(rita / "ca.crt"),
    ]
    offline = cli.invoke(cli_model.app, verify)
    assert offline.exit_code == 0, offline.output
    assert f"is the model of job {job_id}" in _text(offline.output)
    online = cli.invoke(
        cli_model.app, [*verify, "--identity", str(rita), "--node", f"node-us={world.addresses['node-us']}"]
    )
    assert online.exit_code == 0, online.output
    assert "the nodes' logs hold it" in _text(online.output)

    model.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 0x01]))
    flipped = cli.invoke(cli_model.app, verify)
    assert flipped.exit_code == 1 and "INVALID" in flipped.output


def test_a_node_whose_log_was_rewritten_since_the_record_is_named(world: World, tmp_path: Path) -> None:
    agreements = [world.agreement("node-us"), world.agreement(FORK)]
    world.fork.keep_snapshot()  # the fork's log before this job: the history it will be rewritten to
    job_id = world.job(agreements)
    document = world.issue(job_id)
    recorded = document["record"]["node_heads"][FORK]["tree_size"]
    verified = verify_provenance(document, world.space.local.ca.cert_pem, world.model_bytes(job_id))
    rita, token = world.space.identity("rita"), world.space.token("rita")
    addresses = {"node-us": world.addresses["node-us"], FORK: world.fork.address}
    assert all(check.ok for check in check_nodes(verified, addresses, rita, token, timeout_s=10))

    world.fork.restart_from_snapshot()
    carl = world.space.identity("carl")
    with NodeClient(world.fork.address, carl, world.space.token("carl")) as client:
        for _ in range(GROW_CALLS):  # grow the rewritten log past the recorded size: a fork, not a rollback
            client.list_datasets()
            if _size(client) > recorded:
                break
    addresses[FORK] = world.fork.address
    checks = {check.node: check for check in check_nodes(verified, addresses, rita, token, timeout_s=10)}
    assert checks["node-us"].ok
    assert not checks[FORK].ok
    assert "does not extend the recorded head" in checks[FORK].reason
    assert "history was rewritten" in checks[FORK].reason

    model, provenance = tmp_path / "model.npz", tmp_path / "provenance.json"
    model.write_bytes(world.model_bytes(job_id))
    provenance.write_text(json.dumps(document))
    ca = world.space.members["rita"] / "ca.crt"
    nodes = [f"{name}={address}" for name, address in addresses.items()]
    arguments = ["provenance", "verify", str(model), "--provenance", str(provenance), "--ca", str(ca)]
    arguments += ["--identity", str(world.space.members["rita"])]
    for node in nodes:
        arguments += ["--node", node]
    result = CliRunner().invoke(cli_model.app, arguments)
    assert result.exit_code == 1, result.output
    assert f"FAILED {FORK}: its log of" in _text(result.output) and "FAILED node-us" not in result.output


def _size(client: NodeClient) -> int:
    return json.loads(client.tree_head(fresh=True).head_json)["tree_size"]


def _text(output: str) -> str:
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(output.split())
