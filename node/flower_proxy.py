"""What the Flower ClientApp proxy asks of its own node: one Train or Evaluate call through the gate.

The ClientApp that Flower starts under a node's SuperNode is job code; it must read no rows and hold no model
code. It only forwards: the global weights and the job's grant go to the node's Training service over mTLS,
under the node's own identity, and the node's answer (a clipped, noised update, or aggregate error sums) goes
back. This module is that forwarding, kept free of torch so that each Flower message starts a fast process.

Which grant: the ServerApp sends every node the grants of all the job's agreements (they are signed consent,
not secrets), keyed by provider org; a node takes the one for its own org, and its gate checks it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.client import NodeClient
from crypto import Identity
from models.tasks import task_wire
from models.valuation.quality import SUM_FIELDS

NODE_ADDRESS_KEY = "node-address"
IDENTITY_DIR_KEY = "identity-dir"
TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret (as in ipspace.cli_identity)
TIMEOUT_S = 120.0  # a round's local step is seconds; a node that takes longer is treated as failed


class NoGrantForThisNode(LookupError):
    """The job carries no grant for this node's org: it was not asked to take part."""


@dataclass(frozen=True)
class ProxySettings:
    node_address: str
    identity_dir: Path

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, object]) -> ProxySettings:
        """From the SuperNode's `--node-config`; raises KeyError naming a missing key."""
        for key in (NODE_ADDRESS_KEY, IDENTITY_DIR_KEY):
            if key not in node_config:
                raise KeyError(f"the SuperNode's node config has no {key!r}")
        return cls(str(node_config[NODE_ADDRESS_KEY]), Path(str(node_config[IDENTITY_DIR_KEY])))

    def org(self) -> str:
        """The node's org, as its certificate names it."""
        return Identity.load(self.identity_dir).org

    def client(self) -> NodeClient:
        """A client of the node under the node's own identity and token (read fresh for each message, so a
        renewed token is picked up). Its calls raise NodeRefused with the node's status and reason."""
        token = (self.identity_dir / TOKEN_FILE).read_text().strip()
        return NodeClient(self.node_address, Identity.load(self.identity_dir), token, timeout_s=TIMEOUT_S)


@dataclass(frozen=True)
class TrainOutcome:
    delta: list[np.ndarray]
    num_examples: int
    metrics: dict[str, float]


def grant_for(settings: ProxySettings, grants_json: str) -> str:
    """The grant, among the job's, that names this node's org. Raises NoGrantForThisNode."""
    org = settings.org()
    grants = json.loads(grants_json)
    if org not in grants:
        raise NoGrantForThisNode(
            f"the job holds no grant for org {org!r}; its grants are for {sorted(grants)}"
        )
    return grants[org]


def train(
    settings: ProxySettings,
    grants_json: str,
    weights: list[np.ndarray],
    *,
    task: str,
    round_number: int,
    cohort_size: int,
) -> TrainOutcome:
    """One round at this node. Raises NodeRefused (the node's status and reason), NoGrantForThisNode, and
    models.tasks.UnknownTask / WireFormatError for weights that are not `task`'s model's."""
    grant = grant_for(settings, grants_json)
    wire = task_wire(task)  # the node checks the grant's own task against what it is sent
    with settings.client() as node:
        reply = node.train(grant, wire.to_bytes(weights), round_number=round_number, cohort_size=cohort_size)
    metrics = {
        "train_loss": reply.train_loss,
        "epsilon_spent": reply.epsilon_spent,
        "epsilon_budget": reply.epsilon_budget,
        "noise_multiplier": reply.noise_multiplier,
    }
    return TrainOutcome(wire.from_bytes(reply.weights_delta), int(reply.num_examples), metrics)


def evaluate(
    settings: ProxySettings, grants_json: str, weights: list[np.ndarray], *, task: str
) -> tuple[int, dict[str, float]]:
    """Held-out error and correlation sums of `weights` at this node, as (held-out rows, metrics)."""
    grant = grant_for(settings, grants_json)
    with settings.client() as node:
        reply = node.evaluate(grant, task_wire(task).to_bytes(weights))
    metrics = {name: getattr(reply, name) for name in SUM_FIELDS} | {"spearman": reply.spearman}
    return int(reply.count), metrics
