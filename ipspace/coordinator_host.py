"""One coordinator, composed: its SuperLink, the job runner on it, and the job API in front of both.

`ipspace coordinator serve` and the demo run this. Order matters both ways: the SuperLink is up before the
API accepts jobs (a job is started on it at once), and on stop the API stops taking requests before the
runner and the SuperLink go.
"""

from __future__ import annotations

import socket

from coordinator.agreements import AgreementRegistry
from coordinator.api import create_app
from coordinator.flower.control import ControlClient
from coordinator.flower.runner import FlowerRunner
from coordinator.jobs import JobStore
from coordinator.server import CoordinatorServer
from coordinator.settings import CoordinatorSettings
from ipspace.flower_processes import ChildProcess, start_superlink, wait_for_port

SUPERLINK_START_S = 60.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class CoordinatorHost:
    def __init__(self, settings: CoordinatorSettings, *, superlink_port: int = 0) -> None:
        self.settings = settings
        self.superlink_port = superlink_port or free_port(settings.host)
        self.superlink: ChildProcess | None = None
        self.control: ControlClient | None = None
        self.runner: FlowerRunner | None = None
        self.server: CoordinatorServer | None = None
        self.api_port: int | None = None

    @property
    def superlink_address(self) -> str:
        return f"{self.settings.host}:{self.superlink_port}"

    def start(self) -> int:
        """Start everything; returns the API's port. Raises RuntimeError (with the SuperLink's log) if a
        part does not start."""
        settings = self.settings
        identity = settings.load_identity()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.superlink = start_superlink(
                settings.identity_dir,
                host=settings.host,
                port=self.superlink_port,
                state_dir=settings.data_dir / "superlink",
            )
            wait_for_port(settings.host, self.superlink_port, SUPERLINK_START_S, self.superlink)
            self.control = ControlClient(self.superlink_address, identity.ca_cert_pem)
            store = JobStore(settings.database, settings.models_dir)
            registry = AgreementRegistry(settings.database, identity.ca_cert_pem)
            self.runner = FlowerRunner(store, registry, self.control, state_dir=settings.data_dir)
            self.server = CoordinatorServer(settings, create_app(settings, self.runner))
            self.api_port = self.server.start()
        except BaseException:
            self.stop()
            raise
        return self.api_port

    def register_supernode(self, public_key: bytes, name: str) -> int:
        """Admit a node's SuperNode key (OpenSSH text); returns the Flower node id it will have."""
        if self.control is None:
            raise RuntimeError("the coordinator is not started")
        return self.control.register_node(public_key, name=name)

    def online_nodes(self) -> set[int]:
        return self.control.online_nodes() if self.control is not None else set()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.runner is not None:
            self.runner.close()
        if self.control is not None:
            self.control.close()
        if self.superlink is not None:
            self.superlink.stop()
        self.server = self.runner = self.control = self.superlink = None
