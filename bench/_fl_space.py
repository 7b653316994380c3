"""The federated data space the round benchmark runs on: the project's own stack, started for real.

Three provider nodes (the real `NodeServer`, each in a spawned process of its own, as three offices would run
them), a SuperLink and three SuperNodes started by `ipspace.flower_processes`, the coordinator's `JobStore`,
agreement registry and `FlowerRunner`. The same build as tests/federated/conftest.py, except that the nodes
do not share the benchmark's process (one GIL for three nodes' training would not be a deployment).

Flower's processes run with `FLWR_LOG_LEVEL=DEBUG`, Flower's public switch for timestamped log lines: the
SuperNode logs every message it receives and sends and every Runtime API call of its ClientApp processes,
the SuperLink every message the ServerApp pushes. Those lines are the timeline `bench._fl_timeline` reads.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flwr.supercore.fab import Fab

from bench import BenchFailed
from bench._servers import GATED, ServerProcess
from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.job_grants import TrainingSettings, sign_job_grant
from contracts.offers import Action, Constraints, Offer
from coordinator.agreements import AgreementRegistry
from coordinator.flower.control import ControlClient
from coordinator.flower.runner import FlowerRunner
from coordinator.job_spec import JobRecord, JobSpec, JobState, new_job_id
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

DATASET = "families"
PURPOSE = "valuation"
ROWS_PER_NODE = 300  # as the job tests: a few hundred rows each, so the local step stays small
SETTINGS = TrainingSettings(local_steps=5, batch_size=64)
OPEN_OFFER = "open"  # no privacy budget, no minimum cohort: the plain jobs
DP_OFFER = "dp"  # epsilon 8, a SecAgg+ cohort of at least 2: the SecAgg+ jobs, as the demo runs them
ONLINE_TIMEOUT_S = 90.0
START_TIMEOUT_S = 60.0
LOG_LEVEL_VARIABLE = "FLWR_LOG_LEVEL"
RUNNER_DIR_PREFIX = "runner-"
WARNINGS_VARIABLE, QUIET = "PYTHONWARNINGS", "ignore::UserWarning"


class ServerPollControl(ControlClient):
    """A Control API client that starts every run with the ServerApp's reply poll set to `poll_interval` s.

    The runner passes its run config through `start_run`; overriding that one key here leaves the runner's
    own logic untouched (the shipped default comes from deploy/flower_app/pyproject.toml).
    """

    def __init__(self, address: str, ca_cert_pem: bytes, poll_interval: float) -> None:
        super().__init__(address, ca_cert_pem)
        self.poll_interval = poll_interval

    def start_run(self, fab: Fab, run_config: dict[str, bool | int | float | str]) -> int:
        return super().start_run(fab, {**run_config, "poll-interval": self.poll_interval})


@dataclass
class NodeHandle:
    org: str
    node_dir: Path
    server: ServerProcess  # the node's gate, in its own process
    flower_node_id: int
    supernode: ChildProcess | None = None  # replaced when the SuperNodes are restarted

    @property
    def audit_db(self) -> Path:
        return self.node_dir / "node.db"

    @property
    def identity_dir(self) -> Path:
        return self.node_dir / "identity"


@dataclass
class FlSpace:
    root: Path
    local: LocalDataSpace
    builder_dir: Path
    superlink: ChildProcess
    link_address: str
    control: ControlClient
    store: JobStore
    registry: AgreementRegistry
    nodes: dict[str, NodeHandle]
    partitions: dict[str, Partition]  # org -> the rows its node holds
    runners: dict[float | None, FlowerRunner] = field(default_factory=dict)  # poll override -> runner
    poll_controls: list[ServerPollControl] = field(default_factory=list)  # closed after their runners

    def agreements(self, offer: str) -> list[Agreement]:
        """One fresh agreement per node on `<org>-<offer>`, approved by the node and registered."""
        builder = Identity.load(self.builder_dir)
        found = []
        for org, node in self.nodes.items():
            with NodeClient(node.server.address, builder, read_token(self.builder_dir)) as client:
                status = client.request_agreement(client.offer(f"{org}-{offer}"), PURPOSE)
            if status.state != "approved":
                raise BenchFailed(f"{org} did not approve the {offer} agreement: {status.state}")
            self.registry.register(status.agreement, builder.principal())
            found.append(status.agreement)
        return found

    def runner(self, poll_interval: float | None) -> FlowerRunner:
        """The job runner; with `poll_interval`, one whose runs poll for replies at that interval."""
        if poll_interval not in self.runners:
            control = self.control
            if poll_interval is not None:
                control = ServerPollControl(self.link_address, self.local.ca.cert_pem, poll_interval)
                self.poll_controls.append(control)
            # A state directory of its own: each runner rewrites its run-id file from its own memory.
            state_dir = self.root / "coordinator" / f"{RUNNER_DIR_PREFIX}{poll_interval or 'shipped'}"
            state_dir.mkdir(parents=True, exist_ok=True)
            self.runners[poll_interval] = FlowerRunner(
                self.store, self.registry, control, state_dir=state_dir
            )
        return self.runners[poll_interval]

    def restart_supernodes(self, environment: dict[str, str]) -> None:
        """Stop every SuperNode (by PID) and start it again with `environment` added to its own."""
        for node in self.nodes.values():
            if node.supernode is not None:
                node.supernode.stop()
            node.supernode = _start_supernode(node, self.link_address, environment)
        _wait_online(self.control, self.nodes)

    def submit(
        self,
        agreements: list[Agreement],
        *,
        rounds: int,
        epsilon: float | None,
        secagg: bool,
        poll_interval: float | None,
    ) -> tuple[str, float]:
        """Sign the builder's grants, store the job, start its run; returns (job id, wall time of start)."""
        builder = Identity.load(self.builder_dir)
        job_id = new_job_id()
        grants = {
            agreement.agreement_id: sign_job_grant(
                builder, agreement, job_id=job_id, rounds=rounds, epsilon=epsilon, settings=SETTINGS
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
            model=SETTINGS,
            secagg=secagg,
        )
        self.store.create(job_id=job_id, org="acme", submitted_by="builder", spec=spec, grants=grants)
        started = time.time()
        self.runner(poll_interval).start(job_id)
        return job_id, started

    def wait(self, job_id: str, timeout_s: float) -> JobRecord:
        """The job once it ended; raises BenchFailed if it is still queued or running after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = self.store.get(job_id)
            if record.state not in (JobState.QUEUED, JobState.RUNNING):
                return record
            time.sleep(0.2)
        raise BenchFailed(f"job {job_id} still {self.store.get(job_id).state} after {timeout_s:.0f} s")


def _offers(org: str) -> list[Offer]:
    def offer(name: str, **constraints: object) -> Offer:
        return Offer(
            offer_id=f"{org}-{name}",
            provider_org=org,
            dataset=DATASET,
            actions=(Action.TRAIN,),
            constraints=Constraints(purposes=(PURPOSE,), model_export=True, **constraints),
        )

    return [offer(DP_OFFER, epsilon=8.0, delta=1e-5, min_cohort=2), offer(OPEN_OFFER)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Processes started inside inherit `values` (ipspace.flower_processes and multiprocessing's spawn pass
    this process's environment on); restored after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _flower_environment(extra: dict[str, str]) -> AbstractContextManager[None]:
    """Flower's timestamped DEBUG lines, and `extra`."""
    return _environment({LOG_LEVEL_VARIABLE: "DEBUG", **extra})


def _start_supernode(node: NodeHandle, link_address: str, environment: dict[str, str]) -> ChildProcess:
    with _flower_environment(environment):
        return start_supernode(
            node.node_dir,
            superlink=link_address,
            node_address=node.server.address,
            identity_dir=node.identity_dir,
            port=_free_port(),
        )


@contextmanager
def federated_space(root: Path) -> Iterator[FlSpace]:
    """Build and start the whole space under `root`; on exit stop every process it started, by PID."""
    local = LocalDataSpace(root)
    local.create_ca()
    header, rows = read_rows(LENS_FAMILIES)
    small = [
        Partition(part.provider, part.jurisdictions, part.rows[:ROWS_PER_NODE])
        for part in partition_by_jurisdiction(rows, 3)
    ]
    csv_paths = write_partitions(small, root / "data", header)
    coordinator_dir = local.issue(
        "coordinator", "ipspace-coordinator", Role.COORDINATOR, hosts=LOOPBACK_HOSTS
    )
    builder_dir = local.issue("builder", "acme", Role.BUILDER)
    with ExitStack() as stack:
        link_port = _free_port()
        with _flower_environment({}):
            superlink = start_superlink(
                coordinator_dir, host="127.0.0.1", port=link_port, state_dir=root / "superlink"
            )
        stack.callback(superlink.stop)
        wait_for_port("127.0.0.1", link_port, START_TIMEOUT_S, superlink)
        link_address = f"127.0.0.1:{link_port}"
        control = ControlClient(link_address, local.ca.cert_pem)
        stack.callback(control.close)
        nodes: dict[str, NodeHandle] = {}
        partitions: dict[str, Partition] = {}
        stack.callback(_stop_supernodes, nodes)  # whichever SuperNodes are running then
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
            with _environment({WARNINGS_VARIABLE: QUIET}):  # Opacus warns on every step
                server = stack.enter_context(ServerProcess(GATED, node_dir))
            (node_dir / "flower").mkdir(exist_ok=True)
            node_id = control.register_node(write_supernode_key(node_dir / "flower"), name=part.provider)
            nodes[org] = node = NodeHandle(org, node_dir, server, node_id)
            node.supernode = _start_supernode(node, link_address, {})
            partitions[org] = part
        _wait_online(control, nodes)
        space = FlSpace(
            root=root,
            local=local,
            builder_dir=builder_dir,
            superlink=superlink,
            link_address=link_address,
            control=control,
            store=JobStore(root / "coordinator" / "jobs.db"),
            registry=AgreementRegistry(root / "coordinator" / "agreements.db", local.ca.cert_pem),
            nodes=nodes,
            partitions=partitions,
        )
        stack.callback(_close_runners, space)
        yield space


def _wait_online(control: ControlClient, nodes: dict[str, NodeHandle]) -> None:
    wanted = {node.flower_node_id for node in nodes.values()}
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    while not wanted <= control.online_nodes():
        for node in nodes.values():
            if node.supernode is not None and not node.supernode.alive():
                raise BenchFailed(f"the SuperNode of {node.org} exited:\n{node.supernode.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchFailed(f"the SuperNodes were not online within {ONLINE_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


def _stop_supernodes(nodes: dict[str, NodeHandle]) -> None:
    for node in nodes.values():
        if node.supernode is not None:
            node.supernode.stop()


def _close_runners(space: FlSpace) -> None:
    for runner in space.runners.values():
        runner.close()
    for control in space.poll_controls:
        control.close()
