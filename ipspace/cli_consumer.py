"""Consumer and model-builder commands: ``catalog``, ``offers``, ``agree``, ``reveal``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.odrl import offer_to_odrl
from crypto import Identity
from ipspace.cli_identity import read_token

console = Console()
NODE = typer.Option(..., "--node", help="the node's address, host:port")
IDENTITY = typer.Option(..., "--identity", help="your identity directory (certificates, keys, token)")
AGREEMENTS_DIR = "agreements"


def connect(node: str, identity_dir: Path) -> NodeClient:
    return NodeClient(node, Identity.load(identity_dir), read_token(identity_dir))


def save_agreement(identity_dir: Path, agreement: Agreement) -> Path:
    folder = identity_dir / AGREEMENTS_DIR
    folder.mkdir(exist_ok=True)
    path = folder / (agreement.agreement_id.removeprefix("sha256:")[:16] + ".json")
    path.write_text(agreement.model_dump_json(indent=2) + "\n")
    return path


def load_agreement(identity_dir: Path, reference: str) -> Agreement:
    """An agreement by file path, or by (a prefix of) its id among the identity's saved agreements."""
    path = Path(reference)
    if not path.exists():
        prefix = reference.removeprefix("sha256:")
        matches = sorted((identity_dir / AGREEMENTS_DIR).glob(prefix[:16] + "*.json"))
        if len(matches) != 1:
            raise FileNotFoundError(
                f"no single saved agreement matches {reference!r} in {identity_dir / AGREEMENTS_DIR}"
            )
        path = matches[0]
    return Agreement.model_validate_json(path.read_text())


def catalog(
    node: str = NODE,
    identity: Path = IDENTITY,
    dataset: str = typer.Option("", help="describe one dataset: statistics and mock rows"),
) -> None:
    """List a node's datasets, or describe one (statistics and synthetic mock rows, never real rows)."""
    with connect(node, identity) as client:
        if dataset:
            console.print_json(json.dumps(client.describe(dataset)))
            return
        listing = client.list_datasets()
    table = Table("dataset", "rows", "fields", "source", title=f"catalog of {listing.node}")
    for summary in listing.datasets:
        table.add_row(summary.name, f"{summary.row_count:,}", str(len(summary.fields)), summary.source[:60])
    console.print(table)


def offers(
    node: str = NODE,
    identity: Path = IDENTITY,
    dataset: str = typer.Option("", help="only this dataset"),
    odrl: bool = typer.Option(False, "--odrl", help="print the offers as ODRL JSON-LD policies instead"),
) -> None:
    """List a node's offers: actions, purposes, fields a reveal may return, limits."""
    with connect(node, identity) as client:
        listed = client.offers(dataset)
    if odrl:
        console.print_json(json.dumps([offer_to_odrl(offer) for offer in listed]))
        return
    table = Table("offer", "dataset", "actions", "purposes", "reveal fields", "approval")
    for offer in listed:
        constraints = offer.constraints
        table.add_row(
            offer.offer_id,
            offer.dataset,
            ", ".join(offer.actions),
            ", ".join(constraints.purposes or ("any",)),
            ", ".join(constraints.reveal_fields),
            offer.approval,
        )
    console.print(table)


def agree(
    offer_id: str = typer.Argument(..., help="the offer to accept"),
    node: str = NODE,
    identity: Path = IDENTITY,
    purpose: str = typer.Option(..., help="the purpose you state"),
    wait: float = typer.Option(0.0, help="seconds to wait for a provider's manual approval"),
) -> None:
    """Propose an agreement for an offer and a purpose; save it once the provider has countersigned."""
    with connect(node, identity) as client:
        status = client.request_agreement(client.offer(offer_id), purpose)
        deadline = time.monotonic() + wait
        while status.state == "pending" and time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            status = client.request_status(status.request_id)
    if status.state == "approved" and status.agreement is not None:
        path = save_agreement(identity, status.agreement)
        console.print(f"agreement {status.agreement.agreement_id} saved to {path}")
    elif status.state == "pending":
        console.print(f"request {status.request_id} waits for the provider's approval; run again with --wait")
    else:
        console.print(f"rejected: {status.reason}")
        raise typer.Exit(3)


def reveal(
    node: str = NODE,
    identity: Path = IDENTITY,
    agreement: str = typer.Option(..., help="agreement file or id (prefix) saved by 'agree'"),
    ids: str = typer.Option(..., help="comma-separated record ids"),
    fields: str = typer.Option(..., help="comma-separated fields"),
) -> None:
    """Reveal chosen records under an agreement: only the fields and only as many as it allows."""
    loaded = load_agreement(identity, agreement)
    with connect(node, identity) as client:
        rows, missing = client.reveal(
            loaded, [i for i in ids.split(",") if i], [f for f in fields.split(",") if f]
        )
    console.print_json(json.dumps({"records": rows, "missing_ids": missing}))


def register(app: typer.Typer) -> None:
    for command in (catalog, offers, agree, reveal):
        app.command()(command)
