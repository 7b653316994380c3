"""``ipspace``: the data space's command line (typer + rich). Commands are thin; errors map to exit codes.

Sub-commands by role: ``ca``/``identity`` (the CA operator and members), ``node`` (a data provider),
``catalog``/``offers``/``agree``/``reveal`` (consumers and model builders), ``coordinator`` (its operator),
``job`` (model builders' federated jobs), ``audit`` (regulators),
``data`` (the sample data set) and ``demo`` (a complete local data space).
"""

from __future__ import annotations

import sys

import grpc
import typer
from rich.console import Console

from contracts.client import NodeRefused
from contracts.errors import ContractError
from crypto.errors import CryptoError
from ipspace import (
    cli_audit,
    cli_consumer,
    cli_coordinator,
    cli_data,
    cli_identity,
    cli_job,
    cli_match,
    cli_model,
    cli_node,
    cli_valuate,
)
from ipspace.coordinator_client import CoordinatorRefused
from ipspace.exit_codes import ExitCode
from node.config import NodeConfigError

app = typer.Typer(
    help="A trusted data space for patent data: CA and identities, provider nodes behind a policy-checked,\n"
    "audited gRPC gate, consumers' agreements and reveals, federated training with DP and SecAgg+,\n"
    "encrypted matching and valuation (CKKS), regulators' audit of the whole data space (offline and on the\n"
    "coordinator's dashboard) and signed model provenance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_identity.ca_app, name="ca")
app.add_typer(cli_identity.identity_app, name="identity")
app.add_typer(cli_node.app, name="node")
app.add_typer(cli_coordinator.app, name="coordinator")
app.add_typer(cli_job.app, name="job")
app.add_typer(cli_audit.app, name="audit")
app.add_typer(cli_model.app, name="model")
app.add_typer(cli_data.app, name="data")
cli_consumer.register(app)
cli_match.register(app)
cli_valuate.register(app)


@app.command()
def demo(
    workdir: str = typer.Option("demo-space", help="where the demo's CA, identities and nodes are made"),
    keep: bool = typer.Option(False, help="keep the work directory afterwards"),
    rounds: int = typer.Option(3, min=1, max=30, help="rounds of the federated valuation job"),
    serve: bool = typer.Option(
        False, help="afterwards keep the data space (and its dashboard) up until Ctrl-C; keeps the directory"
    ),
) -> None:
    """Run a complete local data space: CA, three provider nodes on real data, a coordinator, a consumer's
    reveals, encrypted match and encrypted valuation, a federated valuation job, and the regulator's
    verification of the whole data space; prints where the dashboard is."""
    from ipspace.demo import run_demo

    raise typer.Exit(run_demo(workdir, keep=keep, rounds=rounds, serve=serve))


_REFUSAL_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def main() -> None:
    """Entry point: runs the app and maps our errors to the exit-code table, with a one-line message."""
    console = Console(stderr=True)
    try:
        # Without standalone mode click returns an Exit's code instead of exiting: pass it on.
        status = app(standalone_mode=False)
        sys.exit(status if isinstance(status, int) else ExitCode.OK)
    except CoordinatorRefused as refused:
        console.print(f"[red]refused[/red] HTTP {refused.status}: {refused.reason}")
        sys.exit(ExitCode.REFUSED if refused.status < 500 else ExitCode.UNAVAILABLE)
    except NodeRefused as refused:
        console.print(f"[red]refused[/red] {refused.status.name}: {refused.reason}")
        sys.exit(ExitCode.UNAVAILABLE if refused.status in _REFUSAL_CODES else ExitCode.REFUSED)
    except (NodeConfigError, CryptoError, FileNotFoundError, FileExistsError) as error:
        console.print(f"[red]error[/red] {error}")
        sys.exit(ExitCode.CONFIGURATION)
    except (ContractError, ValueError) as error:
        console.print(f"[red]error[/red] {error}")
        sys.exit(ExitCode.USAGE)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.exit(ExitCode.USAGE)
    except Exception as error:
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(ExitCode.USAGE)
        raise
