"""A private network of Linux network namespaces: one namespace per host, each with its own address.

The hosts hang off a bridge that lives in a namespace of its own (the "switch"), so the root namespace's
firewall never sees their traffic and nothing on this machine's own interfaces changes. The root namespace
gets one link into the switch (the "uplink", with the subnet's first address), so the test process itself can
reach the hosts as one more machine on the network. Names carry a random tag, so two runs never collide, and
everything is removed on exit, whatever happened.

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2; `unavailable_reason()` says why not, for a skip.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

IP_TIMEOUT_S = 10.0
SUBNET_PREFIX = "10.213"  # 10.213.X.0/24, X picked per run among the ones no route of this machine covers
GATEWAY_HOST = 1  # the root namespace's address on the subnet
FIRST_HOST = 10  # hosts are .10, .11, ...
NETNS_DIR = Path("/run/netns")


class NamespacesUnavailable(Exception):
    """Network namespaces cannot be created here; the message says why (for a pytest skip)."""


class NetworkSetupError(Exception):
    """An `ip` command that wires the network failed; the message names the command and iproute2's reason."""


@dataclass(frozen=True)
class Host:
    """One machine of the network: a namespace with one interface (eth0) at `address`."""

    role: str
    namespace: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host's namespace (iproute2 execs it: the PID stays the same)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def owns_process(self, pid: int) -> bool:
        """Whether process `pid` runs in this host's network namespace (and so sees only its network)."""
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(NETNS_DIR / self.namespace).st_ino


@dataclass
class PrivateNetwork:
    tag: str
    subnet: ipaddress.IPv4Network
    gateway: str  # the root namespace's address: where the test process's connections come from
    hosts: dict[str, Host] = field(default_factory=dict)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can (root, iproute2, `ip netns add` works)."""
    if os.geteuid() != 0:
        return f"creating network namespaces needs root; this runs as uid {os.geteuid()}"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"ipspace-probe-{secrets.token_hex(3)}"
    made = _run_ip("netns", "add", probe)
    if made.returncode != 0:
        return f"'ip netns add' fails here: {made.stderr.strip() or made.returncode}"
    _run_ip("netns", "del", probe)
    return None


@contextmanager
def private_network(roles: Sequence[str]) -> Iterator[PrivateNetwork]:
    """A network with one host per role, torn down on exit (processes left inside are killed first).

    Raises NamespacesUnavailable if the first namespace cannot be created, NetworkSetupError if wiring fails
    after that (the parts made so far are removed either way).
    """
    tag = secrets.token_hex(2)
    subnet = _free_subnet()
    switch = f"ipspace-{tag}-switch"
    uplink = f"ips{tag}up"
    namespaces: list[str] = []
    network = PrivateNetwork(tag, subnet, gateway=str(subnet.network_address + GATEWAY_HOST))
    try:
        made = _run_ip("netns", "add", switch)
        if made.returncode != 0:
            raise NamespacesUnavailable(f"'ip netns add' fails here: {made.stderr.strip()}")
        namespaces.append(switch)
        _ip("-n", switch, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        # The root namespace's way in: a veth whose other end is a port of the bridge.
        _ip("link", "add", uplink, "type", "veth", "peer", "name", "uplink", "netns", switch)
        _attach(switch, "uplink")
        _ip("addr", "add", f"{network.gateway}/{subnet.prefixlen}", "dev", uplink)
        _ip("link", "set", uplink, "up")
        for index, role in enumerate(roles):
            namespace = f"ipspace-{tag}-{role}"
            address = str(subnet.network_address + FIRST_HOST + index)
            _ip("netns", "add", namespace)
            namespaces.append(namespace)
            port = f"port{index}"
            _ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _attach(switch, port)
            _ip("-n", namespace, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")  # Flower's local ports listen on loopback
            # No default route: a host reaches only the subnet, so a stray name lookup fails at once instead
            # of waiting on a resolver it cannot reach (Python's http.server, for one, looks up its own name).
            network.hosts[role] = Host(role, namespace, address)
        yield network
    finally:
        for namespace in reversed(namespaces):
            _kill_leftovers(namespace)
            _run_ip("netns", "del", namespace)
        _run_ip("link", "del", uplink)  # normally gone with its peer in the switch; "cannot find" is fine


def _attach(switch: str, port: str) -> None:
    _ip("-n", switch, "link", "set", port, "master", "br0")
    _ip("-n", switch, "link", "set", port, "up")


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.213.X.0/24 that no address or route of the root namespace overlaps."""
    routes = _ip("-4", "-o", "route", "show", "table", "all").stdout
    used = _routed_networks(routes)
    candidates = list(range(1, 255))
    secrets.SystemRandom().shuffle(candidates)
    for third in candidates:
        subnet = ipaddress.ip_network(f"{SUBNET_PREFIX}.{third}.0/24")
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NetworkSetupError(f"every {SUBNET_PREFIX}.X.0/24 is already routed on this machine")


def _routed_networks(routes: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every prefix or address named in `ip route` output; other words (devices, metrics) are skipped."""
    found = []
    for word in routes.split():
        if "." not in word:
            continue
        try:
            found.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    return found


def _kill_leftovers(namespace: str) -> None:
    """SIGKILL, by PID, any process still in `namespace`: only processes this run started (or theirs) are
    there, and a namespace with processes in it would outlive its name."""
    listed = _run_ip("netns", "pids", namespace)
    for word in listed.stdout.split():
        try:
            os.kill(int(word), signal.SIGKILL)
        except ProcessLookupError:
            continue


def _run_ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    done = _run_ip(*args)
    if done.returncode != 0:
        raise NetworkSetupError(f"'ip {' '.join(args)}' failed: {done.stderr.strip() or done.returncode}")
    return done
