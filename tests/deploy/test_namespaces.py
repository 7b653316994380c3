"""The coordinator and two nodes as separate hosts: a federated valuation job over mTLS between them.

Each party runs in a Linux network namespace of its own, with its own address on a private network the test
makes and removes (tests/deploy/netns.py): the coordinator (job API and Flower SuperLink) and two provider
nodes (gRPC gate and Flower SuperNode), each an `ipspace ... serve` process, provisioned by the compose init
job's script (deploy/compose/provision.sh). The root namespace is a fourth machine on the network: from it the
compose builder script (deploy/compose/builder.py) agrees with each node, registers the agreements with the
coordinator, submits a job and waits for it, and this test process, as the regulator, has every node's audit
log exported and verifies it. Nothing listens on loopback for another party; every certificate names its
host's address.

Two nodes cannot form a SecAgg+ cohort (Flower's SecAgg+ needs at least 3), so the job runs with
"secagg": false and the offers ask for no minimum cohort; each node still runs DP-SGD within its budget.
Skipped, with the reason, where network namespaces cannot be created (not root, no iproute2, a sandbox).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from audit import decode_leaf, verify_bundle
from contracts.agreements import Agreement
from contracts.client import NodeClient
from coordinator.flower.control import ControlClient
from crypto import Identity
from ipspace.audit_export import export_node_log
from ipspace.cli_identity import read_token
from ipspace.coordinator_client import CoordinatorClient
from tests.deploy.deployment import API_PORT, BUILDER_SCRIPT, COORDINATOR, NODES, Deployment
from tests.deploy.netns import NamespacesUnavailable, PrivateNetwork, private_network, unavailable_reason

DATASET = "lens_families"  # what deploy/compose/provision.sh offers
OFFER_ID = "families-valuation"
ROUNDS = 2
JOB_EPSILON = 4.0
ONLINE_TIMEOUT_S = 60.0
BUILDER_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def network() -> Iterator[PrivateNetwork]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    try:
        with private_network([COORDINATOR, *NODES]) as made:
            yield made
    except NamespacesUnavailable as unavailable:
        pytest.skip(f"network namespaces unavailable: {unavailable}")


@pytest.fixture(scope="module")
def deployment(network: PrivateNetwork, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployed = Deployment(network, tmp_path_factory.mktemp("space"))
    try:
        deployed.provision()
        deployed.start()
        _wait_for_supernodes(deployed)
        yield deployed
    finally:
        deployed.stop()


def _wait_for_supernodes(deployed: Deployment) -> None:
    """Both SuperNodes online at the SuperLink, asked over the network through its Control API."""
    control = ControlClient(deployed.superlink_address, deployed.ca_cert_pem)
    try:
        deadline = time.monotonic() + ONLINE_TIMEOUT_S
        while len(control.online_nodes()) < len(NODES):
            if time.monotonic() > deadline:
                logs = {role: process.log_tail() for role, process in deployed.processes.items()}
                raise AssertionError(f"SuperNodes not online within {ONLINE_TIMEOUT_S:.0f} s: {logs}")
            time.sleep(0.5)
    finally:
        control.close()


@dataclass(frozen=True)
class FinishedJob:
    job: dict[str, Any]
    agreements: dict[str, Agreement]  # provider org -> the builder's agreement with its node
    catalog: dict[str, Any]
    builder_log: str


@pytest.fixture(scope="module")
def finished_job(deployment: Deployment) -> FinishedJob:
    """The builder's whole part, run from this host by the compose file's builder script: agree with each node
    (gRPC, mTLS), register the agreements and submit the job at the coordinator (HTTPS, mTLS), wait."""
    builder_dir = deployment.identity("builder")
    argv = [sys.executable, str(BUILDER_SCRIPT), "--coordinator", deployment.api_url,
            "--identity", str(builder_dir), "--rounds", str(ROUNDS), "--epsilon", str(JOB_EPSILON),
            "--local-steps", "5", "--batch-size", "64", "--timeout", str(BUILDER_TIMEOUT_S - 20),
            *(f"--node={address}" for address in deployment.node_addresses.values())]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILDER_TIMEOUT_S, check=False)
    assert done.stdout.strip(), f"the builder printed no job (exit {done.returncode}):\n{done.stderr}"
    with CoordinatorClient(deployment.api_url, builder_dir, read_token(builder_dir)) as coordinator:
        agreements = {agreement.terms.provider_org: agreement for agreement in coordinator.agreements()}
        catalog = coordinator.catalog()
    return FinishedJob(json.loads(done.stdout), agreements, catalog, done.stderr)


def test_each_party_runs_on_its_own_host_and_address(deployment: Deployment) -> None:
    hosts = deployment.network.hosts
    for role, process in deployment.processes.items():
        assert process.alive(), process.log_tail()
        assert hosts[role].owns_process(process.pid)
        assert not any(host.owns_process(process.pid) for name, host in hosts.items() if name != role)
    assert deployment.api_url == f"https://{hosts[COORDINATOR].address}:{API_PORT}"
    for role, address in deployment.node_addresses.items():
        assert address.rpartition(":")[0] == hosts[role].address
    assert len({host.address for host in hosts.values()} | {deployment.network.gateway}) == len(hosts) + 1


def test_the_coordinator_reads_both_nodes_catalogs_across_hosts(finished_job: FinishedJob) -> None:
    by_node = {entry["node"]: entry for entry in finished_job.catalog["nodes"]}
    assert set(by_node) == set(NODES)
    for role, entry in by_node.items():
        assert entry["error"] is None, entry["error"]
        assert [dataset["name"] for dataset in entry["datasets"]] == [DATASET]
        assert entry["datasets"][0]["row_count"] > 0
        assert [offer["offer"]["offer_id"] for offer in entry["offers"]] == [OFFER_ID], role


def test_a_job_trains_over_both_nodes_within_each_budget(finished_job: FinishedJob) -> None:
    job = finished_job.job
    assert job["state"] == "succeeded", f"{job['reason']}\n{finished_job.builder_log}"
    assert job["spec"]["secagg"] is False  # two nodes: no SecAgg+ cohort is possible
    agreement_ids = sorted(agreement.agreement_id for agreement in finished_job.agreements.values())
    assert sorted(job["spec"]["agreements"]) == agreement_ids
    assert [report["round"] for report in job["rounds"]] == list(range(1, ROUNDS + 1))
    orgs = set(NODES.values())
    for report in job["rounds"]:
        assert report["metrics"]["nodes"] == len(NODES)
        assert set(report["epsilon_by_node"]) == orgs
    first, last = job["rounds"][0]["epsilon_by_node"], job["rounds"][-1]["epsilon_by_node"]
    for org in orgs:
        assert 0 < first[org] < last[org] <= JOB_EPSILON  # every round charged the node's own accountant


def test_each_node_log_verifies_and_holds_one_allowed_train_entry_per_round(
    deployment: Deployment, finished_job: FinishedJob, tmp_path: Path
) -> None:
    assert finished_job.job["state"] == "succeeded", finished_job.job["reason"]
    regulator_dir = deployment.identity("regulator")
    regulator, token = Identity.load(regulator_dir), read_token(regulator_dir)
    for role, address in deployment.node_addresses.items():
        org, bundle = NODES[role], tmp_path / role
        with NodeClient(address, regulator, token) as node:  # the regulator's export, over the network
            export_node_log(node, bundle, ca_cert_pem=deployment.ca_cert_pem)
        summary = verify_bundle(bundle, deployment.ca_cert_pem)
        entries = [decode_leaf(line)[1] for line in (bundle / "entries.jsonl").read_bytes().splitlines()]
        assert (summary.node, summary.entries) == (role, len(entries))
        agreement_id = finished_job.agreements[org].agreement_id
        trains = [e for e in entries if e.method.endswith("/Train") and e.agreement_id == agreement_id]
        assert [entry.decision for entry in trains] == ["allow"] * ROUNDS, role
        assert {(entry.actor, entry.org) for entry in trains} == {(role, org)}  # the node's own proxy asked
