"""A whole federated data space for the job tests: 3 real nodes, their SuperNodes, a SuperLink and the runner.

Everything is really started: the nodes' gRPC gates (in this process), the SuperLink and three SuperNodes
(child processes, stopped by PID), and Flower's own ServerApp and ClientApp processes under them. The nodes
hold real Lens rows (a few hundred each, split by jurisdiction as three offices would hold them).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.job_grants import TrainingSettings, sign_job_grant
from contracts.offers import Action, Constraints, Offer
from coordinator.agreements import AgreementRegistry
from coordinator.flower.control import ControlClient
from coordinator.flower.runner import FlowerRunner
from coordinator.job_spec import JobSpec, JobState, new_job_id
from coordinator.jobs import JobStore
from crypto import Identity, Role
from ipspace.cli_identity import read_token
from ipspace.flower_processes import (
    ChildProcess,
    start_superlink,
    start_supernode,
    wait_for_port,
    write_supernode_key,
)
from ipspace.local_space import LOOPBACK_HOSTS, LocalDataSpace
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from node.partition import Partition, partition_by_jurisdiction, read_rows, write_partitions
from node.server import NodeServer

ROWS_PER_NODE = 300
DATASET = "families"
PURPOSE = "valuation"
FAST = TrainingSettings(local_steps=5, batch_size=64)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class FederatedSpace:
    local: LocalDataSpace
    store: JobStore
    registry: AgreementRegistry
    runner: FlowerRunner
    nodes: dict[str, Path]  # org -> node directory
    addresses: dict[str, str]
    builder_dir: Path
    supernodes: dict[str, ChildProcess] = field(default_factory=dict)

    def agreements(self, offer_id: str) -> list[Agreement]:
        builder = Identity.load(self.builder_dir)
        found = []
        for org, address in self.addresses.items():
            with NodeClient(address, builder, read_token(self.builder_dir)) as client:
                status = client.request_agreement(client.offer(f"{org}-{offer_id}"), PURPOSE)
            assert status.state == "approved", status
            self.registry.register(status.agreement, builder.principal())
            found.append(status.agreement)
        return found

    def submit(self, agreements: list[Agreement], *, rounds: int, epsilon: float | None, secagg: bool) -> str:
        builder = Identity.load(self.builder_dir)
        job_id = new_job_id()
        grants = {
            agreement.agreement_id: sign_job_grant(
                builder, agreement, job_id=job_id, rounds=rounds, epsilon=epsilon, settings=FAST
            ).model_dump_json()
            for agreement in agreements
        }
        spec = JobSpec(
            task="valuation",
            dataset=DATASET,
            purpose=PURPOSE,
            agreements=tuple(agreement.agreement_id for agreement in agreements),
            rounds=rounds,
            epsilon=epsilon,
            model=FAST,
            secagg=secagg,
        )
        self.store.create(job_id=job_id, org="acme", submitted_by="builder", spec=spec, grants=grants)
        self.runner.start(job_id)
        return job_id

    def wait(self, job_id: str, timeout_s: float = 240.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = self.store.get(job_id)
            if record.state not in (JobState.QUEUED, JobState.RUNNING):
                return record
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {self.store.get(job_id).state} after {timeout_s} s")


def _offers(org: str) -> list[Offer]:
    def offer(name: str, **constraints: object) -> Offer:
        return Offer(
            offer_id=f"{org}-{name}",
            provider_org=org,
            dataset=DATASET,
            actions=(Action.TRAIN,),
            constraints=Constraints(purposes=(PURPOSE,), model_export=True, **constraints),
        )

    return [offer("dp", epsilon=8.0, delta=1e-5, min_cohort=2), offer("open")]


@pytest.fixture(scope="session")
def federated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FederatedSpace]:
    root = tmp_path_factory.mktemp("federated")
    local = LocalDataSpace(root)
    local.create_ca()
    header, rows = read_rows(LENS_FAMILIES)
    partitions = partition_by_jurisdiction(rows, 3)
    small = [Partition(part.provider, part.jurisdictions, part.rows[:ROWS_PER_NODE]) for part in partitions]
    csv_paths = write_partitions(small, root / "data", header)
    coordinator_dir = local.issue(
        "coordinator", "ipspace-coordinator", Role.COORDINATOR, hosts=LOOPBACK_HOSTS
    )
    builder_dir = local.issue("builder", "acme", Role.BUILDER)
    servers: list[NodeServer] = []
    processes: list[ChildProcess] = []
    control: ControlClient | None = None
    runner: FlowerRunner | None = None
    try:
        link_port = free_port()
        superlink = start_superlink(
            coordinator_dir, host="127.0.0.1", port=link_port, state_dir=root / "superlink"
        )
        processes.append(superlink)
        wait_for_port("127.0.0.1", link_port, 60, superlink)
        control = ControlClient(f"127.0.0.1:{link_port}", (coordinator_dir / "ca.crt").read_bytes())
        nodes, addresses, supernodes, node_ids = {}, {}, {}, set()
        for part in small:
            org = f"office-{part.provider.removeprefix('provider-')}"
            node_dir = local.init_node(
                part.provider,
                org,
                offers=_offers(org),
                datasets={
                    DATASET: (csv_paths[part.provider], LENS_ID_FIELD, "Lens patent families", LENS_SOURCE)
                },
            )
            server = NodeServer(node_dir)
            servers.append(server)
            address = f"127.0.0.1:{server.start()}"
            (node_dir / "flower").mkdir(exist_ok=True)
            node_ids.add(control.register_node(write_supernode_key(node_dir / "flower"), name=part.provider))
            supernode = start_supernode(
                node_dir,
                superlink=f"127.0.0.1:{link_port}",
                node_address=address,
                identity_dir=node_dir / "identity",
                port=free_port(),
            )
            processes.append(supernode)
            nodes[org], addresses[org], supernodes[org] = node_dir, address, supernode
        deadline = time.monotonic() + 60
        while not node_ids <= control.online_nodes():
            assert time.monotonic() < deadline, "SuperNodes did not come online within 60 s"
            time.sleep(0.5)
        store = JobStore(root / "coordinator" / "jobs.db")
        registry = AgreementRegistry(root / "coordinator" / "agreements.db", local.ca.cert_pem)
        runner = FlowerRunner(store, registry, control, state_dir=root / "coordinator")
        yield FederatedSpace(local, store, registry, runner, nodes, addresses, builder_dir, supernodes)
    finally:
        if runner is not None:
            runner.close()
        if control is not None:
            control.close()
        for process in reversed(processes):
            process.stop()
        for server in servers:
            server.stop()
