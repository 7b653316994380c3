"""``ipspace audit``: export a node's log over its Audit RPCs; verify a bundle offline with the CA alone."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from audit import BundleInvalid, verify_bundle
from contracts.client import NodeClient
from crypto import Identity
from ipspace.audit_export import export_node_log, load_heads, save_heads
from ipspace.cli_identity import read_token
from ipspace.exit_codes import ExitCode

app = typer.Typer(help="Audit logs: export from a node, verify offline.", no_args_is_help=True)
console = Console()


@app.command("export")
def export(
    out: Path = typer.Argument(..., help="bundle directory to create"),
    node: str = typer.Option(..., help="the node's address, host:port"),
    identity: Path = typer.Option(..., help="a regulator's (or the provider's own) identity directory"),
    heads: Path = typer.Option(None, help="JSON file of heads kept from earlier exports; updated"),
) -> None:
    """Export a node's whole audit log, with the heads you kept before and the proofs linking them."""
    loaded = Identity.load(identity)
    kept = load_heads(heads) if heads else []
    with NodeClient(node, loaded, read_token(identity)) as client:
        fresh = export_node_log(
            client,
            out,
            ca_cert_pem=loaded.ca_cert_pem,
            kept_heads=kept,
        )
    if heads:
        save_heads(heads, [*kept, fresh])
    console.print(
        f"exported {fresh.tree_size:,} entries of {fresh.node} to {out} (root {fresh.root_hash[:16]}…)"
    )


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="a bundle written by 'audit export'"),
    ca: Path = typer.Option(..., help="the data-space CA certificate (ca.crt): the only thing trusted"),
) -> None:
    """Verify a bundle offline: exit 0 with a summary when intact, exit 1 naming the first bad entry."""
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
