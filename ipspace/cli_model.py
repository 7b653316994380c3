"""``ipspace model``: trained models; ``model provenance verify`` checks where a model came from.

Offline, with the CA certificate alone: the coordinator's signature over the record, the model file's digest
and every node's signed tree head. With ``--node NAME=HOST:PORT`` (and an identity that may read the nodes'
audit logs: a regulator's, or a provider's own), each node's log is checked too: it must still extend the
recorded head and hold the job's Train calls (`ipspace.provenance_check`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from coordinator.provenance import InvalidProvenance, VerifiedProvenance, verify_provenance
from crypto import Identity
from ipspace.cli_identity import read_token
from ipspace.cli_match import node_addresses
from ipspace.exit_codes import ExitCode
from ipspace.provenance_check import NodeLogCheck, check_nodes, record_gaps

app = typer.Typer(help="Trained models: check their provenance.", no_args_is_help=True)
provenance_app = typer.Typer(
    help="A model's provenance record, signed by the coordinator.", no_args_is_help=True
)
app.add_typer(provenance_app, name="provenance")
console = Console()


@provenance_app.command("verify")
def verify(
    model: Path = typer.Argument(..., help="the model file, as 'ipspace job model' wrote it"),
    provenance: Path = typer.Option(..., help="the record, as 'ipspace job provenance' wrote it"),
    ca: Path = typer.Option(..., help="the data-space CA certificate (ca.crt): the only thing trusted"),
    identity: Path = typer.Option(
        None, help="with --node: an identity that may read the nodes' logs (a regulator's, a provider's own)"
    ),
    node: list[str] = typer.Option(
        [], help="NAME=HOST:PORT of a node of the record, to check its log too; repeat for each node"
    ),
    timeout: float = typer.Option(30.0, help="seconds to wait for each node call"),
) -> None:
    """Check a model's provenance: exit 0 when everything holds, 1 naming each node that fails and why."""
    addresses = node_addresses(node)
    if addresses and identity is None:
        raise typer.BadParameter("checking the nodes' logs (--node) needs --identity")
    try:
        document = json.loads(provenance.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise typer.BadParameter(f"{provenance} is not a JSON provenance record: {error}") from None
    try:
        verified = verify_provenance(document, ca.read_bytes(), model.read_bytes())
    except InvalidProvenance as invalid:
        console.print(f"[red]INVALID[/red] {provenance}: {invalid.reason}")
        raise typer.Exit(ExitCode.VERIFICATION_FAILED) from None
    _print_record(verified)
    failures = record_gaps(verified)
    if addresses:
        loaded = Identity.load(identity)
        checks = check_nodes(verified, addresses, loaded, read_token(identity), timeout_s=timeout)
        _print_checks(checks)
        failures += [(check.node, check.reason) for check in checks if not check.ok]
    for name, reason in failures:
        console.print(f"[red]FAILED[/red] {name}: {reason}")
    if failures:
        raise typer.Exit(ExitCode.VERIFICATION_FAILED)
    where = "; the nodes' logs hold it" if addresses else " (offline: add --node to check the nodes' logs)"
    console.print(f"[green]OK[/green] {model} is the model of job {verified.job_id}{where}")


def _print_record(verified: VerifiedProvenance) -> None:
    signer = verified.coordinator
    console.print(
        f"job {verified.job_id}: model sha256 {verified.model_sha256}, signed by {signer.org}/{signer.name}; "
        f"{len(verified.agreements)} agreements"
    )
    table = Table("node", "entries", "root", "signed at")
    for name, head in sorted(verified.node_heads.items()):
        table.add_row(name, f"{head.tree_size:,}", head.root_hash[:16] + "…", head.timestamp)
    console.print(table)


def _print_checks(checks: list[NodeLogCheck]) -> None:
    table = Table("node", "log", "entries then → now", "Train calls", "why")
    for check in checks:
        now = "?" if check.current_size is None else f"{check.current_size:,}"
        table.add_row(
            check.node,
            "[green]ok[/green]" if check.ok else "[red]fails[/red]",
            f"{check.recorded_size:,} → {now}",
            str(check.train_calls) if check.ok else "",
            check.reason,
        )
    console.print(table)
