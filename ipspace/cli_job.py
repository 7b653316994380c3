"""``ipspace job``: a model builder's federated jobs on the coordinator — submit, follow, fetch the model and
its provenance record."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ipspace.cli_identity import read_token
from ipspace.coordinator_client import CoordinatorClient

app = typer.Typer(
    help="Federated jobs: submit a spec, follow its rounds, fetch its model.", no_args_is_help=True
)
console = Console()
FINAL_STATES = {"succeeded", "failed", "cancelled", "interrupted"}
POLL_S = 1.0

COORDINATOR = typer.Option(..., envvar="IPSPACE_COORDINATOR", help="the job API's URL (https://host:port)")
IDENTITY = typer.Option(..., envvar="IPSPACE_IDENTITY", help="your identity directory (with its token)")


def _client(coordinator: str, identity: Path) -> CoordinatorClient:
    return CoordinatorClient(coordinator, identity, read_token(identity))


@app.command("register")
def register(
    agreement: list[str] = typer.Argument(..., help="agreements 'ipspace agree' saved (id prefix or path)"),
    coordinator: str = COORDINATOR,
    identity: Path = IDENTITY,
) -> None:
    """Register signed agreements with the coordinator, so that jobs may name them."""
    from ipspace.cli_consumer import load_agreement

    with _client(coordinator, identity) as client:
        for reference in agreement:
            entry = client.register_agreement(load_agreement(identity, reference))
            console.print(f"registered {entry['agreement_id']}")


@app.command("submit")
def submit(
    spec: Path = typer.Argument(
        ..., help="the job spec (JSON: task, dataset, purpose, agreements, rounds, ...)"
    ),
    coordinator: str = COORDINATOR,
    identity: Path = IDENTITY,
    job_id: str = typer.Option(None, help="the job id to sign the grants for (default: a fresh one)"),
) -> None:
    """Sign a grant per agreement with your identity and submit the job; prints its id."""
    from coordinator.job_spec import new_job_id

    document = json.loads(spec.read_text(encoding="utf-8"))
    with _client(coordinator, identity) as client:
        created = client.submit(document, job_id or new_job_id())
    typer.echo(created["job_id"])


@app.command("status")
def status(job_id: str, coordinator: str = COORDINATOR, identity: Path = IDENTITY) -> None:
    """The job's state, its rounds' metrics and the epsilon each node has spent."""
    with _client(coordinator, identity) as client:
        job = client.status(job_id)
    _print_status(job)


@app.command("wait")
def wait(
    job_id: str,
    coordinator: str = COORDINATOR,
    identity: Path = IDENTITY,
    timeout: float = typer.Option(900.0, help="give up after this many seconds"),
) -> None:
    """Follow the job round by round until it ends; exits 0 only if it succeeded."""
    with _client(coordinator, identity) as client:
        job = follow(client, job_id, timeout_s=timeout)
    _print_status(job)
    raise typer.Exit(0 if job["state"] == "succeeded" else 3)


@app.command("cancel")
def cancel(job_id: str, coordinator: str = COORDINATOR, identity: Path = IDENTITY) -> None:
    """Ask the job to stop before its next round."""
    with _client(coordinator, identity) as client:
        job = client.cancel(job_id)
    console.print(f"{job_id}: {job['state']}{' (cancel requested)' if job['cancel_requested'] else ''}")


@app.command("model")
def model(
    job_id: str,
    out: Path = typer.Option(..., help="where to write the model (.npz, float32 arrays in wire order)"),
    coordinator: str = COORDINATOR,
    identity: Path = IDENTITY,
) -> None:
    """Download the trained model, where every agreement of the job allows export."""
    with _client(coordinator, identity) as client:
        out.write_bytes(client.model(job_id))
    console.print(f"model of {job_id} written to {out}")


@app.command("provenance")
def provenance(
    job_id: str,
    out: Path = typer.Option(
        ..., help="where to write the record (JSON), for 'ipspace model provenance verify'"
    ),
    coordinator: str = COORDINATOR,
    identity: Path = IDENTITY,
) -> None:
    """Fetch the succeeded job's model provenance, signed by the coordinator (written as served)."""
    with _client(coordinator, identity) as client:
        document = client.provenance(job_id)
    out.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    heads = document.get("record", {}).get("node_heads", {})
    console.print(f"provenance of {job_id} ({len(heads)} node heads) written to {out}")


@app.command("curve")
def curve(
    job_id: str,
    out: Path = typer.Option(..., help="where to write the training curve (PNG)"),
    coordinator: str = COORDINATOR,
    identity: Path = IDENTITY,
) -> None:
    """Plot the job's training loss and each node's spent epsilon by round."""
    with _client(coordinator, identity) as client:
        job = client.status(job_id)
    out.write_bytes(training_curve_png(job))
    console.print(f"training curve of {job_id} written to {out}")


def follow(client: CoordinatorClient, job_id: str, *, timeout_s: float) -> dict[str, Any]:
    """Poll the job until it ends, with a progress bar of its rounds; returns its last status."""
    deadline = time.monotonic() + timeout_s
    job = client.status(job_id)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task(f"{job_id}", total=job["rounds_planned"], detail=job["state"])
        while job["state"] not in FINAL_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout_s:.0f} s")
            time.sleep(POLL_S)
            job = client.status(job_id)
            progress.update(task, completed=job["rounds_completed"], detail=_round_detail(job))
    return job


def _round_detail(job: dict[str, Any]) -> str:
    if not job["rounds"]:
        return job["state"]
    last = job["rounds"][-1]
    epsilons = ", ".join(f"{org} {eps:.2f}" for org, eps in sorted(last["epsilon_by_node"].items()))
    return f"round {last['round']}: loss {last['metrics'].get('train_loss', float('nan')):.4f}; ε {epsilons}"


def _print_status(job: dict[str, Any]) -> None:
    console.print(
        f"[bold]{job['job_id']}[/bold] {job['state']}" + (f": {job['reason']}" if job["reason"] else "")
    )
    table = Table("round", "train loss", "nodes", "held-out R²", "node-mean Spearman", "ε by node")
    for report in job["rounds"]:
        metrics = report["metrics"]
        table.add_row(
            str(report["round"]),
            f"{metrics.get('train_loss', float('nan')):.4f}",
            f"{metrics.get('nodes', 0):.0f}",
            f"{metrics['held_out_r2']:.3f}" if "held_out_r2" in metrics else "",
            f"{metrics['held_out_spearman_node_mean']:.3f}"
            if "held_out_spearman_node_mean" in metrics
            else "",
            ", ".join(f"{org} {eps:.2f}" for org, eps in sorted(report["epsilon_by_node"].items())),
        )
    console.print(table)


def training_curve_png(job: dict[str, Any]) -> bytes:
    """The job's per-round training loss and per-node epsilon, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rounds = [report["round"] for report in job["rounds"]]
    figure, (loss_axis, epsilon_axis) = pyplot.subplots(1, 2, figsize=(9, 3.5))
    loss_axis.plot(rounds, [report["metrics"].get("train_loss") for report in job["rounds"]], marker="o")
    loss_axis.set(title="training loss (MSE, nodes' batches)", xlabel="round")
    orgs = sorted({org for report in job["rounds"] for org in report["epsilon_by_node"]})
    for org in orgs:
        epsilon_axis.plot(
            rounds, [report["epsilon_by_node"].get(org) for report in job["rounds"]], marker="o", label=org
        )
    epsilon_axis.set(title="ε spent per node (its agreement)", xlabel="round")
    if orgs:
        epsilon_axis.legend(fontsize="small")
    figure.suptitle(f"{job['job_id']} ({job['state']})")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()
