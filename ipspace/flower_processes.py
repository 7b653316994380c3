"""Start and stop the Flower side of a data space: the coordinator's SuperLink and each node's SuperNode.

The SuperLink serves TLS with the coordinator's certificate from the data space's CA and admits only
SuperNodes whose keys were registered (`--enable-supernode-auth`); it installs nothing at run time. Each
node's SuperNode authenticates with its own EC key (OpenSSH format, kept in the node's directory) and hands
its ClientApp, through `--node-config`, the address of the node's gate and the node's identity directory.
Every process is started in its own session and stopped by its PID's process group, so the ServerApp and
ClientApp processes Flower spawns go with it. On Linux it is also told to end when its parent does (the
parent-death signal), so a parent killed without the chance to stop it leaves nothing running behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.identity import CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE

BIN = Path(sys.executable).parent
SUPERNODE_KEY = "supernode_key"
STOP_GRACE_S = 5.0


def flower_environment(home: Path) -> dict[str, str]:
    """The environment of a Flower process: its own FLWR_HOME, no telemetry, no update checks (offline), and
    this interpreter's scripts first on PATH (the SuperLink and SuperNodes start `flower-superexec` by
    name)."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }


@dataclass
class ChildProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> ChildProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if sys.platform == "linux":  # the child ends with this process, even one killed without cleaning up
            argv = [sys.executable, "-m", "ipspace.end_with_parent", str(os.getpid()), *argv]
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return cls(name, popen, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `grace_s`."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait_s)
                os.killpg(self.pid, signal.SIGKILL)  # children Flower spawned in the group, if any remain
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def write_supernode_key(directory: Path) -> bytes:
    """Create the node's SuperNode key pair (EC P-384, OpenSSH format) unless it exists; return its public
    key."""
    private_path, public_path = directory / SUPERNODE_KEY, directory / f"{SUPERNODE_KEY}.pub"
    if not private_path.exists():
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(private)
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        public_path.write_bytes(public + b"\n")
    return public_path.read_bytes()


def start_superlink(identity_dir: Path, *, host: str, port: int, state_dir: Path) -> ChildProcess:
    """The SuperLink (Fleet, Control and ServerAppIo APIs on one port), with TLS and SuperNode auth."""
    argv = [
        str(BIN / "flower-superlink"),
        "--ssl-ca-certfile", str(identity_dir / CA_CERT_FILE),
        "--ssl-certfile", str(identity_dir / TLS_CERT_FILE),
        "--ssl-keyfile", str(identity_dir / TLS_KEY_FILE),
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--host", host,
        "--port", str(port),
        "--database", str(state_dir / "superlink.db"),
    ]  # fmt: skip
    env = flower_environment(state_dir / "flwr-home")
    return ChildProcess.start("superlink", argv, env, state_dir / "superlink.log")


def start_supernode(
    node_dir: Path, *, superlink: str, node_address: str, identity_dir: Path, port: int
) -> ChildProcess:
    """The node's SuperNode, authenticated by its key; its ClientApp reaches the gate at `node_address`."""
    flower_dir = node_dir / "flower"
    node_config = f'node-address="{node_address}" identity-dir="{identity_dir}"'
    argv = [
        str(BIN / "flower-supernode"),
        "--superlink", superlink,
        "--root-certificates", str(identity_dir / CA_CERT_FILE),
        "--auth-supernode-private-key", str(flower_dir / SUPERNODE_KEY),
        "--port", str(port),
        "--node-config", node_config,
    ]  # fmt: skip
    env = flower_environment(flower_dir / "flwr-home")
    return ChildProcess.start(f"supernode-{node_dir.name}", argv, env, flower_dir / "supernode.log")


def wait_for_port(host: str, port: int, timeout_s: float, process: ChildProcess) -> None:
    """Wait until `host:port` accepts connections; raise RuntimeError with the process's log if it dies."""
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(
                f"{process.name} exited with status {process.popen.returncode}:\n{process.log_tail()}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(
        f"{process.name} did not listen on {host}:{port} within {timeout_s} s:\n{process.log_tail()}"
    )
