"""``ipspace coordinator``: run the coordinator (SuperLink, job runner, job API); admit nodes' SuperNodes."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console

from coordinator.settings import CoordinatorSettings, NodeEndpoint

app = typer.Typer(help="The coordinator: job API and Flower SuperLink.", no_args_is_help=True)
console = Console()
SETTINGS_FILE = "coordinator.json"


@app.command("init")
def init(
    directory: Path = typer.Argument(..., help="the coordinator's directory to create"),
    identity: Path = typer.Option(..., help="its identity directory (role coordinator, with its hosts)"),
    node: list[str] = typer.Option([], help="NAME=HOST:PORT of a node whose catalog it shows (repeatable)"),
    host: str = typer.Option("127.0.0.1", help="the address the API and the SuperLink listen on"),
    port: int = typer.Option(0, help="the API's port (0: any free port)"),
) -> None:
    """Write the coordinator's settings: who it is, where it keeps jobs, which nodes it knows."""
    endpoints = []
    for spec in node:
        name, separator, address = spec.partition("=")
        if not separator:
            raise ValueError(f"--node {spec!r} is not NAME=HOST:PORT")
        endpoints.append(NodeEndpoint(name=name, address=address))
    settings = CoordinatorSettings(
        identity_dir=identity.resolve(), data_dir=directory.resolve() / "state", host=host, port=port,
        nodes=tuple(endpoints),
    )  # fmt: skip
    settings.load_identity()
    directory.mkdir(parents=True, exist_ok=True)
    settings.save(directory / SETTINGS_FILE)
    console.print(f"coordinator settings in {directory / SETTINGS_FILE}; run 'ipspace coordinator serve'")


@app.command("serve")
def serve(
    directory: Path = typer.Argument(..., help="the coordinator's directory"),
    superlink_port: int = typer.Option(9092, help="the SuperLink's port (Fleet, Control, ServerAppIo)"),
    admit: list[str] = typer.Option([], help="NAME=KEY.pub: a SuperNode key to admit at start (repeatable)"),
) -> None:
    """Serve the job API and the SuperLink until SIGINT or SIGTERM."""
    from ipspace.coordinator_host import CoordinatorHost

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = CoordinatorHost(CoordinatorSettings.load(directory / SETTINGS_FILE), superlink_port=superlink_port)
    stopped = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    api_port = host.start()
    try:  # whatever fails from here on, the SuperLink process must not outlive this command
        for spec in admit:
            name, _, key_path = spec.partition("=")
            node_id = host.register_supernode(Path(key_path).read_bytes(), name)
            console.print(f"admitted SuperNode {name} as Flower node {node_id}")
        url = f"https://{host.settings.host}:{api_port}"
        (directory / "api.addr").write_text(url + "\n")
        console.print(f"job API on {url}; SuperLink on {host.superlink_address}")
        stopped.wait()
    finally:
        host.stop()
