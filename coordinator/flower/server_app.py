"""The ServerApp of a training job (the valuation network or the matching head, `models.tasks`): FedAvg over
the nodes' DP updates, under SecAgg+ when the job asks.

Runs on the coordinator host, started by the SuperLink for each run. It holds the global weights and no
model code (no torch): nodes return clipped, noised weight *deltas*, SecAgg+ reveals only their weighted
sum, and this app adds the average to the global weights. It never sees a single node's update under SecAgg+
(Flower's legacy SecAgg+ workflow, the one path where SecAgg+ works in 1.41; FIELD-NOTES.md).

Per round it records in the job store the mean training loss and the epsilon each node reports having spent;
after the last round it asks every node to evaluate the final weights on its held-out rows (aggregate error
and correlation sums only, from which the pooled R², MSE and Pearson correlation are exact) and stores the
model. A node's refusal reaches the job's status with the node's own reason.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    Parameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

from coordinator.flower.fast_grid import FastPollGrid
from coordinator.job_spec import JobState
from coordinator.jobs import JobStore
from models.tasks import task_wire
from models.valuation.quality import SUM_FIELDS, ErrorSums

log = logging.getLogger(__name__)
app = ServerApp()


class JobStopped(Exception):
    """The job ends early: cancelled by its builder, or failed with a reason a person can act on."""

    def __init__(self, state: JobState, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


@dataclass(frozen=True)
class JobRun:
    """The run config of one job, as the coordinator's runner set it."""

    job_id: str
    task: str
    store: JobStore
    grants_json: str
    rounds: int
    min_cohort: int  # the largest min_cohort of the job's agreements: fewer aggregated nodes fail the job
    secagg: bool
    num_shares: int
    reconstruction_threshold: int
    max_weight: float
    poll_interval: float
    stage_timeout: float
    seed: int

    @classmethod
    def from_context(cls, context: Context) -> JobRun:
        config = context.run_config
        models_dir = str(config["models-dir"])
        return cls(
            job_id=str(config["job-id"]),
            task=str(config["task"]),
            store=JobStore(Path(str(config["jobs-db"])), Path(models_dir) if models_dir else None),
            grants_json=str(config["grants"]),
            rounds=int(config["num-rounds"]),
            min_cohort=int(config["min-cohort"]),
            secagg=bool(config["secagg"]),
            num_shares=int(config["num-shares"]),
            reconstruction_threshold=int(config["reconstruction-threshold"]),
            max_weight=float(config["max-weight"]),
            poll_interval=float(config["poll-interval"]),
            stage_timeout=float(config["stage-timeout"]),
            seed=int(config["seed"]),
        )


class SecAggPlusWithoutEarlyDropouts(SecAggPlusWorkflow):
    """SecAgg+ that goes on without the nodes lost before they sent their key shares.

    Such a node took part in no mask (a node masks only with the peers whose shares reached it), so nothing
    of it is to be recovered at the unmask stage; Flower 1.41 asks for its shares anyway and halts the round.
    """

    def share_keys_stage(self, grid, context, state) -> bool:
        going_on = super().share_keys_stage(grid, context, state)
        keyed = set(state.active_node_ids)
        state.sampled_node_ids = keyed
        state.nid_to_neighbours = {
            nid: neighbours & keyed for nid, neighbours in state.nid_to_neighbours.items() if nid in keyed
        }
        return going_on and self._check_threshold(state)


class DeltaFedAvg(FedAvg):
    """FedAvg whose clients return weight deltas: the (secure) weighted mean delta is added to the global
    weights, so the global weights stay here and every round starts from them."""

    def __init__(self, job: JobRun, grid: FastPollGrid) -> None:
        self.job = job
        self.grid = grid
        self.weights = task_wire(job.task).initial_weights(job.seed)
        self.pending_round: tuple[int, dict[str, float], dict[str, float]] | None = None
        self.aggregated_round = 0
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            # Every node online is asked each round; a round may go on with as few as the cohort minimum.
            min_fit_clients=job.min_cohort,
            min_evaluate_clients=1,
            min_available_clients=job.min_cohort,
            initial_parameters=ndarrays_to_parameters(self.weights),
            accept_failures=True,
        )

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        if self.job.store.is_cancel_requested(self.job.job_id):
            raise JobStopped(JobState.CANCELLED, f"cancelled by its builder before round {server_round}")
        self.check_previous_round(server_round)
        self.grid.node_errors.clear()  # a round's failure is reported with this round's reasons only
        self.wait_for_cohort(server_round, client_manager)
        instructions = super().configure_fit(
            server_round, ndarrays_to_parameters(self.weights), client_manager
        )
        config = {"round": server_round, "grants": self.job.grants_json}
        return [(client, FitIns(fit.parameters, dict(config))) for client, fit in instructions]

    def aggregate_fit(self, server_round, results, failures):
        if len(results) < self.job.min_cohort:
            raise JobStopped(JobState.FAILED, self._shortfall(server_round, len(results)))
        mean_delta, _ = super().aggregate_fit(server_round, results, failures)
        if mean_delta is None:
            raise JobStopped(JobState.FAILED, f"round {server_round} produced no aggregate")
        self.aggregated_round = server_round
        delta = parameters_to_ndarrays(mean_delta)
        self.weights = [
            (old + change).astype(np.float32) for old, change in zip(self.weights, delta, strict=True)
        ]
        examples = sum(fit.num_examples for _, fit in results)
        loss = (
            sum(fit.num_examples * float(fit.metrics.get("train_loss", 0.0)) for _, fit in results) / examples
        )
        epsilon_by_node = {
            str(fit.metrics["org"]): float(fit.metrics["epsilon_spent"])
            for _, fit in results
            if math.isfinite(float(fit.metrics.get("epsilon_spent", math.inf)))
        }
        metrics = {"train_loss": loss, "nodes": float(len(results)), "examples": float(examples)}
        if server_round == self.job.rounds:  # recorded with the held-out evaluation that follows
            self.pending_round = (server_round, metrics, epsilon_by_node)
        else:
            self.job.store.record_round(self.job.job_id, server_round, metrics, epsilon_by_node)
        return ndarrays_to_parameters(self.weights), {}

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if server_round != self.job.rounds:
            return []  # held-out quality once, on the final model: evaluation costs a message exchange
        self.check_previous_round(server_round + 1)  # a lost last round fails here, before any waiting
        # Every node online evaluates: held-out error sums reveal no update, so no cohort minimum applies
        # (FedAvg's own sampling would wait up to a day for `min_available_clients`).
        if not client_manager.wait_for(1, timeout=math.ceil(self.job.stage_timeout)):
            return []  # no node to evaluate on: the job keeps the round's training figures
        evaluate = EvaluateIns(ndarrays_to_parameters(self.weights), {"grants": self.job.grants_json})
        return [(client, evaluate) for client in client_manager.all().values()]

    def aggregate_evaluate(self, server_round, results, failures):
        sums = ErrorSums.empty()
        weighted_spearman = 0.0
        for _, reply in results:
            reply: EvaluateRes
            node_sums = ErrorSums(
                count=reply.num_examples,
                **{name: float(reply.metrics[name]) for name in SUM_FIELDS},
            )
            sums = sums + node_sums
            weighted_spearman += reply.num_examples * float(reply.metrics["spearman"])
        if self.pending_round is not None:
            round_number, metrics, epsilon_by_node = self.pending_round
            if sums.count:
                pooled = {
                    "held_out_r2": sums.r_squared(),
                    "held_out_mse": sums.mse(),
                    "held_out_pearson": sums.pearson(),
                    "held_out_spearman_node_mean": weighted_spearman / sums.count,
                    "held_out_rows": float(sums.count),
                }
                metrics |= {name: value for name, value in pooled.items() if math.isfinite(value)}
            self.job.store.record_round(self.job.job_id, round_number, metrics, epsilon_by_node)
            self.pending_round = None
        return (sums.mse() if sums.count else None), {}

    def evaluate(self, server_round: int, parameters: Parameters):
        return None

    def check_previous_round(self, server_round: int) -> None:
        """Fail the job when the round before `server_round` ended without an update.

        Flower's SecAgg+ workflow ends a round silently when a node misses its setup or key-sharing stage, so
        a missing round is caught here rather than trained past.
        """
        if self.aggregated_round != server_round - 1:
            missing = self.aggregated_round + 1
            reasons = "; ".join(f"node {node}: {why}" for node, why in sorted(self.grid.node_errors.items()))
            raise JobStopped(
                JobState.FAILED,
                f"round {missing} ended without an update (a node dropped out of secure aggregation before "
                f"it could be masked{'; ' + reasons if reasons else ''})",
            )

    def wait_for_cohort(self, server_round: int, client_manager: ClientManager) -> None:
        """Wait a bounded time for the cohort minimum to be online before a training round.

        FedAvg samples through `ClientManager.sample`, which waits up to a day for `min_available_clients`:
        a job whose nodes stay away must fail with that reason instead of looking 'running' all day.
        """
        if not client_manager.wait_for(self.job.min_cohort, timeout=math.ceil(self.job.stage_timeout)):
            raise JobStopped(
                JobState.FAILED,
                f"round {server_round}: {client_manager.num_available()} nodes online after waiting "
                f"{self.job.stage_timeout:g} s; the job's agreements need at least {self.job.min_cohort}",
            )

    def _shortfall(self, server_round: int, received: int) -> str:
        reasons = "; ".join(
            f"node {node}: {reason}" for node, reason in sorted(self.grid.node_errors.items())
        )
        return (
            f"round {server_round} aggregated {received} nodes; the job's agreements need at least "
            f"{self.job.min_cohort}" + (f" ({reasons})" if reasons else "; the others did not answer in time")
        )


@app.main()
def main(grid: Grid, context: Context) -> None:
    job = JobRun.from_context(context)
    fast = FastPollGrid(grid, poll_interval=job.poll_interval)
    strategy = DeltaFedAvg(job, fast)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=job.rounds), strategy=strategy)
    fit_workflow = None
    if job.secagg:
        fit_workflow = SecAggPlusWithoutEarlyDropouts(
            num_shares=job.num_shares,
            reconstruction_threshold=job.reconstruction_threshold,
            max_weight=job.max_weight,
            timeout=job.stage_timeout,
        )
    try:
        DefaultWorkflow(fit_workflow=fit_workflow)(fast, legacy)
        strategy.check_previous_round(job.rounds + 1)
        if (
            strategy.pending_round is not None
        ):  # evaluation failed everywhere: keep the round's training figures
            round_number, metrics, epsilon_by_node = strategy.pending_round
            job.store.record_round(job.job_id, round_number, metrics, epsilon_by_node)
        job.store.save_model(job.job_id, strategy.weights)
        job.store.set_state(job.job_id, JobState.SUCCEEDED)
    except JobStopped as stopped:
        log.warning("job %s stopped: %s", job.job_id, stopped.reason)
        job.store.set_state(job.job_id, stopped.state, stopped.reason)


def run_config_for(
    job_id: str, jobs_db: Path, models_dir: Path, grants_by_org: dict[str, str], **settings: object
):
    """The run-config overrides that start this app for one job (keys as in deploy/flower_app/pyproject)."""
    return {
        "job-id": job_id,
        "jobs-db": str(jobs_db),
        "models-dir": str(models_dir),
        "grants": json.dumps(grants_by_org, sort_keys=True),
        **settings,
    }
