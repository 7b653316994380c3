"""A data space deployed the way separate machines run it: provisioned by the compose file's own script, each
party served by its own process inside its host's network namespace.

Provisioning is `deploy/compose/provision.sh`, the script the compose file's init job runs, given the hosts'
addresses on the namespace network instead of the compose service names (so every certificate names the
address its holder is reached at, and each TLS handshake checks the real host). Serving is
`ipspace coordinator serve` and `ipspace node serve --superlink`, started as compose starts them; each is
stopped by its PID's process group (a node stops its own SuperNode, the coordinator its SuperLink).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ipspace.flower_processes import ChildProcess
from ipspace.sample_data import LENS_FAMILIES
from node.partition import Partition, partition_by_jurisdiction, read_rows, write_partitions
from tests.deploy.netns import PrivateNetwork

REPO = Path(__file__).resolve().parents[2]
PROVISION_SCRIPT = REPO / "deploy" / "compose" / "provision.sh"
BUILDER_SCRIPT = REPO / "deploy" / "compose" / "builder.py"
ROWS_PER_NODE = 300
SUPERLINK_PORT = 9092
API_PORT = 8443
PROVISION_TIMEOUT_S = 180.0
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0  # a node stops its SuperNode, the coordinator its SuperLink, before they exit
COORDINATOR = "coordinator"
NODES = {"node-us": "us-patent-office", "node-eu": "eu-ip-exchange"}  # host role -> org, as provision.sh has


@dataclass
class Deployment:
    network: PrivateNetwork
    space: Path  # one directory per party, as the compose volumes are
    processes: dict[str, ChildProcess] = field(default_factory=dict)  # host role -> its serve process
    api_url: str = ""
    node_addresses: dict[str, str] = field(default_factory=dict)  # host role -> host:port of its gate

    @property
    def ca_cert_pem(self) -> bytes:
        return (self.space / "ca" / "ca.crt").read_bytes()

    @property
    def superlink_address(self) -> str:
        return f"{self.network.hosts[COORDINATOR].address}:{SUPERLINK_PORT}"

    def identity(self, party: str) -> Path:
        return self.space / party / "identity"

    def provision(self) -> None:
        """Run the compose init job's script with this network's addresses and a few hundred rows per node.
        Raises AssertionError with the script's output if it fails."""
        header, rows = read_rows(LENS_FAMILIES)
        parts = {part.provider: part for part in partition_by_jurisdiction(rows, 3)}
        small = [
            Partition(name, parts[name].jurisdictions, parts[name].rows[:ROWS_PER_NODE])
            for name in ("provider-us", "provider-eu")
        ]
        data_dir = self.space / "data"
        write_partitions(small, data_dir, header)
        hosts = self.network.hosts
        env = {
            **os.environ,
            "SPACE": str(self.space),
            "IPSPACE": str(Path(sys.executable).parent / "ipspace"),
            "DATA_DIR": str(data_dir),
            "COORDINATOR_HOST": hosts[COORDINATOR].address,
            "NODE_US_HOST": hosts["node-us"].address,
            "NODE_EU_HOST": hosts["node-eu"].address,
            "API_PORT": str(API_PORT),
        }
        done = subprocess.run(
            ["bash", str(PROVISION_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=PROVISION_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"provision.sh exited {done.returncode}:\n{done.stdout}\n{done.stderr}"

    def start(self) -> None:
        """Start the coordinator (admitting both SuperNode keys), then each node with its SuperNode; wait for
        their addresses. Raises RuntimeError with the process's log when one exits or does not come up."""
        coordinator_dir = self.space / COORDINATOR
        admit = [f"--admit={role}={coordinator_dir / 'admit' / f'{role}.pub'}" for role in NODES]
        self._serve(COORDINATOR, ["coordinator", "serve", str(coordinator_dir),
                                  "--superlink-port", str(SUPERLINK_PORT), *admit])  # fmt: skip
        self.api_url = self._wait_for_file(COORDINATOR, coordinator_dir / "api.addr")
        for role in NODES:
            node_dir = str(self.space / role)
            self._serve(role, ["node", "serve", node_dir, "--superlink", self.superlink_address])
        for role in NODES:
            self.node_addresses[role] = self._wait_for_file(role, self.space / role / "node.addr")

    def stop(self) -> None:
        """Nodes first (their SuperNodes leave), then the coordinator; each by its process group."""
        for role in [*NODES, COORDINATOR]:
            if role in self.processes:
                self.processes[role].stop(grace_s=STOP_GRACE_S)

    def _serve(self, role: str, arguments: list[str]) -> None:
        argv = self.network.hosts[role].command([sys.executable, "-m", "ipspace", *arguments])
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.processes[role] = ChildProcess.start(role, argv, env, self.space / "logs" / f"{role}.log")

    def _wait_for_file(self, role: str, path: Path) -> str:
        process = self.processes[role]
        deadline = time.monotonic() + START_TIMEOUT_S
        while not path.exists():
            if not process.alive():
                raise RuntimeError(f"{role} exited with {process.popen.returncode}:\n{process.log_tail(40)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no {path.name} from {role} in {START_TIMEOUT_S:.0f} s:\n{process.log_tail()}"
                )
            time.sleep(0.2)
        return path.read_text().strip()
