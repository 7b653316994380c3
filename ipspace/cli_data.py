"""``ipspace data``: the shipped sample of real patent data, split the way real holders would hold it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ipspace.sample_data import LENS_FAMILIES
from node.partition import partition_by_jurisdiction, read_rows, write_partitions

app = typer.Typer(
    help="The sample data set (real public patent data, see data/README.md).", no_args_is_help=True
)
console = Console()


@app.command("partition")
def partition(
    out: Path = typer.Argument(..., help="directory for one CSV per provider"),
    providers: int = typer.Option(3, help="number of providers (3: US / Europe / Asia-Pacific)"),
    source: Path = typer.Option(LENS_FAMILIES, help="the Lens families table to split"),
) -> None:
    """Split the Lens patent families across providers by jurisdiction (whole jurisdictions per provider)."""
    header, rows = read_rows(source)
    parts = partition_by_jurisdiction(rows, providers)
    paths = write_partitions(parts, out, header)
    table = Table("provider", "rows", "jurisdictions", "file")
    for part in parts:
        table.add_row(
            part.provider,
            f"{part.row_count:,}",
            " ".join(part.jurisdictions[:12]) + (" …" if len(part.jurisdictions) > 12 else ""),
            str(paths[part.provider]),
        )
    console.print(table)
