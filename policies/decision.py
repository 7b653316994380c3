"""Whether a request may be served now: the node's one decision function and the values it reads and returns.

`decide` is pure (it reads only its arguments; the clock enters as `now`) and total (it returns a Decision for
every well-typed input and raises nothing), and it denies by default: only the paths below end in an allow.

- `catalog.read`: the caller's role is one of the provider's catalog roles. No agreement needed.
- `audit.read`: the caller is of the provider's own org, or holds one of its audit roles (a regulator).
- `reveal`, `train`, `match`, `valuate`: under an agreement the node holds (already verified when it was
  stored), with this provider, neither revoked nor expired, held by the caller's org, covering the action,
  dataset and purpose; a reveal also stays within the listed fields and the record limits, a match within
  the agreement's query counts (policies/matching.py). (Train is decided by policies/training.py.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from contracts.agreements import Agreement
from contracts.offers import Action
from crypto import Principal, Role
from policies.matching import MatchLimits, MatchObligation, check_match_budget, utc_day
from policies.rules import (
    AGREEMENT_ACTIONS,
    Refusal,
    check_agreement_present,
    check_agreement_standing,
    check_clock,
    check_consumer,
    check_reveal,
    check_scope,
    distinct_in_order,
)


@dataclass(frozen=True)
class AccessRequest:
    """What a caller asks: `record_count` and `fields` matter for reveals only."""

    principal: Principal
    action: Action
    dataset: str | None
    agreement_id: str | None
    purpose: str | None
    fields: tuple[str, ...] = ()
    record_count: int = 0


@dataclass(frozen=True)
class BudgetState:
    """What the agreement has used so far, from the node's own store."""

    reveal_records_used: int = 0
    epsilon_spent: float = 0.0
    match_queries_today: int = 0  # in the UTC day of the decision's `now`
    match_queries_total: int = 0


@dataclass(frozen=True)
class ProviderPolicy:
    """The node operator's standing rules, outside any agreement."""

    provider_org: str
    catalog_roles: frozenset[Role]
    audit_roles: frozenset[Role]


class Outcome(StrEnum):
    ALLOW = "allow"
    DENY_UNAUTHORIZED = "permission"  # maps to PERMISSION_DENIED
    DENY_EXHAUSTED = "budget"  # maps to RESOURCE_EXHAUSTED
    DENY_PRECONDITION = "precondition"  # maps to FAILED_PRECONDITION


@dataclass(frozen=True)
class PrivacyObligation:
    """A training step's privacy terms: spend at most `job_epsilon` over the job, within the agreement's
    (`epsilon_budget`, `delta`) in total; None epsilons mean no differential privacy is required."""

    job_epsilon: float | None
    epsilon_budget: float | None
    delta: float | None


@dataclass(frozen=True)
class Obligations:
    """An allow binds the handler: reveal only `fields`; charge `charge_reveal_records` to the budget, whose
    total is `reveal_records_limit` (None: no total). The charge is checked again against the limit when it is
    committed, so two calls decided at once cannot both spend the last records."""

    fields: tuple[str, ...] = ()
    charge_reveal_records: int = 0
    reveal_records_limit: int | None = None
    privacy: PrivacyObligation | None = None
    match: MatchObligation | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    outcome: Outcome
    reason: str
    obligations: Obligations = field(default_factory=Obligations)

    @classmethod
    def allow(cls, reason: str, obligations: Obligations | None = None) -> Decision:
        return cls(True, Outcome.ALLOW, reason, obligations or Obligations())

    @classmethod
    def deny(cls, refusal: Refusal) -> Decision:
        outcome = Outcome.DENY_UNAUTHORIZED
        if refusal.exhausted:
            outcome = Outcome.DENY_EXHAUSTED
        elif refusal.precondition:
            outcome = Outcome.DENY_PRECONDITION
        return cls(False, outcome, refusal.reason)


def decide(
    request: AccessRequest,
    agreement: Agreement | None,
    revoked: bool,
    policy: ProviderPolicy,
    budget: BudgetState,
    *,
    now: datetime,
) -> Decision:
    """Allow or deny `request`, with a reason a person understands and, on allow, the obligations to honour.

    `agreement` is the one this node stored under `request.agreement_id` (None when it has none); its
    signatures are trusted here. `revoked` says whether a revocation of it is on record. Never raises.
    """
    action = request.action
    if action == Action.CATALOG_READ:
        return _decide_catalog(request.principal, policy)
    if action == Action.AUDIT_READ:
        return _decide_audit(request.principal, policy)
    if any(action == bound for bound in AGREEMENT_ACTIONS):
        return _decide_under_agreement(
            request, agreement=agreement, revoked=revoked, policy=policy, budget=budget, now=now
        )
    return Decision.deny(Refusal(f"the action {str(action)!r} is not one this node serves"))


def _decide_catalog(principal: Principal, policy: ProviderPolicy) -> Decision:
    if any(principal.role == role for role in policy.catalog_roles):
        return Decision.allow(f"the catalog is open to the role {str(principal.role)!r}")
    return Decision.deny(
        Refusal(
            f"the catalog is open to the roles {_roles(policy.catalog_roles)}; "
            f"{principal.name!r} holds the role {str(principal.role)!r}"
        )
    )


def _decide_audit(principal: Principal, policy: ProviderPolicy) -> Decision:
    if principal.org == policy.provider_org:
        return Decision.allow(f"{principal.name!r} is of the provider's own org {policy.provider_org!r}")
    if any(principal.role == role for role in policy.audit_roles):
        return Decision.allow(f"the audit log is open to the role {str(principal.role)!r}")
    return Decision.deny(
        Refusal(
            f"the audit log is open to org {policy.provider_org!r} and the roles "
            f"{_roles(policy.audit_roles)}; {principal.name!r} is of org {principal.org!r} "
            f"with the role {str(principal.role)!r}"
        )
    )


def _decide_under_agreement(
    request: AccessRequest,
    *,
    agreement: Agreement | None,
    revoked: bool,
    policy: ProviderPolicy,
    budget: BudgetState,
    now: datetime,
) -> Decision:
    refusal = check_agreement_present(request.agreement_id, agreement) or check_clock(now)
    if refusal is not None or agreement is None or request.agreement_id is None:
        return Decision.deny(refusal or Refusal("this action needs an agreement"))
    agreement_id = request.agreement_id
    refusal = (
        check_agreement_standing(agreement_id, agreement, revoked, policy.provider_org, now)
        or check_consumer(agreement_id, agreement, request.principal)
        or check_scope(agreement_id, agreement, request.action, request.dataset, request.purpose)
    )
    if refusal is not None:
        return Decision.deny(refusal)
    if request.action == Action.MATCH:
        return _decide_match(agreement_id, agreement, budget, now)
    if request.action != Action.REVEAL:
        return Decision.allow(f"agreement {agreement_id!r} permits {str(request.action)!r}")
    refusal = check_reveal(
        agreement.terms.constraints, request.fields, request.record_count, budget.reveal_records_used
    )
    if refusal is not None:
        return Decision.deny(refusal)
    fields = distinct_in_order(request.fields)
    return Decision.allow(
        f"agreement {agreement_id!r} permits revealing {', '.join(map(repr, fields))} "
        f"of {request.record_count} records",
        Obligations(
            fields=fields,
            charge_reveal_records=request.record_count,
            reveal_records_limit=agreement.terms.constraints.reveal_max_records_total,
        ),
    )


def _decide_match(agreement_id: str, agreement: Agreement, budget: BudgetState, now: datetime) -> Decision:
    limits = MatchLimits.of(agreement.terms.constraints)
    refusal = check_match_budget(agreement_id, limits, budget.match_queries_today, budget.match_queries_total)
    if refusal is not None:
        return Decision.deny(refusal)
    return Decision.allow(
        f"agreement {agreement_id!r} permits a match query ({budget.match_queries_total + 1} of "
        f"{limits.total}; {budget.match_queries_today + 1} of {limits.per_day} today)",
        Obligations(
            match=MatchObligation(
                day=utc_day(now),
                limits=limits,
                used_today=budget.match_queries_today,
                used_total=budget.match_queries_total,
            )
        ),
    )


def _roles(roles: frozenset[Role]) -> str:
    return ", ".join(sorted(repr(str(role)) for role in roles)) or "(none)"
