"""`decide_training`, one example per rule: the runner, the consumer behind the grant, privacy and cohort."""

from __future__ import annotations

from dataclasses import replace

import pytest

from contracts.agreements import Agreement
from contracts.offers import Action, Constraints
from crypto import Principal, Role
from policies.decision import BudgetState, Outcome, ProviderPolicy
from policies.training import TrainingRequest, decide_training
from tests.contracts._helpers import NOW, sample_terms

AGREEMENT_ID = "sha256:" + "cd" * 32
POLICY = ProviderPolicy(provider_org="acme", catalog_roles=frozenset(), audit_roles=frozenset())
RUNNER = Principal(name="node-a", org="acme", role=Role.PROVIDER, tls_thumbprint="t1")
BUILDER = Principal(name="alice", org="globex", role=Role.BUILDER, tls_thumbprint="")


def _agreement(**constraints: object) -> Agreement:
    fields = {"purposes": ("research",), "epsilon": 4.0, "delta": 1e-5, "min_cohort": 3} | constraints
    return Agreement(terms=sample_terms(actions=(Action.TRAIN,), constraints=Constraints(**fields)))


REQUEST = TrainingRequest(
    caller=RUNNER,
    consumer=BUILDER,
    agreement_id=AGREEMENT_ID,
    dataset="patents",
    purpose="research",
    job_epsilon=2.0,
    cohort_size=3,
    round=1,
)


def _decide(request: TrainingRequest = REQUEST, agreement: Agreement | None = None, spent: float = 0.0):
    return decide_training(
        request,
        agreement or _agreement(),
        False,
        POLICY,
        BudgetState(epsilon_spent=spent),
        now=NOW,
    )


def test_an_allowed_round_carries_the_privacy_terms() -> None:
    decision = _decide()
    assert decision.allowed
    privacy = decision.obligations.privacy
    assert (privacy.job_epsilon, privacy.epsilon_budget, privacy.delta) == (2.0, 4.0, 1e-5)


@pytest.mark.parametrize(
    "caller",
    [
        Principal(name="alice", org="globex", role=Role.BUILDER, tls_thumbprint="t"),  # the consumer itself
        Principal(name="ops", org="acme", role=Role.REGULATOR, tls_thumbprint="t"),  # own org, wrong role
        Principal(name="node-b", org="initech", role=Role.PROVIDER, tls_thumbprint="t"),  # another node
    ],
)
def test_only_the_providers_own_runner_may_call(caller: Principal) -> None:
    decision = _decide(replace(REQUEST, caller=caller))
    assert decision.outcome == Outcome.DENY_UNAUTHORIZED and "own runner" in decision.reason


def test_the_agreement_is_judged_for_the_grants_signer() -> None:
    stranger = Principal(name="eve", org="initech", role=Role.BUILDER, tls_thumbprint="")
    decision = _decide(replace(REQUEST, consumer=stranger))
    assert decision.outcome == Outcome.DENY_UNAUTHORIZED and "belongs to org 'globex'" in decision.reason


def test_a_small_cohort_is_a_failed_precondition_but_evaluate_needs_none() -> None:
    small = replace(REQUEST, cohort_size=2)
    assert _decide(small).outcome == Outcome.DENY_PRECONDITION
    assert _decide(replace(small, evaluate=True, round=0)).allowed


def test_the_job_level_budget_check_applies_at_the_first_round_only() -> None:
    # 2.5 of 4 spent leaves 1.5: a job asking for 2 may not start, but a running one is checked by the ledger.
    assert _decide(spent=2.5).outcome == Outcome.DENY_EXHAUSTED
    assert _decide(replace(REQUEST, round=2), spent=2.5).allowed
    spent_out = _decide(replace(REQUEST, round=2), spent=4.0)
    assert spent_out.outcome == Outcome.DENY_EXHAUSTED and "0 of 4 remaining" in spent_out.reason


def test_privacy_rules() -> None:
    no_dp = _decide(replace(REQUEST, job_epsilon=None))
    assert no_dp.outcome == Outcome.DENY_UNAUTHORIZED and "only with differential privacy" in no_dp.reason
    open_agreement = _agreement(epsilon=None, delta=None)
    assert _decide(replace(REQUEST, job_epsilon=None), open_agreement).allowed
    assert _decide(spent=float("nan")).outcome == Outcome.DENY_UNAUTHORIZED
