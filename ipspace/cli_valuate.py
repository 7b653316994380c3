"""``ipspace valuate PATENT.json``: a patent valued with a federated job's model, without the coordinator
seeing the patent or the value.

On the consumer's machine: the row is read, its features computed at the job's reference year and encrypted
under CKKS keys kept in the identity directory (`ckks/valuation/`, the secret key 0600, made on first use);
the coordinator evaluates the model's encryption-friendly head on the ciphertext; the answer is decrypted
here. `data/valuation_example_patent.json` is a real held-out row of the shipped Lens sample (US 9075415 B2).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ipspace.cli_identity import read_token
from ipspace.coordinator_client import CoordinatorClient

console = Console()
VALUE_MEANING = (
    "cohort-normalised citation score: log(1 + forward citations / the mean of its field x filing-year "
    "cohort), 0.69 = cited like its peers; citations are a weak, lagging label of value, not a price"
)


def valuate(
    patent: Path = typer.Argument(..., help="one Lens-style row as a JSON object (column -> value)"),
    job: str = typer.Option(..., "--job", help="the succeeded valuation job whose model values the patent"),
    coordinator: str = typer.Option(..., envvar="IPSPACE_COORDINATOR", help="the coordinator's URL"),
    identity: Path = typer.Option(..., envvar="IPSPACE_IDENTITY", help="your identity directory"),
) -> None:
    """Value PATENT with the model of job JOB under encryption; only you decrypt the value.

    Prints the value, what it means, and the valuation queries your org has left on this job.
    """
    from ipspace.valuation_query import missing_columns, read_patent, valuate_via_coordinator

    row = read_patent(patent)
    with CoordinatorClient(coordinator, identity, read_token(identity)) as client:
        valuation = valuate_via_coordinator(client, job, row, identity)
    name = row.get("publication_number") or patent.name
    console.print(
        f"{name}: features computed and encrypted here (ages counted to {valuation.reference_year}); "
        f"job {job}'s model evaluated them under encryption at the coordinator; decrypted here"
    )
    absent = missing_columns(row)
    if absent:
        console.print(f"  absent columns, their defaults used: {', '.join(absent)}")
    console.print(f"[bold]value {valuation.value:.3f}[/bold]  ({VALUE_MEANING})")
    console.print(
        f"  valuation queries left on this job: {valuation.queries_left_today} today, "
        f"{valuation.queries_left_total} in total"
    )


def register(app: typer.Typer) -> None:
    app.command("valuate")(valuate)
