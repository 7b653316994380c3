"""The regulator's commands over the coordinator's verified index and over a whole-space export:
``ipspace audit status | entries | usage | export-space``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crypto import Identity
from ipspace.cli_identity import read_token
from ipspace.cli_match import node_addresses
from ipspace.coordinator_client import CoordinatorClient
from ipspace.exit_codes import ExitCode
from ipspace.space_export import export_space

console = Console()
COORDINATOR_HELP = "the coordinator's URL, https://HOST:PORT"
IDENTITY_HELP = "a regulator's identity directory"


def status(
    coordinator: str = typer.Option(..., help=COORDINATOR_HELP),
    identity: Path = typer.Option(..., help=IDENTITY_HELP),
    sync: bool = typer.Option(False, "--sync", help="first pull and verify every log's new entries"),
    full: bool = typer.Option(False, "--full", help="with --sync: fetch every entry again and compare"),
) -> None:
    """Each log's verification state: verified up to which head, or the first bad entry and why.

    Exits 1 when a log failed or an alert was raised against it.
    """
    with CoordinatorClient(coordinator, identity, read_token(identity)) as client:
        logs = client.audit_status(sync=sync or full, full=full)
    table = Table(title="audit logs of the data space")
    for column in ("log", "state", "verified entries", "head signed at", "first bad entry", "alerts", "why"):
        table.add_column(column)
    for item in logs:
        colour = {"verified": "green", "failed": "red"}.get(item["state"], "yellow")
        head = item.get("head") or {}
        bad = item["first_bad_index"]
        table.add_row(
            escape(item["log"]),
            f"[{colour}]{item['state']}[/{colour}]",
            f"{item['verified_size']:,}",
            head.get("timestamp", "-"),
            "-" if bad is None else str(bad),
            str(item["alerts"]),
            escape(item["reason"]),
        )
    console.print(table)
    if any(item["state"] == "failed" or item["alerts"] for item in logs):
        raise typer.Exit(ExitCode.VERIFICATION_FAILED)


def entries(
    coordinator: str = typer.Option(..., help=COORDINATOR_HELP),
    identity: Path = typer.Option(..., help=IDENTITY_HELP),
    log: str = typer.Option(None, help="one log: a node's name, or the coordinator's"),
    dataset: str = typer.Option(None),
    org: str = typer.Option(None, help="the caller's org"),
    agreement: str = typer.Option(None, help="an agreement id"),
    purpose: str = typer.Option(None),
    denied: bool = typer.Option(False, "--denied", help="only refusals, with their reasons"),
    since: str = typer.Option(None, help="RFC 3339 UTC, e.g. 2026-11-21T00:00:00Z"),
    until: str = typer.Option(None, help="RFC 3339 UTC"),
    limit: int = typer.Option(50, min=1, max=500),
) -> None:
    """Who accessed what, under which agreement and purpose: the newest matching entries."""
    with CoordinatorClient(coordinator, identity, read_token(identity)) as client:
        page = client.indexed_entries(
            log=log,
            dataset=dataset,
            org=org,
            agreement=agreement,
            purpose=purpose,
            decision="deny" if denied else None,
            since=since,
            until=until,
            limit=limit,
        )
    table = Table(title=f"{len(page['entries'])} of {page['total']:,} matching entries, newest first")
    for column in ("time", "log", "#", "who", "method", "purpose", "decision", "reason"):
        table.add_column(column, overflow="fold")
    for item in page["entries"]:
        allowed = item["decision"] == "allow"
        table.add_row(
            item["time"][:19],
            escape(item["log"]),
            str(item["index"]),
            escape(f"{item['actor']} ({item['org']}, {item['role']})"),
            escape(item["method"].rsplit("/", 1)[-1]),
            escape(item["purpose"] or "-"),
            "[green]allow[/green]" if allowed else f"[red]{item['status']}[/red]",
            escape(item["reason"]),
        )
    console.print(table)


def usage(
    coordinator: str = typer.Option(..., help=COORDINATOR_HELP),
    identity: Path = typer.Option(..., help=IDENTITY_HELP),
) -> None:
    """Per agreement: epsilon spent, match queries and revealed records used, against its limits."""
    with CoordinatorClient(coordinator, identity, read_token(identity)) as client:
        items = client.audit_usage()
    table = Table(title="use of each agreement against its limits")
    for column in (
        "agreement",
        "consumer → provider",
        "purpose",
        "ε spent / limit",
        "match queries",
        "revealed",
        "denied",
        "revoked",
    ):
        table.add_column(column)
    for item in items:
        table.add_row(
            item["agreement_id"][:12] + "…",
            escape(f"{item['consumer_org'] or '?'} → {item['provider_org'] or '?'}"),
            escape(item["purpose"] or "-"),
            _of(item["epsilon_spent"], item["epsilon_limit"], "{:.2f}"),
            _of(item["match_queries"], item["match_queries_limit"], "{}"),
            _of(item["reveal_records"], item["reveal_records_limit"], "{}"),
            str(item["denied"]),
            item["revoked_at"] or "-",
        )
    console.print(table)


def export_space_command(
    out: Path = typer.Argument(..., help="directory to create: the data-space bundle"),
    coordinator: str = typer.Option(..., help=COORDINATOR_HELP),
    identity: Path = typer.Option(..., help=IDENTITY_HELP),
    node: list[str] = typer.Option(
        ..., "--node", help="NAME=HOST:PORT of a node to export from (repeatable)"
    ),
) -> None:
    """Export the whole data space: the coordinator's log, each node's log fetched from the node itself,
    and the heads and alerts the coordinator kept. Verify it offline with 'ipspace audit verify OUT --ca'."""
    addresses = node_addresses(node)
    loaded = Identity.load(identity)
    token = read_token(identity)
    with CoordinatorClient(coordinator, identity, token) as client:
        exported = export_space(out, coordinator=client, nodes=addresses, identity=loaded, token=token)
    console.print(
        f"exported {out}: coordinator {exported.coordinator_entries:,} entries, "
        + ", ".join(f"{name} {count:,}" for name, count in sorted(exported.node_entries.items()))
        + f"; {exported.alerts} alert(s)"
    )
    for name, reason in sorted(exported.not_exported.items()):
        console.print(f"[yellow]{escape(name)} not exported[/yellow]: {escape(reason)}")


def _of(used: float | int | None, limit: float | int | None, form: str) -> str:
    shown = "?" if used is None else form.format(used)
    if limit is None:
        return shown
    over = used is not None and used > limit
    text = f"{shown} / {form.format(limit)}"
    return f"[red]{text}[/red]" if over else text
