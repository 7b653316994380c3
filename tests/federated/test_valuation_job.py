"""A federated valuation job end to end: Flower rounds over three real nodes, with and without SecAgg+; the
succeeded job's model provenance, issued by the runner's watcher, verifies against the nodes' own logs."""

from __future__ import annotations

import json
import sqlite3
import time

import numpy as np

from coordinator.head_gossip import HeadGossip
from coordinator.job_spec import JobState
from coordinator.model_files import load_model
from coordinator.provenance import verify_provenance
from coordinator.provenance_issuer import ProvenanceIssuer, ProvenanceStore
from coordinator.settings import NodeEndpoint
from crypto import Identity, Role
from ipspace.cli_identity import read_token
from ipspace.provenance_check import check_nodes
from models.valuation.wire import weight_shapes
from tests.federated.conftest import FederatedSpace

PROVENANCE_WAIT_S = 30.0


def _train_entries(space: FederatedSpace, org: str, agreement_id: str) -> list[dict]:
    uri = (space.nodes[org] / "node.db").resolve().as_uri() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        leaves = [json.loads(row[0]) for row in connection.execute("SELECT leaf FROM entries ORDER BY idx")]
    return [
        leaf for leaf in leaves if leaf["method"].endswith("/Train") and leaf["agreement_id"] == agreement_id
    ]


def _provenance_issuer(space: FederatedSpace) -> ProvenanceIssuer:
    """What `coordinator.provenance_routes.install_provenance` builds in the coordinator's API process."""
    coordinator_dir = space.local.root / "members" / "coordinator"
    database = space.local.root / "coordinator" / "provenance.db"
    return ProvenanceIssuer(
        jobs=space.store,
        registry=space.registry,
        records=ProvenanceStore(database),
        gossip=HeadGossip(database, space.local.ca.cert_pem),
        identity=Identity.load(coordinator_dir),
        nodes=[
            NodeEndpoint(name=directory.name, address=space.addresses[org], org=org)
            for org, directory in space.nodes.items()
        ],
        read_token=lambda: read_token(coordinator_dir),
        timeout_s=10.0,
    )


def _issued(issuer: ProvenanceIssuer, job_id: str) -> dict:
    deadline = time.monotonic() + PROVENANCE_WAIT_S
    while (document := issuer.records.get(job_id)) is None:
        assert time.monotonic() < deadline, f"no provenance of {job_id} within {PROVENANCE_WAIT_S:g} s"
        time.sleep(0.2)
    return document


def test_a_secagg_dp_job_trains_over_three_nodes_and_accounts_every_epsilon(
    federated: FederatedSpace,
) -> None:
    agreements = federated.agreements("dp")
    issuer = _provenance_issuer(federated)
    stop_listening = federated.runner.on_success(issuer.issue)
    try:
        job_id = federated.submit(agreements, rounds=2, epsilon=4.0, secagg=True)
        record = federated.wait(job_id)
        document = _issued(issuer, job_id) if record.state == JobState.SUCCEEDED else None
    finally:
        stop_listening()
    assert record.state == JobState.SUCCEEDED, record.reason
    assert [round_.round for round_ in record.rounds] == [1, 2]
    last = record.rounds[-1]
    assert set(last.epsilon_by_node) == set(federated.nodes)
    assert all(0 < epsilon <= 4.0 for epsilon in last.epsilon_by_node.values())
    assert last.metrics["held_out_rows"] > 0 and np.isfinite(last.metrics["held_out_r2"])
    weights = load_model(federated.store.model_path(record))
    assert [array.shape for array in weights] == weight_shapes()
    for agreement in agreements:
        org = agreement.terms.provider_org
        entries = _train_entries(federated, org, agreement.agreement_id)
        assert [entry["decision"] for entry in entries] == ["allow", "allow"]

    # The runner's watcher issued the model's provenance: it verifies, and every node's log holds the job.
    ca = federated.local.ca.cert_pem
    verified = verify_provenance(document, ca, federated.store.model_path(record).read_bytes())
    assert set(verified.node_heads) == {directory.name for directory in federated.nodes.values()}
    assert verified.nodes_unheard == () and verified.agreements == record.spec.agreements
    regulator = federated.local.issue("provenance-regulator", "ip-authority", Role.REGULATOR)
    addresses = {directory.name: federated.addresses[org] for org, directory in federated.nodes.items()}
    checks = check_nodes(verified, addresses, Identity.load(regulator), read_token(regulator), timeout_s=10)
    assert [(check.ok, check.train_calls) for check in checks] == [(True, 2)] * 3, checks


def test_a_plain_job_without_dp_is_refused_where_the_agreement_needs_a_cohort(
    federated: FederatedSpace,
) -> None:
    # The dp offers ask for a SecAgg+ cohort of 2: without SecAgg+ the coordinator would see each update.
    job_id = federated.submit(federated.agreements("dp"), rounds=1, epsilon=4.0, secagg=False)
    record = federated.wait(job_id)
    assert record.state == JobState.FAILED
    assert "cohort of at least 2" in record.reason
