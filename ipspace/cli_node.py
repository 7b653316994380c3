"""``ipspace node``: a data provider's node — set it up, serve it, decide on agreement requests."""

from __future__ import annotations

import logging
import shutil
import signal
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console
from rich.table import Table

from contracts.client import NodeClient
from crypto import Identity
from ipspace.cli_identity import TOKEN_FILE, read_token
from node.config import NodeConfig, NodePaths
from node.store import DatasetStore

app = typer.Typer(
    help="A provider's node: init, serve, and decide on agreement requests.", no_args_is_help=True
)
console = Console()


@app.command("init")
def init(
    directory: Path = typer.Argument(..., help="the node directory to create"),
    name: str = typer.Option(..., help="the node's name"),
    org: str = typer.Option(..., help="the provider organisation running it"),
    identity: Path = typer.Option(..., help="the node's identity directory (role provider, with its hosts)"),
    dataset: list[str] = typer.Option([], help="NAME=CSV_PATH to import (plain or .gz; repeatable)"),
    id_field: str = typer.Option("id", help="the column that identifies a record"),
    embed: list[str] = typer.Option(
        [], help="a text column to embed for encrypted matching (repeatable; joined in the order given)"
    ),
    embed_each: list[str] = typer.Option(
        [],
        help="a text column to embed on its own (repeatable), e.g. a phrase pair's anchor and target, "
        "to train the matching head",
    ),
    description: str = typer.Option("", help="what the datasets hold"),
    source: str = typer.Option("", help="provenance and attribution of the datasets"),
    listen: str = typer.Option("127.0.0.1:0", help="host:port to serve on (port 0: any free port)"),
) -> None:
    """Create a node directory: its identity, its datasets imported from files, an empty offers folder."""
    loaded = Identity.load(identity)
    if loaded.org != org or loaded.role != "provider":
        raise ValueError(f"the identity is {loaded.role} of {loaded.org}; a node needs a provider of {org}")
    paths = NodePaths(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths.offers.mkdir(exist_ok=True)
    shutil.copytree(identity, paths.identity, dirs_exist_ok=True)
    store = DatasetStore(paths.datasets_db)
    names = []
    for spec in dataset:
        dataset_name, separator, csv_path = spec.partition("=")
        if not separator:
            raise ValueError(f"--dataset {spec!r} is not NAME=CSV_PATH")
        info = store.import_csv(
            dataset_name,
            Path(csv_path),
            id_field=id_field,
            description=description,
            source=source,
            embed_fields=tuple(embed),
            embed_each=tuple(embed_each),
        )
        names.append(info.name)
        embedded = f", {' + '.join(embed)} embedded for matching" if embed else ""
        embedded += f", {' and '.join(embed_each)} embedded one by one" if embed_each else ""
        console.print(f"imported {info.name}: {info.row_count:,} rows, {len(info.fields)} fields{embedded}")
    NodeConfig(name=name, org=org, listen=listen, datasets=names).save(directory)
    console.print(
        f"node {name} ready in {directory}; put offers in {paths.offers}, then 'ipspace node serve'"
    )


@app.command("serve")
def serve(
    directory: Path = typer.Argument(..., help="the node directory"),
    listen: str = typer.Option(None, help="override the listen address of node.json"),
    superlink: str = typer.Option(
        None, help="HOST:PORT of the coordinator's SuperLink: also run this node's Flower SuperNode"
    ),
    supernode_port: int = typer.Option(0, help="the SuperNode's local ClientApp port (0: any free port)"),
    coordinator: str = typer.Option(
        None, help="https://HOST:PORT of the coordinator: push this node's signed tree heads to it"
    ),
    push_every: float = typer.Option(30.0, min=1.0, help="seconds between tree-head pushes"),
) -> None:
    """Serve the node until SIGINT or SIGTERM; every data call passes the gate and is recorded.

    With --coordinator the node pushes its signed tree heads to the coordinator at start and every
    --push-every seconds, so that a rewrite of its log, or another log shown to someone else, is caught.

    With --superlink the node also runs its SuperNode (started and stopped with it), authenticated by the
    key 'ipspace node flower-key' made; its ClientApps reach this node only through the gate.
    """
    from ipspace.coordinator_host import free_port
    from ipspace.flower_processes import start_supernode
    from node.server import NodeServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = NodeServer(directory, listen=listen, push_heads_to=coordinator, push_interval_s=push_every)
    port = server.start()
    console.print(
        f"node {server.config.name} serving on port {port} (address in {server.paths.address_file})"
    )
    supernode = None
    if superlink:
        host = (listen or server.config.listen).rpartition(":")[0]
        if host in ("", "0.0.0.0", "[::]"):  # noqa: S104 - a wildcard bind; the proxy dials loopback
            host = "127.0.0.1"
        supernode = start_supernode(
            directory,
            superlink=superlink,
            node_address=f"{host}:{port}",
            identity_dir=server.paths.identity,
            port=supernode_port or free_port(),
        )
        console.print(f"SuperNode (pid {supernode.pid}) joining {superlink}; log in {supernode.log_path}")

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if supernode is not None:
            supernode.stop()
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait()


@app.command("flower-key")
def flower_key(directory: Path = typer.Argument(..., help="the node directory")) -> None:
    """Print the public key of the node's SuperNode (made on first use): the coordinator admits it."""
    from ipspace.flower_processes import write_supernode_key

    flower_dir = directory / "flower"
    flower_dir.mkdir(exist_ok=True)
    typer.echo(write_supernode_key(flower_dir).decode().strip())


def _own_client(directory: Path) -> NodeClient:
    """The provider's client to its own node, with the node's identity and token."""
    paths = NodePaths(directory)
    if not paths.address_file.exists():
        raise FileNotFoundError(
            f"{paths.address_file} does not exist: is 'ipspace node serve {directory}' running?"
        )
    identity = Identity.load(paths.identity)
    token_dir = paths.identity if (paths.identity / TOKEN_FILE).exists() else paths.root
    return NodeClient(paths.address_file.read_text().strip(), identity, read_token(token_dir))


@app.command("requests")
def requests(directory: Path = typer.Argument(..., help="the node directory")) -> None:
    """List the agreement requests waiting for the provider's decision."""
    with _own_client(directory) as client:
        pending = client.pending_requests()
    table = Table("request id", "consumer", "offer", "purpose")
    for status in pending:
        table.add_row(status.request_id, status.consumer_org, status.offer_id, status.purpose)
    console.print(table if pending else "no pending requests")


@app.command("approve")
def approve(
    directory: Path = typer.Argument(...),
    request_id: str = typer.Argument(...),
    reason: str = typer.Option("", help="recorded with the decision"),
) -> None:
    """Approve (countersign) a pending agreement request."""
    with _own_client(directory) as client:
        status = client.decide_request(request_id, approve=True, reason=reason)
    console.print(f"approved: agreement {status.agreement.agreement_id if status.agreement else '?'}")


@app.command("reject")
def reject(
    directory: Path = typer.Argument(...),
    request_id: str = typer.Argument(...),
    reason: str = typer.Option("", help="told to the consumer and recorded"),
) -> None:
    """Reject a pending agreement request."""
    with _own_client(directory) as client:
        client.decide_request(request_id, approve=False, reason=reason)
    console.print(f"rejected {request_id}")
