"""``ipspace audit``: export a node's log (Audit RPCs), the coordinator's own (``/audit/log``) or the whole
data space's; verify any of them offline with the CA alone; and the regulator's views at the coordinator
(``status``, ``entries``, ``usage``, ``heads``: ``ipspace.cli_audit_view``, ``ipspace.cli_audit_heads``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from audit import BundleInvalid, verify_bundle
from audit.space_bundle import is_space_bundle, verify_space
from contracts.client import NodeClient
from crypto import Identity
from ipspace import cli_audit_heads, cli_audit_view
from ipspace.audit_export import export_coordinator_log, export_node_log, load_heads, save_heads
from ipspace.cli_identity import read_token
from ipspace.coordinator_client import CoordinatorClient
from ipspace.exit_codes import ExitCode

app = typer.Typer(
    help="Audit logs: export from a node, the coordinator or the whole data space, verify offline, and the "
    "regulator's views (status, entries, usage, heads).",
    no_args_is_help=True,
)
console = Console()
app.command("export-space")(cli_audit_view.export_space_command)
app.command("status")(cli_audit_view.status)
app.command("entries")(cli_audit_view.entries)
app.command("usage")(cli_audit_view.usage)
app.command("heads")(cli_audit_heads.heads)


@app.command("export")
def export(
    out: Path = typer.Argument(..., help="bundle directory to create"),
    node: str = typer.Option(None, help="a node's address, host:port (or give --coordinator)"),
    coordinator: str = typer.Option(
        None, help="the coordinator's URL, https://host:port, for its own log (or give --node)"
    ),
    identity: Path = typer.Option(..., help="a regulator's (or the provider's own) identity directory"),
    heads: Path = typer.Option(None, help="JSON file of heads kept from earlier exports; updated"),
) -> None:
    """Export a node's or the coordinator's whole audit log, with the heads you kept before and the proofs
    linking them."""
    if (node is None) == (coordinator is None):
        raise typer.BadParameter(
            "give exactly one of --node HOST:PORT (a node's log) and --coordinator https://HOST:PORT "
            "(the coordinator's own log)"
        )
    loaded = Identity.load(identity)
    kept = load_heads(heads) if heads else []
    if node is not None:
        with NodeClient(node, loaded, read_token(identity)) as client:
            fresh = export_node_log(client, out, ca_cert_pem=loaded.ca_cert_pem, kept_heads=kept)
    else:
        with CoordinatorClient(coordinator, identity, read_token(identity)) as client:
            fresh = export_coordinator_log(client, out, ca_cert_pem=loaded.ca_cert_pem, kept_heads=kept)
    if heads:
        save_heads(heads, [*kept, fresh])
    console.print(
        f"exported {fresh.tree_size:,} entries of {fresh.node} to {out} (root {fresh.root_hash[:16]}…)"
    )


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="a bundle written by 'audit export' or 'audit export-space'"),
    ca: Path = typer.Option(..., help="the data-space CA certificate (ca.crt): the only thing trusted"),
) -> None:
    """Verify a bundle offline: exit 0 with a summary when intact, exit 1 naming the first bad entry.

    A data-space bundle is verified log by log; exit 1 names every node (or the coordinator) whose log,
    heads or alerts fail.
    """
    if is_space_bundle(bundle):
        _verify_space(bundle, ca.read_bytes())
        return
    try:
        summary = verify_bundle(bundle, ca.read_bytes())
    except BundleInvalid as invalid:
        where = f"entry {invalid.first_bad_index}" if invalid.first_bad_index is not None else "bundle"
        console.print(f"[red]INVALID[/red] {bundle}: {where}: {invalid.reason}")
        raise typer.Exit(ExitCode.VERIFICATION_FAILED) from None
    console.print(
        f"[green]OK[/green] {summary.node} ({summary.org}): {summary.entries:,} entries, "
        f"{summary.heads} signed heads, root {summary.last_root[:16]}… at {summary.last_head_time}"
    )


def _verify_space(bundle: Path, ca_cert_pem: bytes) -> None:
    try:
        verdict = verify_space(bundle, ca_cert_pem)
    except BundleInvalid as invalid:
        console.print(f"[red]INVALID[/red] {bundle}: {invalid.reason}")
        raise typer.Exit(ExitCode.VERIFICATION_FAILED) from None
    for part in verdict.parts:
        label = f"{part.kind} {part.name}"
        if part.ok and part.summary is not None:
            summary = part.summary
            console.print(
                f"[green]OK[/green] {label}: {summary.entries:,} entries, {summary.heads} signed heads"
            )
            continue
        where = f" at entry {part.first_bad_index}" if part.first_bad_index is not None else ""
        console.print(f"[red]FAILED[/red] {label}{where}: " + "; ".join(part.problems))
    if not verdict.ok:
        console.print(f"[red]the data space does not verify[/red]: {', '.join(verdict.failing)}")
        raise typer.Exit(ExitCode.VERIFICATION_FAILED)
    console.print(f"[green]the data space verifies[/green] ({verdict.alerts_upheld} alerts upheld)")
