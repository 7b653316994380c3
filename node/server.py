"""A provider's node: one gRPC server over mTLS whose every data RPC passes the gate.

The server wires the parts together and nothing else: the dataset store, the node's state and its audit log go
to the grant factory (the handlers never see them), the policy point to the decide step, and the services
of ``contracts/v1`` plus standard health checking and server reflection to the server.
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import threading
from concurrent import futures
from pathlib import Path
from typing import TextIO

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from audit import AuditLog
from contracts.offers import Action
from contracts.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    matching_pb2,
    matching_pb2_grpc,
    negotiation_pb2,
    negotiation_pb2_grpc,
    reveal_pb2,
    reveal_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)
from crypto import Identity, server_credentials
from node.authn import Authenticator
from node.config import NodeConfig, NodeConfigError, NodePaths, load_offers
from node.gate import gate_interceptors
from node.grants import GrantFactory
from node.handlers import (
    AuditHandler,
    CatalogHandler,
    MatchingHandler,
    NegotiationHandler,
    RevealHandler,
    TrainingHandler,
)
from node.head_pusher import HeadPusher, PushOutcome
from node.policy_point import PolicyPoint
from node.recorder import Recorder
from node.state import NodeState
from node.store import DatasetStore

log = logging.getLogger(__name__)

# Transport ceiling: grpc refuses larger messages before the gate sees them (and so cannot record them). Each
# method's own, smaller limit is enforced by the gate, which does record.
MAX_TRANSPORT_MESSAGE = 4 * 1024 * 1024
SERVICE_NAMES = (
    catalog_pb2.DESCRIPTOR.services_by_name["Catalog"].full_name,
    negotiation_pb2.DESCRIPTOR.services_by_name["Negotiation"].full_name,
    reveal_pb2.DESCRIPTOR.services_by_name["Reveal"].full_name,
    training_pb2.DESCRIPTOR.services_by_name["Training"].full_name,
    matching_pb2.DESCRIPTOR.services_by_name["Matching"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["Audit"].full_name,
)


LOCK_FILE = "node.lock"
# torch and Opacus: seconds to import, so a node that trains imports them while it starts serving
TRAINING_MODULES = ("node.training.rounds", "policies.privacy_accountant")
WARM_UP_JOIN_S = 60.0


def hold_directory_lock(path: Path) -> TextIO:
    """Take an exclusive, non-blocking lock on ``path`` for as long as the returned file stays open."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise NodeConfigError(f"{path.parent} is in use by another running node server") from None
    return handle


class NodeServer:
    """Start with :meth:`start`, stop with :meth:`stop`; the audit log is closed (drained) on stop."""

    def __init__(
        self,
        directory: Path,
        *,
        listen: str | None = None,
        max_workers: int = 16,
        push_heads_to: str | None = None,
        push_interval_s: float = 30.0,
    ) -> None:
        """``push_heads_to``: the coordinator's https URL, to push signed tree heads to every
        ``push_interval_s`` seconds (see `node.head_pusher`)."""
        self.paths = NodePaths(directory)
        self.config = NodeConfig.load(directory)
        self.identity = Identity.load(self.paths.identity)
        self._listen = listen or self.config.listen
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self._log: AuditLog | None = None
        self._state: NodeState | None = None
        self._store: DatasetStore | None = None
        self._health: health.HealthServicer | None = None
        self.port: int | None = None
        self._lock: TextIO | None = None
        self._warm_up: threading.Thread | None = None
        self._push_heads_to = push_heads_to
        self._push_interval_s = push_interval_s
        self._pusher: HeadPusher | None = None

    def start(self) -> int:
        """Bind, start serving and write ``node.addr``; returns the port.

        Raises NodeConfigError when another server holds this node directory: two writers of one audit log
        would each extend their own view of the Merkle tree.
        """
        self._lock = hold_directory_lock(self.paths.root / LOCK_FILE)
        offers = load_offers(self.paths, self.config.org, self.config.datasets)
        NodeState.create_schema(self.paths.state_db)
        self._state = NodeState(self.paths.state_db)
        self._store = DatasetStore(self.paths.datasets_db)
        self._log = AuditLog(
            self.paths.state_db,
            self.identity,
            self.config.name,
            head_every=self.config.head_every,
            head_interval_s=self.config.head_interval_s,
        )
        grants = GrantFactory(
            node=self.config.name,
            store=self._store,
            state=self._state,
            log=self._log,
            identity=self.identity,
            offers=offers,
        )
        policy = PolicyPoint(
            org=self.config.org, state=self._state, offers=offers, ca_cert_pem=self.identity.ca_cert_pem
        )
        interceptors = gate_interceptors(
            Authenticator(self.identity.ca_cert_pem),
            policy.decide,
            Recorder(self._log, self.config.name),
            grants,
        )
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="gate"),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_TRANSPORT_MESSAGE),
                ("grpc.max_send_message_length", MAX_TRANSPORT_MESSAGE * 4),
                ("grpc.so_reuseport", 0),
            ],
        )
        catalog_pb2_grpc.add_CatalogServicer_to_server(CatalogHandler(), server)
        negotiation_pb2_grpc.add_NegotiationServicer_to_server(NegotiationHandler(), server)
        reveal_pb2_grpc.add_RevealServicer_to_server(RevealHandler(), server)
        training_pb2_grpc.add_TrainingServicer_to_server(TrainingHandler(), server)
        matching_pb2_grpc.add_MatchingServicer_to_server(MatchingHandler(), server)
        audit_pb2_grpc.add_AuditServicer_to_server(AuditHandler(), server)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), server
        )
        self.port = server.add_secure_port(self._listen, server_credentials(self.identity))
        if self.port == 0:
            raise OSError(f"could not listen on {self._listen}")
        server.start()
        self._server = server
        for name in (*SERVICE_NAMES, ""):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        host = self._listen.rsplit(":", 1)[0]
        self.paths.address_file.write_text(f"{host}:{self.port}\n")
        log.info("node %s (%s) serving on %s:%s", self.config.name, self.config.org, host, self.port)
        if self._push_heads_to:
            self._pusher = HeadPusher(
                self._log, self._push_heads_to, self.paths.identity, interval_s=self._push_interval_s
            )
            self._pusher.start()
        if any(Action.TRAIN in offer.actions for offer in offers.values()):
            self._warm_up = threading.Thread(target=_import_training, name="warm-training", daemon=True)
            self._warm_up.start()
        return self.port

    def push_heads_now(self) -> PushOutcome:
        """Push a fresh signed tree head to the coordinator now; raises RuntimeError without one."""
        if self._pusher is None:
            raise RuntimeError("this node was started without a coordinator to push tree heads to")
        return self._pusher.push_now()

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()

    def stop(self, grace: float = 2.0) -> None:
        """Refuse new calls, let running ones finish for ``grace`` seconds, then close the log and state."""
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 5)
            self._server = None
        if self._pusher is not None:
            self._pusher.stop()
            self._pusher = None
        if self._warm_up is not None:  # an interpreter must not exit in the middle of importing torch
            self._warm_up.join(WARM_UP_JOIN_S)
            self._warm_up = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._state is not None:
            self._state.close()
        if self._store is not None:
            self._store.close()
        self.paths.address_file.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None


def _import_training() -> None:
    """Import the training step's modules in the background once the node serves: the first round of the first
    job would otherwise wait for torch and Opacus (about 7 s, more under load)."""
    try:
        for module in TRAINING_MODULES:
            importlib.import_module(module)
    except Exception:  # the Train handler imports them again and reports the error to its caller
        log.exception("importing the training modules failed")
