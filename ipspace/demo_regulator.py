"""The demo's last step: the regulator's verification of the whole data space, and where the dashboard is.

The coordinator pulls a fresh signed head from every node and verifies every log into its index; then the
regulator exports the whole data space (the coordinator's own log, each node's log straight from the node,
the kept heads and alerts) and verifies that bundle offline, trusting only the CA certificate.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from audit import decode_leaf
from audit.space_bundle import COORDINATOR_DIR, NODES_DIR, verify_space
from crypto import Identity
from ipspace.cli_identity import read_token
from ipspace.coordinator_client import CoordinatorClient
from ipspace.local_space import LocalDataSpace
from ipspace.space_export import export_space

console = Console()


def run_regulator_check(
    regulator: Path,
    url: str,
    addresses: dict[str, str],
    root: Path,
    space: LocalDataSpace,
    *,
    results: dict[str, dict[str, object]],
) -> None:
    """The coordinator pulls fresh heads and verifies every log into its index; the regulator exports the
    whole data space and verifies that bundle offline with the CA certificate alone."""
    token = read_token(regulator)
    bundle = root / "space-bundle"
    with CoordinatorClient(url, regulator, token) as client:
        client.collect_heads()
        index = {item["log"]: item["state"] for item in client.audit_status(sync=True)}
        alerts = client.alerts()
        export_space(
            bundle, coordinator=client, nodes=addresses, identity=Identity.load(regulator), token=token
        )
    verdict = verify_space(bundle, space.ca.cert_pem)
    for part in verdict.parts:
        result = results.setdefault(part.name, {})
        result["index"] = index.get(part.name, "-")
        if part.ok and part.summary is not None:
            result["verified"] = f"OK ({part.summary.entries})"
        else:
            where = f" at {part.first_bad_index}" if part.first_bad_index is not None else ""
            result["verified"] = f"FAILED{where}: {'; '.join(part.problems)}"
        log_dir = bundle / (COORDINATOR_DIR if part.kind == "coordinator" else f"{NODES_DIR}/{part.name}")
        if (log_dir / "entries.jsonl").exists():
            leaves = (log_dir / "entries.jsonl").read_bytes().splitlines()
            decisions = [decode_leaf(leaf)[1].decision for leaf in leaves]
            result["allowed"], result["denied"] = decisions.count("allow"), decisions.count("deny")
    states = ", ".join(f"{log} {state}" for log, state in sorted(index.items()))
    console.print(f"  the coordinator's index: {states}; {len(alerts)} alert(s)")
    if verdict.ok:
        console.print("  [green]the data space verifies[/green] offline, with only the CA certificate:")
    else:
        console.print(f"  [red]the data space FAILS[/red] offline: {', '.join(verdict.failing)}")
    console.print(
        f"  {sum(part.ok for part in verdict.parts)} of {len(verdict.parts)} logs; bundle in {bundle}"
    )


def print_dashboard(url: str, regulator: Path, builder: Path) -> None:
    console.print(
        f"[bold]Dashboard[/bold]: {url}/dashboard/ (present a member's client certificate, e.g. "
        f"{regulator}/tls.crt and tls.key, and sign in with its token, {regulator}/token; the builder's view "
        f"with {builder})"
    )
