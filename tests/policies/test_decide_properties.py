"""Properties of `decide` over generated inputs: total, deny by default, never beyond the agreement.

Requests are drawn near an agreement (each attribute either matches it or is something else), so the allow
paths are exercised as often as the deny paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.agreements import Agreement
from contracts.offers import Action, Constraints
from contracts.terms import AgreementTerms
from crypto import Principal, Role
from policies.decision import AccessRequest, BudgetState, Obligations, Outcome, ProviderPolicy, decide

ORGS = ("acme", "globex", "initech")
FIELDS = ("title", "abstract", "applicant", "claims")
PURPOSES = ("research", "teaching")
DATASETS = ("patents", "trademarks")
BOUND_ACTIONS = (Action.REVEAL, Action.TRAIN, Action.MATCH, Action.VALUATE)

weird_text = st.text(max_size=12)
offsets = st.builds(timezone, st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23)))
aware_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets)
any_times = st.datetimes(timezones=st.none() | offsets)  # the whole range, naive ones included
counts = st.integers(min_value=-5, max_value=40) | st.integers()


def _near(value: object, other: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.just(value), other)


@st.composite
def agreements(draw: st.DrawFn, *, for_reveal: bool = False) -> Agreement:
    created_at = draw(aware_times)
    purposes = draw(st.none() | st.just(PURPOSES))
    constraints = Constraints(
        purposes=purposes,
        consumer_orgs=draw(st.none() | st.just(("globex", "initech"))),
        reveal_fields=tuple(
            draw(st.lists(st.sampled_from(FIELDS), min_size=int(for_reveal), max_size=3, unique=True))
        ),
        reveal_max_records_per_request=draw(st.none() | st.integers(0, 20)),
        reveal_max_records_total=draw(st.none() | st.integers(0, 50)),
        expires_at=draw(st.none() | st.just(created_at + timedelta(days=draw(st.integers(1, 400))))),
    )
    terms = AgreementTerms(
        offer_id="offer-1",
        offer_digest="sha256:" + "0" * 64,
        provider_org=draw(st.sampled_from(ORGS)),
        consumer_org=draw(st.sampled_from(("globex", "initech"))),
        consumer_name="alice",
        dataset=draw(st.sampled_from(DATASETS)),
        actions=(Action.REVEAL,)
        if for_reveal
        else tuple(draw(st.lists(st.sampled_from(list(Action)), min_size=1, unique=True))),
        constraints=constraints,
        purpose=draw(st.sampled_from(PURPOSES)),
        created_at=created_at,
        expires_at=draw(st.none() | st.just(created_at + timedelta(days=draw(st.integers(1, 400))))),
    )
    return Agreement(terms=terms)


@dataclass(frozen=True)
class Case:
    request: AccessRequest
    agreement: Agreement | None
    revoked: bool
    policy: ProviderPolicy
    budget: BudgetState
    now: datetime

    def decide(self):
        return decide(self.request, self.agreement, self.revoked, self.policy, self.budget, now=self.now)


@st.composite
def cases(draw: st.DrawFn, now: st.SearchStrategy[datetime] | None = None) -> Case:
    agreement = draw(st.none() | agreements())
    terms = agreement.terms if agreement is not None else None
    role = draw(st.sampled_from(list(Role)) | weird_text)
    principal = Principal(
        name=draw(weird_text),
        org=draw(_near(terms.consumer_org if terms else "globex", st.sampled_from(ORGS) | weird_text)),
        role=role,
        tls_thumbprint=draw(weird_text),
    )
    fields = draw(st.lists(st.sampled_from(FIELDS) | weird_text, max_size=4).map(tuple))
    request = AccessRequest(
        principal=principal,
        action=draw(st.sampled_from(list(Action)) | weird_text),
        dataset=draw(
            _near(terms.dataset if terms else "patents", st.none() | st.sampled_from(DATASETS) | weird_text)
        ),
        agreement_id=draw(st.sampled_from(["sha256:" + "1" * 64, ""]) | st.none() | weird_text),
        purpose=draw(_near(terms.purpose if terms else "research", st.none() | weird_text)),
        fields=fields,
        record_count=draw(counts),
    )
    policy = ProviderPolicy(
        provider_org=draw(_near(terms.provider_org if terms else "acme", st.sampled_from(ORGS) | weird_text)),
        catalog_roles=frozenset(draw(st.sets(st.sampled_from(list(Role))))),
        audit_roles=frozenset(draw(st.sets(st.sampled_from(list(Role))))),
    )
    return Case(
        request,
        agreement,
        draw(st.booleans()),
        policy,
        BudgetState(draw(counts)),
        draw(now if now is not None else (aware_times | any_times)),
    )


MUTATIONS = (
    None,
    "org",
    "provider",
    "action",
    "dataset",
    "purpose",
    "fields",
    "count",
    "count_over",
    "count_under",
    "budget",
    "budget_over",
    "budget_negative",
    "revoked",
    "late",
    "late_exact",
)


@st.composite
def near_cases(draw: st.DrawFn, mutations: tuple[str | None, ...] = MUTATIONS) -> Case:
    """A reveal that matches a live agreement in everything but (at most) one drawn attribute.

    Mutations named with a suffix sit just past a limit, to catch off-by-one errors; the others are anything.
    """
    agreement = draw(agreements(for_reveal=True))
    terms, constraints = agreement.terms, agreement.terms.constraints
    per_request = constraints.reveal_max_records_per_request
    total = constraints.reveal_max_records_total
    count = draw(
        st.integers(
            1, max(1, min(20 if per_request is None else per_request, 20 if total is None else total))
        )
    )
    fields = tuple(draw(st.lists(st.sampled_from(constraints.reveal_fields), min_size=1, unique=True)))
    expiries = [when for when in (terms.expires_at, constraints.expires_at) if when is not None]
    honest = {
        "org": terms.consumer_org,
        "provider": terms.provider_org,
        "action": Action.REVEAL,
        "dataset": terms.dataset,
        "purpose": terms.purpose,
        "fields": fields,
        "count": count,
        "budget": draw(st.integers(0, max(0, (total or 0) - count))),
        "revoked": False,
        "late": terms.created_at + timedelta(seconds=draw(st.integers(0, 3600))),
    }
    mutants = {
        "org": weird_text,
        "provider": weird_text,
        "action": st.sampled_from(list(Action)),
        "dataset": weird_text,
        "purpose": st.none() | weird_text,
        "fields": st.builds(lambda extra: (*fields, extra), weird_text),
        "count": counts,
        "count_over": st.just(count if per_request is None else per_request + 1),
        "count_under": st.sampled_from((0, -1)),
        "budget": counts,
        "budget_over": st.just(0 if total is None else total - count + 1),
        "budget_negative": st.integers(max_value=-1),
        "revoked": st.just(True),
        "late": aware_times,
        "late_exact": st.just(min(expiries, default=honest["late"])),
    }
    mutation = draw(st.sampled_from(mutations))
    if mutation is not None:
        honest[mutation.split("_")[0]] = draw(mutants[mutation])
    request = AccessRequest(
        principal=Principal(name="alice", org=honest["org"], role=Role.CONSUMER, tls_thumbprint="t"),
        action=honest["action"],
        dataset=honest["dataset"],
        agreement_id="sha256:" + "1" * 64,
        purpose=honest["purpose"],
        fields=honest["fields"],
        record_count=honest["count"],
    )
    policy = ProviderPolicy(
        provider_org=honest["provider"],
        catalog_roles=frozenset({Role.CONSUMER}),
        audit_roles=frozenset({Role.REGULATOR}),
    )
    return Case(request, agreement, honest["revoked"], policy, BudgetState(honest["budget"]), honest["late"])


@settings(max_examples=150, deadline=None)
@given(cases())
def test_decide_is_total_and_consistent(case: Case) -> None:
    decision = case.decide()
    assert decision.allowed == (decision.outcome is Outcome.ALLOW)
    assert isinstance(decision.reason, str) and decision.reason
    if not decision.allowed:
        assert decision.obligations == Obligations()


@settings(max_examples=100, deadline=None)
@given(cases(now=aware_times) | near_cases(mutations=("revoked", "late", "late_exact")))
def test_a_revoked_or_expired_agreement_is_always_denied(case: Case) -> None:
    if case.agreement is None or case.request.action not in BOUND_ACTIONS:
        return
    terms = case.agreement.terms
    expiries = [when for when in (terms.expires_at, terms.constraints.expires_at) if when is not None]
    if case.revoked or any(case.now >= when for when in expiries):
        assert not case.decide().allowed


@settings(max_examples=200, deadline=None)
@given(near_cases() | cases(now=aware_times))
def test_an_allow_never_exceeds_the_agreement(case: Case) -> None:
    decision = case.decide()
    if not decision.allowed or case.request.action not in BOUND_ACTIONS:
        return
    assert case.agreement is not None
    terms, request = case.agreement.terms, case.request
    assert not case.revoked
    assert request.principal.org == terms.consumer_org
    assert terms.provider_org == case.policy.provider_org
    assert request.action in terms.actions
    assert (request.dataset, request.purpose) == (terms.dataset, terms.purpose)
    if request.action is Action.REVEAL:
        constraints = terms.constraints
        assert set(decision.obligations.fields) <= set(constraints.reveal_fields)
        assert decision.obligations.fields and set(decision.obligations.fields) == set(request.fields)
        assert decision.obligations.charge_reveal_records == request.record_count >= 1
        if constraints.reveal_max_records_per_request is not None:
            assert request.record_count <= constraints.reveal_max_records_per_request
        if constraints.reveal_max_records_total is not None:
            assert case.budget.reveal_records_used >= 0
            assert (
                case.budget.reveal_records_used + request.record_count <= constraints.reveal_max_records_total
            )
    else:
        assert decision.obligations == Obligations()


@settings(max_examples=60, deadline=None)
@given(cases(now=aware_times), weird_text.filter(lambda text: text not in set(Action)))
def test_unknown_actions_are_denied(case: Case, action: str) -> None:
    request = AccessRequest(**{**case.request.__dict__, "action": action})
    decision = decide(request, case.agreement, case.revoked, case.policy, case.budget, now=case.now)
    assert not decision.allowed and decision.outcome is Outcome.DENY_UNAUTHORIZED


@settings(max_examples=60, deadline=None)
@given(cases(now=aware_times), st.sampled_from(BOUND_ACTIONS))
def test_agreement_bound_actions_without_an_agreement_are_denied(case: Case, action: Action) -> None:
    request = AccessRequest(**{**case.request.__dict__, "action": action})
    decision = decide(request, None, case.revoked, case.policy, case.budget, now=case.now)
    assert not decision.allowed


def test_the_generator_reaches_allowed_reveals() -> None:
    """Guard against vacuous properties: the near-miss generator must produce allowed reveals."""
    allowed: list[bool] = []

    @settings(max_examples=50, deadline=None, database=None)
    @given(near_cases())
    def collect(case: Case) -> None:
        if case.request.action is Action.REVEAL and case.decide().allowed:
            allowed.append(True)

    collect()
    assert allowed
