"""``ipspace audit heads``: what the coordinator keeps of every node's signed tree heads, its alerts, and a
regulator's own comparison of the heads a node shows it with those the coordinator kept."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.client import NodeClient
from crypto import Identity
from ipspace.cli_identity import read_token
from ipspace.cli_match import node_addresses
from ipspace.coordinator_client import CoordinatorClient
from ipspace.exit_codes import ExitCode
from ipspace.head_check import HeadCheck, check_node

console = Console()


def heads(
    coordinator: str = typer.Option(..., help="the coordinator's URL, https://HOST:PORT"),
    identity: Path = typer.Option(..., help="a regulator's identity directory"),
    collect: bool = typer.Option(
        False, "--collect", help="first ask the coordinator to pull fresh heads now"
    ),
    compare: list[str] = typer.Option(
        [],
        "--compare",
        help="NAME=HOST:PORT of a node to fetch a head from yourself and compare (repeatable)",
    ),
) -> None:
    """Show every node's kept tree heads and the alerts they raised; with --compare, check a node yourself.

    Exits 1 when an alert is open or a compared node's head contradicts the heads the coordinator kept.
    """
    loaded = Identity.load(identity)
    token = read_token(identity)
    addresses = node_addresses(compare)
    with CoordinatorClient(coordinator, identity, token) as client:
        if collect:
            for pulled in client.collect_heads():
                if pulled["error"]:
                    console.print(
                        f"[yellow]{escape(pulled['node'])}[/yellow]: no head: {escape(pulled['error'])}"
                    )
        checks = []
        for address in addresses.values():
            with NodeClient(address, loaded, token) as node:
                checks.append(check_node(node, client, loaded.ca_cert_pem))
        summary = client.head_summary()
        alerts = client.alerts()
    console.print(_summary_table(summary))
    if checks:
        console.print(_checks_table(checks))
    for alert in alerts:
        console.print(
            f"[red]ALERT #{alert['alert_id']}[/red] {escape(alert['node'])} {alert['kind']}: "
            f"{escape(alert['detail'])} ({escape(alert['source'])}, {alert['raised_at']})"
        )
    if alerts or any(check.judgement.verdict.is_alarm for check in checks):
        raise typer.Exit(ExitCode.VERIFICATION_FAILED)


def _summary_table(summary: list[dict]) -> Table:
    table = Table(title="tree heads the coordinator keeps")
    for column in ("node", "heads", "latest size", "signed at", "alerts"):
        table.add_column(column, justify="right" if column in ("heads", "latest size", "alerts") else "left")
    for item in summary:
        latest = (item.get("latest") or {}).get("head") or {}
        alerts = item["alerts"]
        table.add_row(
            escape(item["node"]),
            str(item["heads"]),
            f"{latest.get('tree_size', 0):,}",
            latest.get("timestamp", "-"),
            f"[red]{alerts}[/red]" if alerts else "0",
        )
    return table


def _checks_table(checks: list[HeadCheck]) -> Table:
    table = Table(title="heads fetched from the nodes by you")
    for column in ("node", "size at the node", "your verdict", "coordinator's", "why"):
        table.add_column(column)
    for check in checks:
        verdict = check.judgement.verdict
        shown = f"[red]{verdict.value}[/red]" if verdict.is_alarm else f"[green]{verdict.value}[/green]"
        table.add_row(
            escape(check.node),
            f"{check.head.tree_size:,}",
            shown,
            check.coordinator_verdict if check.agrees else f"[red]{check.coordinator_verdict}[/red]",
            escape(check.judgement.reason),
        )
    return table
