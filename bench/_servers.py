"""The two servers under test, each in a process of its own so that client and server share no GIL.

*gated*: the real node (``NodeServer``): mTLS, then authenticate -> decide -> record (durable audit append)
-> handle. *bare*: the same mTLS server credentials and thread pool, no interceptor, and a Catalog servicer
that does the handler's work directly on the ``DatasetStore``, so the difference between the two is the gate.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent import futures
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from bench import BenchFailed
from contracts.v1 import catalog_pb2, catalog_pb2_grpc
from crypto import Identity, server_credentials
from node.config import NodeConfig, NodePaths
from node.handlers.catalog import dataset_summary
from node.server import MAX_TRANSPORT_MESSAGE, NodeServer
from node.store import DatasetStore

GATED = "gated"
BARE = "bare"
STATIC = "static"  # bare, answering with a response built once at start: what gRPC and mTLS cost alone
LISTEN = "127.0.0.1:0"
WORKERS = 16  # NodeServer's default pool
MAX_LIFETIME_S = 1800.0  # a server whose parent vanished stops on its own
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BareCatalog(catalog_pb2_grpc.CatalogServicer):
    """ListDatasets as the node's handler computes it, straight from the store: no gate, no grant, no log.

    With ``static`` the response is computed once, so a call costs only gRPC, TLS and protobuf.
    """

    def __init__(self, store: DatasetStore, node: str, *, static: bool = False) -> None:
        self._store = store
        self._node = node
        self._static = self._list() if static else None

    def _list(self) -> catalog_pb2.ListDatasetsResponse:
        return catalog_pb2.ListDatasetsResponse(
            node=self._node, datasets=[dataset_summary(info) for info in self._store.list()]
        )

    def ListDatasets(self, request, context):
        return self._static if self._static is not None else self._list()


class _BareServer:
    def __init__(self, node_dir: Path, *, static: bool) -> None:
        paths = NodePaths(node_dir)
        self._store = DatasetStore(paths.datasets_db)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="bare"),
            options=[
                ("grpc.max_receive_message_length", MAX_TRANSPORT_MESSAGE),
                ("grpc.max_send_message_length", MAX_TRANSPORT_MESSAGE * 4),
                ("grpc.so_reuseport", 0),
            ],
        )
        catalog_pb2_grpc.add_CatalogServicer_to_server(
            BareCatalog(self._store, NodeConfig.load(node_dir).name, static=static), self._server
        )
        self._identity = Identity.load(paths.identity)

    def start(self) -> int:
        port = self._server.add_secure_port(LISTEN, server_credentials(self._identity))
        if port == 0:
            raise OSError(f"could not listen on {LISTEN}")
        self._server.start()
        return port

    def stop(self) -> None:
        self._server.stop(2.0).wait(7.0)
        self._store.close()


def serve(kind: str, node_dir: str, ready: Connection, stop: Any, profile_path: str | None) -> None:
    """Process entry point: start the server, send ("port", n) or ("error", text), serve until ``stop``."""
    profiler = None
    if profile_path:
        from bench._profile import ThreadProfiler

        profiler = ThreadProfiler()
        profiler.install()
    try:
        server: NodeServer | _BareServer
        if kind == GATED:
            server = NodeServer(Path(node_dir), listen=LISTEN, max_workers=WORKERS)
        else:
            server = _BareServer(Path(node_dir), static=kind == STATIC)
        port = server.start()
    except (OSError, ValueError, RuntimeError) as error:
        ready.send(("error", f"{kind} server did not start: {error!r}"))
        raise
    ready.send(("port", port))
    try:
        stop.wait(MAX_LIFETIME_S)
    finally:
        server.stop()
        if profiler is not None:
            profiler.dump(Path(profile_path))


@dataclass
class ServerProcess:
    """A server of one kind in a spawned process; use as a context manager so it is always stopped."""

    kind: str
    node_dir: Path
    profile_path: Path | None = None

    def __post_init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._parent_end, child_end = context.Pipe()
        self._stop = context.Event()
        self._process = context.Process(
            target=serve,
            args=(self.kind, str(self.node_dir), child_end, self._stop, self._profile_arg()),
            name=f"bench-{self.kind}-server",
            daemon=True,
        )
        self.address = ""

    def _profile_arg(self) -> str | None:
        return str(self.profile_path) if self.profile_path else None

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def __enter__(self) -> ServerProcess:
        self._process.start()
        try:
            if not self._parent_end.poll(60.0):
                raise BenchFailed(f"the {self.kind} server did not report its port within 60 s")
            try:
                what, value = self._parent_end.recv()
            except EOFError:
                self._process.join(5.0)
                code = self._process.exitcode
                raise BenchFailed(
                    f"the {self.kind} server process ended before serving (exit code {code})"
                ) from None
            if what != "port":
                raise BenchFailed(str(value))
        except BaseException:
            self.stop()
            raise
        self.address = f"127.0.0.1:{value}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        """User plus system CPU of the whole server process (all threads) so far, from /proc/<pid>/stat."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces; fields resume after ')'
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / _CLOCK_TICKS

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask the server to stop (it drains its audit log), then terminate, then kill: by this PID only."""
        if self._process.pid is None:
            return
        self._stop.set()
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5.0)
        if self.profile_path is not None and self._process.exitcode != 0:
            raise BenchFailed(f"the profiled {self.kind} server exited with {self._process.exitcode}")
