"""A whole federated data space for the job tests: 3 real nodes, their SuperNodes, a SuperLink and the runner.

Everything is really started: the nodes' gRPC gates (in this process), the SuperLink and three SuperNodes
(child processes, stopped by PID), and Flower's own ServerApp and ClientApp processes under them. The nodes
hold real Lens rows (a few hundred each, split by jurisdiction as three offices would hold them) and, for
matching jobs, a slice of their CPC sections' human-rated phrase pairs embedded with all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.job_grants import TaskName, TrainingSettings, sign_job_grant
from contracts.offers import Action, Constraints, Offer
from coordinator.agreements import AgreementRegistry
from coordinator.flower.control import ControlClient
from coordinator.flower.runner import FlowerRunner
from coordinator.job_spec import JobRecord, JobSpec, JobState, new_job_id
from coordinator.jobs import JobStore, recover_jobs
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
from ipspace.sample_data import (
    LENS_FAMILIES,
    LENS_ID_FIELD,
    LENS_SOURCE,
    PHRASE_PAIRS_ID_FIELD,
    PHRASE_PAIRS_SOURCE,
    write_phrase_pair_share,
)
from node.partition import Partition, partition_by_jurisdiction, read_rows, write_partitions
from node.server import NodeServer

ROWS_PER_NODE = 300
DATASET = "families"
PAIRS_DATASET = "pairs"
PAIRS_PER_NODE = (60, 20)  # train, valid
PURPOSE = "valuation"
FAST = TrainingSettings(local_steps=5, batch_size=64)
FAST_MATCHING = TrainingSettings(local_steps=5, batch_size=32, learning_rate=1.0, max_grad_norm=1.0)


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

    def submit(
        self,
        agreements: list[Agreement],
        *,
        rounds: int,
        epsilon: float | None,
        secagg: bool,
        task: TaskName = "valuation",
    ) -> str:
        builder = Identity.load(self.builder_dir)
        job_id = new_job_id()
        settings = FAST_MATCHING if task == "matching" else FAST
        grants = {
            agreement.agreement_id: sign_job_grant(
                builder,
                agreement,
                job_id=job_id,
                rounds=rounds,
                epsilon=epsilon,
                task=task,
                settings=settings,
            ).model_dump_json()
            for agreement in agreements
        }
        spec = JobSpec(
            task=task,
            dataset=agreements[0].terms.dataset,
            purpose=PURPOSE,
            agreements=tuple(agreement.agreement_id for agreement in agreements),
            rounds=rounds,
            epsilon=epsilon,
            model=settings,
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


def _pairs_offer(org: str) -> Offer:
    return Offer(
        offer_id=f"{org}-pairs-dp",
        provider_org=org,
        dataset=PAIRS_DATASET,
        actions=(Action.TRAIN,),
        constraints=Constraints(
            purposes=(PURPOSE,), model_export=True, epsilon=8.0, delta=1e-5, min_cohort=2
        ),
    )


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
        for share, part in enumerate(small):
            org = f"office-{part.provider.removeprefix('provider-')}"
            pairs = root / "data" / f"{part.provider}-pairs.csv"
            write_phrase_pair_share(pairs, share, limits=PAIRS_PER_NODE)
            node_dir = local.init_node(
                part.provider,
                org,
                offers=[*_offers(org), _pairs_offer(org)],
                datasets={
                    DATASET: (csv_paths[part.provider], LENS_ID_FIELD, "Lens patent families", LENS_SOURCE),
                    PAIRS_DATASET: (pairs, PHRASE_PAIRS_ID_FIELD, "rated phrase pairs", PHRASE_PAIRS_SOURCE),
                },
                embed_each={PAIRS_DATASET: ("anchor", "target")},
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


# --- A space of its own for the fault tests (tests/federated/test_faults.py) --------------------------------
# The fault tests stop and kill SuperNodes and restart the coordinator's runner, so they run on a space that
# no other test shares, and that keeps what starting each part again needs.

COHORT_OF_ALL = 3  # the `<org>-dp3` offers: a SecAgg+ cohort of all three nodes
# Where FlowerRunner keeps its job -> run id map for a restarted coordinator (coordinator/flower/runner.py).
RUNS_FILE = "flower-runs.json"
ONLINE_TIMEOUT_S = 60.0


def fault_offers(org: str) -> list[Offer]:
    """The session space's offers, plus `<org>-dp3`: the same DP budget, but a cohort of all three nodes."""
    all_three = Offer(
        offer_id=f"{org}-dp3",
        provider_org=org,
        dataset=DATASET,
        actions=(Action.TRAIN,),
        constraints=Constraints(
            purposes=(PURPOSE,), model_export=True, epsilon=8.0, delta=1e-5, min_cohort=COHORT_OF_ALL
        ),
    )
    return [*_offers(org), all_three]


@dataclass(kw_only=True)
class FaultSpace(FederatedSpace):
    """A FederatedSpace whose SuperNodes and coordinator runner a test may stop and start again."""

    root: Path
    coordinator_dir: Path
    regulator_dir: Path
    link_port: int
    superlink: ChildProcess
    control: ControlClient
    node_ids: dict[str, int]  # org -> the Flower node id its SuperNode key was registered as

    @property
    def superlink_address(self) -> str:
        return f"127.0.0.1:{self.link_port}"

    def run_id(self, job_id: str) -> int:
        """The SuperLink run of a job, as the runner recorded it for a restarted coordinator."""
        return int(json.loads((self.root / "coordinator" / RUNS_FILE).read_text())[job_id])

    def start_supernode(self, org: str) -> ChildProcess:
        """Start `org`'s SuperNode with the key it was registered with (after a kill); wait until online."""
        node_dir = self.nodes[org]
        self.supernodes[org] = start_supernode(
            node_dir,
            superlink=self.superlink_address,
            node_address=self.addresses[org],
            identity_dir=node_dir / "identity",
            port=free_port(),
        )
        self.wait_online(set(self.nodes))
        return self.supernodes[org]

    def wait_online(self, orgs: set[str], timeout_s: float = ONLINE_TIMEOUT_S) -> None:
        wanted = {self.node_ids[org] for org in orgs}
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.control.online_nodes():
            assert time.monotonic() < deadline, (
                f"SuperNodes of {sorted(orgs)} not online within {timeout_s} s"
            )
            time.sleep(0.5)

    def stop_coordinator(self) -> None:
        """Stop the job runner (its watchers) and its Control connection, as a coordinator going down does;
        the SuperLink and the jobs' runs on it go on."""
        self.runner.close()
        self.control.close()

    def start_coordinator(self) -> list[JobRecord]:
        """A new Control connection and runner over the same job store and registry, then restart recovery
        as a coordinator runs it at start. Returns the jobs recovery marked interrupted."""
        self.control = ControlClient(self.superlink_address, self.local.ca.cert_pem)
        self.runner = FlowerRunner(
            self.store, self.registry, self.control, state_dir=self.root / "coordinator"
        )
        return recover_jobs(self.store, self.runner)


@contextmanager
def fault_space(root: Path) -> Iterator[FaultSpace]:
    """The session space's setup (3 nodes with `fault_offers`, SuperLink, SuperNodes, runner) plus a
    regulator who exports the nodes' audit logs; everything started is stopped on exit, by PID."""
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
    regulator_dir = local.issue("regulator", "ip-regulator", Role.REGULATOR)
    servers: list[NodeServer] = []
    space: FaultSpace | None = None
    superlink: ChildProcess | None = None
    control: ControlClient | None = None
    supernodes: dict[str, ChildProcess] = {}
    try:
        link_port = free_port()
        superlink = start_superlink(
            coordinator_dir, host="127.0.0.1", port=link_port, state_dir=root / "superlink"
        )
        wait_for_port("127.0.0.1", link_port, 60, superlink)
        control = ControlClient(f"127.0.0.1:{link_port}", local.ca.cert_pem)
        nodes, addresses, node_ids = {}, {}, {}
        for part in small:
            org = f"office-{part.provider.removeprefix('provider-')}"
            node_dir = local.init_node(
                part.provider,
                org,
                offers=fault_offers(org),
                datasets={
                    DATASET: (csv_paths[part.provider], LENS_ID_FIELD, "Lens patent families", LENS_SOURCE)
                },
            )
            server = NodeServer(node_dir)
            servers.append(server)
            nodes[org], addresses[org] = node_dir, f"127.0.0.1:{server.start()}"
            (node_dir / "flower").mkdir(exist_ok=True)
            node_ids[org] = control.register_node(
                write_supernode_key(node_dir / "flower"), name=part.provider
            )
            supernodes[org] = start_supernode(
                node_dir,
                superlink=f"127.0.0.1:{link_port}",
                node_address=addresses[org],
                identity_dir=node_dir / "identity",
                port=free_port(),
            )
        store = JobStore(root / "coordinator" / "jobs.db")
        registry = AgreementRegistry(root / "coordinator" / "agreements.db", local.ca.cert_pem)
        space = FaultSpace(
            local=local,
            store=store,
            registry=registry,
            runner=FlowerRunner(store, registry, control, state_dir=root / "coordinator"),
            nodes=nodes,
            addresses=addresses,
            builder_dir=builder_dir,
            supernodes=supernodes,
            root=root,
            coordinator_dir=coordinator_dir,
            regulator_dir=regulator_dir,
            link_port=link_port,
            superlink=superlink,
            control=control,
            node_ids=node_ids,
        )
        space.wait_online(set(nodes))
        yield space
    finally:
        if space is not None:  # the parts a test may have replaced are the space's, not the locals above
            space.runner.close()
            control, superlink, supernodes = space.control, space.superlink, space.supernodes
        if control is not None:
            control.close()
        for process in supernodes.values():
            process.stop()
        if superlink is not None:
            superlink.stop()
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultSpace]:
    with fault_space(tmp_path_factory.mktemp("faults")) as space:
        yield space
