"""Train and Evaluate: one federated round on the node's own rows; only an update or aggregates leave.

The gate has already checked the caller (the node's own runner), the job grant's signature and the agreement;
the grant carries the privacy terms. Torch and Opacus are imported on the first call, not at node start.
"""

from __future__ import annotations

import grpc

from contracts.v1 import training_pb2, training_pb2_grpc
from models.tasks import WireFormatError, task_wire
from models.valuation.quality import SUM_FIELDS
from node.gate import current_grant
from node.grants import HandlerError, TrainingGrant, require


class TrainingHandler(training_pb2_grpc.TrainingServicer):
    def Train(self, request, context):
        from node.training.rounds import plan_round, train_round
        from node.training.trainable import trainable_model
        from policies.privacy_accountant import LedgerCorrupted, PrivacyBudgetExhausted

        grant = require(current_grant(), TrainingGrant)
        body = grant.facts.job_grant.body
        weights = _weights(body.task, request.weights)
        data = grant.prepared_data()
        privacy = grant.privacy
        try:
            plan = plan_round(
                num_examples=len(data.train_targets),
                settings=body.settings,
                rounds=body.rounds,
                job_epsilon=privacy.job_epsilon,
                epsilon_budget=privacy.epsilon_budget,
                delta=privacy.delta,
                ledger_json=grant.privacy_ledger(),
            )
        except PrivacyBudgetExhausted as exhausted:
            raise HandlerError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exhausted)) from None
        except LedgerCorrupted as error:
            raise HandlerError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the privacy ledger of this agreement is damaged: {error}",
            ) from None
        update = train_round(trainable_model(body.task), data, weights, body.settings, plan)
        grant.charge_round(plan)
        return training_pb2.TrainResponse(
            weights_delta=task_wire(body.task).to_bytes(update.weights_delta),
            num_examples=update.num_examples,
            train_loss=update.train_loss,
            epsilon_spent=plan.epsilon_after,
            epsilon_budget=privacy.epsilon_budget or 0.0,
            noise_multiplier=plan.spend.noise_multiplier,
            delta=plan.delta,
        )

    def Evaluate(self, request, context):
        from node.training.rounds import evaluate_round
        from node.training.trainable import trainable_model

        grant = require(current_grant(), TrainingGrant)
        task = grant.facts.job_grant.body.task
        weights = _weights(task, request.weights)
        sums, rank_correlation = evaluate_round(trainable_model(task), grant.prepared_data(), weights)
        return training_pb2.EvaluateResponse(
            count=sums.count,
            spearman=rank_correlation,
            **{name: getattr(sums, name) for name in SUM_FIELDS},
        )


def _weights(task: str, data: bytes) -> list:
    try:
        return task_wire(task).from_bytes(data)
    except WireFormatError as error:
        raise HandlerError(grpc.StatusCode.INVALID_ARGUMENT, f"weights: {error}") from None
