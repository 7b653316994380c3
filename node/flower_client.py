"""The ClientApp a node's SuperNode runs for a training job: a thin proxy to the node's own gate.

It imports no torch and reads no rows: each train message becomes one `Train` call to the node (which checks
the job grant, the agreement, the cohort and the privacy budget, trains on its own rows and charges the
spend with its audit entry), each evaluate message one `Evaluate` call. A refusal by the node is raised, so
the round records this node as failed and the ServerApp reports the node's reason.

Cohort. In a SecAgg+ job every train message passes Flower's `secaggplus_mod`, and the cohort size the node
is told is what this node itself saw of the protocol: the nodes that sent it key shares, plus itself. In a
job without SecAgg+, the coordinator sees this node's update alone: the cohort is 1, and a node whose
agreement asks for a larger cohort refuses.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, EvaluateRes, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common import recorddict_compat as compat

from contracts.client import NodeRefused
from node import flower_proxy

PLAIN_COHORT = 1


class RefusedByNode(Exception):
    """The node's gate refused this message. Flower passes the text on to the ServerApp as the error's reason,
    so it names the node's org beside the node's status and words."""

    def __init__(self, org: str, refused: NodeRefused) -> None:
        super().__init__(f"{org} refused: {refused.status.name}: {refused.reason}")


def secagg_when_configured(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Send train messages through `secaggplus_mod` when the run is a SecAgg+ run.

    The run config decides, not the message: in a SecAgg+ run a train message without SecAgg+ stages makes
    the mod raise, so a node never answers a SecAgg+ job with an unmasked update.
    """
    if bool(context.run_config["secagg"]):
        return secaggplus_mod(message, context, call_next)
    return call_next(message, context)


app = ClientApp(mods=[secagg_when_configured])


@app.train()
def train(message: Message, context: Context) -> Message:
    settings = flower_proxy.ProxySettings.from_node_config(context.node_config)
    instruction = compat.recorddict_to_fitins(message.content, keep_input=True)
    cohort = _secagg_cohort(message) if bool(context.run_config["secagg"]) else PLAIN_COHORT
    try:
        outcome = flower_proxy.train(
            settings,
            str(instruction.config["grants"]),
            parameters_to_ndarrays(instruction.parameters),
            task=str(context.run_config["task"]),
            round_number=int(instruction.config["round"]),
            cohort_size=cohort,
        )
    except NodeRefused as refused:
        raise RefusedByNode(settings.org(), refused) from None
    reply = FitRes(
        status=Status(code=Code.OK, message="trained"),
        parameters=ndarrays_to_parameters(outcome.delta),
        num_examples=outcome.num_examples,
        metrics={**outcome.metrics, "org": settings.org()},
    )
    return Message(compat.fitres_to_recorddict(reply, keep_input=False), reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    settings = flower_proxy.ProxySettings.from_node_config(context.node_config)
    instruction = compat.recorddict_to_evaluateins(message.content, keep_input=True)
    try:
        count, metrics = flower_proxy.evaluate(
            settings,
            str(instruction.config["grants"]),
            parameters_to_ndarrays(instruction.parameters),
            task=str(context.run_config["task"]),
        )
    except NodeRefused as refused:
        raise RefusedByNode(settings.org(), refused) from None
    mse = metrics["sum_squared_error"] / count if count else 0.0
    reply = EvaluateRes(
        status=Status(code=Code.OK, message="evaluated"), loss=mse, num_examples=count, metrics=metrics
    )
    return Message(compat.evaluateres_to_recorddict(reply), reply_to=message)


def _secagg_cohort(message: Message) -> int:
    """The nodes in this node's SecAgg+ cohort, as the protocol showed it: those that sent it a key share,
    and itself. Raises LookupError outside the masked-vector stage (where Flower calls the training step)."""
    configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
    if configs is None or Key.SOURCE_LIST not in configs:
        raise LookupError("a SecAgg+ train message without the nodes that shared keys with this node")
    return len(configs[Key.SOURCE_LIST]) + 1
