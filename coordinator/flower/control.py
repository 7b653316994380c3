"""The coordinator's client of the SuperLink's Control API: register SuperNode keys, start and watch runs.

It uses the classes the `flwr` CLI itself uses in 1.41 (`ControlHttpClient` and the `control_pb2` messages),
which Flower does not document as public API; flwr is pinned to 1.41.0 and this module is the only place that
imports them, so an upgrade has one place to look. The FAB is built once per coordinator, not per run (what
`flwr run` would do every time).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from flwr.cli.build import build_fab_from_disk
from flwr.common.serde import fab_to_proto, user_config_to_proto
from flwr.proto.control_pb2 import (
    ListNodesRequest,
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
    StopRunRequest,
)
from flwr.supercore.control import ControlHttpClient
from flwr.supercore.fab import Fab
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

FINISHED = "finished"
APP_DIR = Path(__file__).resolve().parents[2] / "deploy" / "flower_app"


def build_fab(app_dir: Path = APP_DIR) -> Fab:
    """The Flower App bundle of `app_dir` (deploy/flower_app by default)."""
    content = build_fab_from_disk(Path(app_dir))
    return Fab(hashlib.sha256(content).hexdigest(), content, {})


class ControlClient:
    """One TLS connection to a SuperLink's Control API, with the data space's CA as the only root."""

    def __init__(self, address: str, ca_cert_pem: bytes) -> None:
        self._client = ControlHttpClient.from_server_address(
            server_address=address,
            insecure=False,
            root_certificates=ca_cert_pem,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr CLI")],
        )

    def close(self) -> None:
        self._client.close()

    def register_node(self, openssh_public_key: bytes, name: str) -> int:
        """Register a SuperNode's EC public key (OpenSSH text) under `name`; returns its node id.

        A key registered before (a restarted coordinator admitting the same nodes) keeps its node id.
        """
        key = serialization.load_ssh_public_key(openssh_public_key)
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for info in self._client.ListNodes(ListNodesRequest()).nodes_info:
            if info.public_key in (pem, openssh_public_key.strip()) and not info.unregistered_at:
                return int(info.node_id)
        return int(self._client.RegisterNode(RegisterNodeRequest(public_key=pem, name=name)).node_id)

    def online_nodes(self) -> set[int]:
        response = self._client.ListNodes(ListNodesRequest())
        return {info.node_id for info in response.nodes_info if info.status == "online"}

    def start_run(self, fab: Fab, run_config: dict[str, bool | int | float | str]) -> int:
        """Start a run of `fab` with `run_config` overriding the app's defaults; returns the run id."""
        request = StartRunRequest(fab=fab_to_proto(fab), override_config=user_config_to_proto(run_config))
        response = self._client.StartRun(request)
        if not response.HasField("run_id"):
            raise RuntimeError("the SuperLink did not start the run")
        return int(response.run_id)

    def run_status(self, run_id: int) -> tuple[str, str, str]:
        """(status, sub_status, details), e.g. ('finished', 'completed', '')."""
        run = self._client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict[run_id]
        return run.status.status, run.status.sub_status, run.status.details

    def stop_run(self, run_id: int) -> bool:
        return bool(self._client.StopRun(StopRunRequest(run_id=run_id)).success)
