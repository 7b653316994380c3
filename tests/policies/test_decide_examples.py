"""`decide`, one example per rule: what is allowed, and each reason for a denial, as a person reads it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from contracts.agreements import Agreement
from contracts.offers import Action, Constraints
from crypto import Principal, Role
from policies.decision import (
    AccessRequest,
    BudgetState,
    Decision,
    Obligations,
    Outcome,
    ProviderPolicy,
    decide,
)
from policies.matching import (
    DEFAULT_QUERIES_PER_DAY,
    DEFAULT_QUERIES_TOTAL,
    MatchLimits,
    MatchObligation,
)
from tests.contracts._helpers import NOW, sample_terms

AGREEMENT_ID = "sha256:" + "ab" * 32
POLICY = ProviderPolicy(
    provider_org="acme",
    catalog_roles=frozenset({Role.CONSUMER, Role.BUILDER, Role.PROVIDER}),
    audit_roles=frozenset({Role.REGULATOR}),
)
ALICE = Principal(name="alice", org="globex", role=Role.CONSUMER, tls_thumbprint="t1")
EVE = Principal(name="eve", org="initech", role=Role.CONSUMER, tls_thumbprint="t2")
REGULATOR = Principal(name="reg", org="authority", role=Role.REGULATOR, tls_thumbprint="t3")
OPERATOR = Principal(name="ops", org="acme", role=Role.PROVIDER, tls_thumbprint="t4")


def _agreement(**changes: object) -> Agreement:
    """Alice of globex may reveal or match acme's patents for research for 30 days, under a 60-day offer."""
    constraints = Constraints(
        purposes=("research", "teaching"),
        reveal_fields=("title", "abstract", "applicant"),
        reveal_max_records_per_request=10,
        reveal_max_records_total=100,
        expires_at=NOW + timedelta(days=60),
    )
    fields: dict[str, object] = {
        "actions": (Action.REVEAL, Action.MATCH),
        "constraints": constraints,
        "created_at": NOW - timedelta(days=1),
        "expires_at": NOW + timedelta(days=30),
    }
    return Agreement(terms=sample_terms(**(fields | changes)))


def _reveal(**changes: object) -> AccessRequest:
    fields: dict[str, object] = {
        "principal": ALICE,
        "action": Action.REVEAL,
        "dataset": "patents",
        "agreement_id": AGREEMENT_ID,
        "purpose": "research",
        "fields": ("title", "abstract"),
        "record_count": 3,
    }
    return AccessRequest(**(fields | changes))


def _decide(
    request: AccessRequest,
    agreement: Agreement | None = None,
    *,
    revoked: bool = False,
    used: int = 0,
    now: datetime = NOW,
) -> Decision:
    return decide(request, agreement or _agreement(), revoked, POLICY, BudgetState(used), now=now)


def _denied(decision: Decision, *phrases: str, outcome: Outcome = Outcome.DENY_UNAUTHORIZED) -> None:
    assert not decision.allowed
    assert decision.outcome is outcome
    assert decision.obligations == Obligations()
    for phrase in phrases:
        assert phrase in decision.reason


# ---------------------------------------------------------------- catalog and audit


def _plain(principal: Principal, action: Action | str) -> AccessRequest:
    return AccessRequest(principal=principal, action=action, dataset=None, agreement_id=None, purpose=None)


def test_catalog_is_open_to_the_listed_roles_without_an_agreement() -> None:
    decision = decide(_plain(EVE, Action.CATALOG_READ), None, False, POLICY, BudgetState(), now=NOW)
    assert decision.allowed and decision.outcome is Outcome.ALLOW


def test_catalog_is_closed_to_other_roles() -> None:
    decision = decide(_plain(REGULATOR, Action.CATALOG_READ), None, False, POLICY, BudgetState(), now=NOW)
    _denied(decision, "'builder', 'consumer', 'provider'", "'reg' holds the role 'regulator'")


@pytest.mark.parametrize("principal", [OPERATOR, REGULATOR])
def test_audit_is_open_to_the_provider_org_and_audit_roles(principal: Principal) -> None:
    assert decide(_plain(principal, Action.AUDIT_READ), None, False, POLICY, BudgetState(), now=NOW).allowed


def test_audit_is_closed_to_a_consumer() -> None:
    decision = decide(_plain(ALICE, Action.AUDIT_READ), None, False, POLICY, BudgetState(), now=NOW)
    _denied(decision, "open to org 'acme'", "'alice' is of org 'globex'")


def test_an_unknown_action_is_denied() -> None:
    decision = decide(_plain(OPERATOR, "export"), _agreement(), False, POLICY, BudgetState(), now=NOW)
    _denied(decision, "'export' is not one this node serves")


# ---------------------------------------------------------------- under an agreement


def test_a_reveal_within_the_agreement_is_allowed_with_its_obligations() -> None:
    decision = _decide(_reveal(fields=("applicant", "title", "applicant"), record_count=10), used=90)
    assert decision.allowed and decision.outcome is Outcome.ALLOW
    assert decision.obligations == Obligations(
        fields=("applicant", "title"), charge_reveal_records=10, reveal_records_limit=100
    )


def _match(budget: BudgetState, agreement: Agreement | None = None, now: datetime = NOW) -> Decision:
    request = _reveal(action=Action.MATCH, fields=(), record_count=0)
    return decide(request, agreement or _agreement(), False, POLICY, budget, now=now)


def test_match_under_the_agreement_is_allowed_with_the_default_limits_and_no_reveal_obligations() -> None:
    decision = _match(BudgetState(match_queries_today=3, match_queries_total=7))
    assert decision.allowed
    assert decision.obligations == Obligations(
        match=MatchObligation(
            day=NOW.date().isoformat(),
            limits=MatchLimits(DEFAULT_QUERIES_PER_DAY, DEFAULT_QUERIES_TOTAL, score_noise=0.0),
            used_today=3,
            used_total=7,
        )
    )
    assert f"8 of {DEFAULT_QUERIES_TOTAL}; 4 of {DEFAULT_QUERIES_PER_DAY} today" in decision.reason


def test_match_past_the_day_s_queries_is_exhausted_until_the_next_utc_day() -> None:
    decision = _match(BudgetState(match_queries_today=DEFAULT_QUERIES_PER_DAY, match_queries_total=25))
    _denied(
        decision,
        f"allows {DEFAULT_QUERIES_PER_DAY} match queries per UTC day",
        f"{DEFAULT_QUERIES_TOTAL - 25} remain in total from tomorrow",
        outcome=Outcome.DENY_EXHAUSTED,
    )


def test_match_past_the_total_is_exhausted_whatever_the_day() -> None:
    constraints = Constraints(match_queries_per_day=1000, match_queries_total=5, match_score_noise=0.01)
    agreement = _agreement(constraints=constraints)
    _denied(
        _match(BudgetState(match_queries_today=0, match_queries_total=5), agreement),
        "allows 5 match queries in total and all 5 are used",
        outcome=Outcome.DENY_EXHAUSTED,
    )
    allowed = _match(BudgetState(match_queries_today=999, match_queries_total=4), agreement)
    assert allowed.obligations.match.limits == MatchLimits(per_day=1000, total=5, score_noise=0.01)


def test_a_match_counts_against_the_utc_day_whatever_the_node_s_time_zone() -> None:
    late_evening_in_new_york = datetime(2026, 3, 1, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
    decision = _match(BudgetState(), now=late_evening_in_new_york)
    assert decision.obligations.match.day == "2026-03-02"


def test_no_agreement_named() -> None:
    _denied(_decide(_reveal(agreement_id=None)), "needs an agreement", "names none")


def test_no_agreement_at_this_node() -> None:
    decision = decide(_reveal(), None, False, POLICY, BudgetState(), now=NOW)
    _denied(decision, f"no agreement {AGREEMENT_ID!r} at this node")


def test_agreement_with_another_provider() -> None:
    _denied(_decide(_reveal(), _agreement(provider_org="umbrella")), "with provider 'umbrella'", "org 'acme'")


def test_revoked_agreement() -> None:
    _denied(_decide(_reveal(), revoked=True), f"agreement {AGREEMENT_ID!r} was revoked")


def test_agreement_expires_at_its_expiry_instant() -> None:
    expiry = NOW + timedelta(days=30)
    assert _decide(_reveal(), now=expiry - timedelta(microseconds=1)).allowed
    _denied(_decide(_reveal(), now=expiry), "expired at 2026-03-31T12:00:00.000000Z")


def test_offer_expiry_binds_the_agreement_too() -> None:
    agreement = _agreement(expires_at=None)
    _denied(
        _decide(_reveal(), agreement, now=NOW + timedelta(days=61)), "offer behind the agreement", "expired"
    )


def test_a_clock_reading_without_time_zone_is_refused() -> None:
    _denied(_decide(_reveal(), now=datetime(2026, 3, 1)), "no time zone")


def test_caller_of_another_org() -> None:
    _denied(_decide(_reveal(principal=EVE)), "belongs to org 'globex'", "'eve' is of org 'initech'")


def test_org_the_offer_is_not_open_to() -> None:
    # Terms validation refuses this combination; a stored agreement that somehow holds it is still denied.
    agreement = _agreement()
    closed = agreement.terms.constraints.model_copy(update={"consumer_orgs": ("initech",)})
    stored = Agreement.model_construct(terms=agreement.terms.model_copy(update={"constraints": closed}))
    _denied(_decide(_reveal(), stored), "not open to org 'globex'")


def test_action_the_agreement_does_not_permit() -> None:
    _denied(_decide(_reveal(action=Action.TRAIN)), "does not permit 'train'", "'reveal', 'match'")


def test_other_dataset() -> None:
    _denied(_decide(_reveal(dataset="trademarks")), "covers dataset 'patents', not 'trademarks'")


@pytest.mark.parametrize("purpose", ["teaching", None, "Research"])
def test_other_purpose(purpose: str | None) -> None:
    _denied(_decide(_reveal(purpose=purpose)), "is for the purpose 'research'", f"states {purpose!r}")


def test_fields_the_offer_does_not_list_are_named() -> None:
    decision = _decide(_reveal(fields=("title", "claims", "inventor_address")))
    _denied(decision, "does not allow revealing 'claims', 'inventor_address'", "allows 'title', 'abstract'")


def test_a_reveal_must_name_fields() -> None:
    _denied(_decide(_reveal(fields=())), "must name the fields")


@pytest.mark.parametrize("count", [0, -5])
def test_a_reveal_must_ask_for_records(count: int) -> None:
    _denied(_decide(_reveal(record_count=count)), f"asks for {count}")


def test_per_request_limit() -> None:
    _denied(_decide(_reveal(record_count=11)), "at most 10 records per request", "asks for 11")


def test_total_limit_is_a_budget_denial_that_says_what_remains() -> None:
    decision = _decide(_reveal(record_count=10), used=95)
    _denied(decision, "5 of 100 records remain", "asks for 10", outcome=Outcome.DENY_EXHAUSTED)
    spent = _decide(_reveal(record_count=1), used=130)
    _denied(spent, "0 of 100 records remain", outcome=Outcome.DENY_EXHAUSTED)


def test_a_negative_budget_record_is_refused() -> None:
    _denied(_decide(_reveal(), used=-50), "invalid (negative)")


def test_no_total_limit_means_no_budget_check() -> None:
    agreement = _agreement()
    unlimited = agreement.terms.constraints.model_copy(update={"reveal_max_records_total": None})
    stored = Agreement(terms=agreement.terms.model_copy(update={"constraints": unlimited}))
    assert _decide(_reveal(), stored, used=10**9).allowed


def test_reasons_quote_request_values() -> None:
    decision = _decide(_reveal(dataset="x\nallowed: yes"))
    assert "\n" not in decision.reason
