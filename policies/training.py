"""Whether a federated-training call (Train or Evaluate) may be served: pure, total, deny by default.

Two parties stand behind such a call. The *caller* is the node's own Flower runner, so it must be of the
provider's org with the provider role: no one else may make the node train. The *consumer* is whoever signed
the job grant the call carries (its signature was checked before this runs); the agreement is judged for the
consumer exactly as for any other agreement action (`policies.decision.decide`). On top of that:

- privacy: an agreement with a budget (epsilon, delta) trains only with differential privacy, so a job that
  asks for none is refused; at a job's first round, a job whose own epsilon exceeds what the agreement has
  left is refused as exhausted before any training. Every round's exact composed spend is checked again by
  the node's ledger when it charges, so skipping the first round gains nothing;
- cohort: a Train call whose secure-aggregation cohort is smaller than the agreement's `min_cohort` is refused
  (FAILED_PRECONDITION), since a node's update is then too easy to single out. Evaluate returns aggregates
  only and carries no cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.agreements import Agreement
from contracts.offers import Action
from crypto import Principal, Role
from policies.decision import (
    AccessRequest,
    BudgetState,
    Decision,
    Obligations,
    PrivacyObligation,
    ProviderPolicy,
    decide,
)
from policies.rules import Refusal


@dataclass(frozen=True)
class TrainingRequest:
    caller: Principal  # the authenticated peer: the node's own runner
    consumer: Principal  # the signer of the job grant
    agreement_id: str | None
    dataset: str | None
    purpose: str | None
    job_epsilon: float | None  # what the grant lets this job spend here; None: no DP asked for
    cohort_size: int  # 0 for Evaluate
    round: int = 0  # 1-based for Train; 0 for Evaluate
    evaluate: bool = False


def decide_training(
    request: TrainingRequest,
    agreement: Agreement | None,
    revoked: bool,
    policy: ProviderPolicy,
    budget: BudgetState,
    *,
    now: datetime,
) -> Decision:
    """Allow or deny a Train/Evaluate call; an allow carries the privacy terms the handler must honour."""
    caller = request.caller
    if caller.org != policy.provider_org or caller.role != Role.PROVIDER:
        return Decision.deny(
            Refusal(
                f"training calls come from this node's own runner (org {policy.provider_org!r}, role "
                f"'provider'); {caller.name!r} is of org {caller.org!r} with the role {str(caller.role)!r}"
            )
        )
    base = decide(
        AccessRequest(
            principal=request.consumer,
            action=Action.TRAIN,
            dataset=request.dataset,
            agreement_id=request.agreement_id,
            purpose=request.purpose,
        ),
        agreement,
        revoked,
        policy,
        budget,
        now=now,
    )
    if not base.allowed or agreement is None:
        return base
    constraints = agreement.terms.constraints
    privacy = PrivacyObligation(
        job_epsilon=request.job_epsilon, epsilon_budget=constraints.epsilon, delta=constraints.delta
    )
    refusal = None if request.evaluate else _check_privacy(privacy, budget.epsilon_spent, request.round == 1)
    if refusal is None and not request.evaluate:
        refusal = _check_cohort(constraints.min_cohort, request.cohort_size)
    if refusal is not None:
        return Decision.deny(refusal)
    what = "evaluating on held-out rows" if request.evaluate else "a training step"
    return Decision.allow(
        f"{base.reason}: {what} for a job its consumer {request.consumer.name!r} granted",
        Obligations(privacy=privacy),
    )


def _check_privacy(privacy: PrivacyObligation, epsilon_spent: float, first_round: bool) -> Refusal | None:
    budget = privacy.epsilon_budget
    if budget is None:
        return None
    if privacy.job_epsilon is None:
        return Refusal(
            f"the agreement allows training only with differential privacy (epsilon {budget:g}, delta "
            f"{privacy.delta:g}); the job asks for none"
        )
    if not epsilon_spent >= 0:  # also catches NaN from a damaged ledger
        return Refusal("this node's privacy ledger for the agreement is invalid; refusing")
    remaining = max(0.0, budget - epsilon_spent)
    if remaining == 0 or (first_round and privacy.job_epsilon > remaining):
        return Refusal(
            f"privacy budget exhausted: the job may spend epsilon {privacy.job_epsilon:g}, and the "
            f"agreement has {remaining:.4g} of {budget:g} remaining ({epsilon_spent:.4g} spent, "
            f"delta {privacy.delta:g})",
            exhausted=True,
        )
    return None


def _check_cohort(min_cohort: int | None, cohort_size: int) -> Refusal | None:
    if min_cohort is not None and cohort_size < min_cohort:
        return Refusal(
            f"the agreement requires a secure-aggregation cohort of at least {min_cohort} nodes; this round "
            f"has {cohort_size}",
            precondition=True,
        )
    return None
