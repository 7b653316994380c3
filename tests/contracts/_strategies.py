"""Hypothesis strategies for the contracts tests: valid offers, and agreement terms that match their offer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from contracts.offers import Action, Constraints, Offer, offer_digest
from contracts.terms import AgreementTerms

# Names may hold any character but surrogates; the models refuse surrounding blanks, so none are drawn.
names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda text: text == text.strip()
)
field_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)
offsets = st.builds(timezone, st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23)))
# Times at many offsets from UTC, so that their normalisation to UTC is exercised.
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets)
# Record limits up to the largest the models accept (2**53 - 1).
limits = st.none() | st.integers(min_value=0, max_value=2**53 - 1)
unique_names = st.lists(names, min_size=1, max_size=4, unique=True).map(tuple)


# Both or neither: a budget is (epsilon, delta).
privacy_budget_fields = st.just({"epsilon": None, "delta": None}) | st.fixed_dictionaries(
    {
        "epsilon": st.floats(min_value=0.01, max_value=100, allow_nan=False, allow_infinity=False),
        "delta": st.floats(min_value=1e-12, max_value=0.5, allow_nan=False, allow_infinity=False),
    }
)


@st.composite
def constraints(draw: st.DrawFn) -> Constraints:
    """Offer constraints with every field either absent or drawn."""
    return Constraints(
        purposes=draw(st.none() | unique_names),
        consumer_orgs=draw(st.none() | unique_names),
        reveal_fields=tuple(draw(st.lists(field_names, max_size=4, unique=True))),
        reveal_max_records_per_request=draw(limits),
        reveal_max_records_total=draw(limits),
        **draw(privacy_budget_fields),
        min_cohort=draw(st.none() | st.integers(min_value=2, max_value=1000)),
        model_export=draw(st.booleans()),
        match_queries_per_day=draw(st.none() | st.integers(min_value=1, max_value=2**53 - 1)),
        match_queries_total=draw(st.none() | st.integers(min_value=1, max_value=2**53 - 1)),
        match_score_noise=draw(
            st.none() | st.floats(min_value=1e-9, max_value=1, allow_nan=False, allow_infinity=False)
        ),
        valuation_queries_per_day=draw(st.none() | st.integers(min_value=1, max_value=2**53 - 1)),
        valuation_queries_total=draw(st.none() | st.integers(min_value=1, max_value=2**53 - 1)),
        expires_at=draw(st.none() | times),
    )


@st.composite
def offers(draw: st.DrawFn) -> Offer:
    """Valid offers of one or more actions."""
    return Offer(
        offer_id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)),
        version=draw(st.integers(min_value=1, max_value=2**53 - 1)),
        provider_org=draw(names),
        dataset=draw(names),
        actions=tuple(draw(st.lists(st.sampled_from(list(Action)), min_size=1, unique=True))),
        constraints=draw(constraints()),
        approval=draw(st.sampled_from(["automatic", "manual"])),
        description=draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=30)),
    )


@st.composite
def agreement_terms(draw: st.DrawFn, *, expiry_step: timedelta, max_expiry_steps: int) -> AgreementTerms:
    """Terms drawn from an offer, which they match: its purposes, its consumer orgs, its digest.

    They either never expire or expire 1 to `max_expiry_steps` times `expiry_step` after they are created.
    """
    offer = draw(offers())
    purposes, orgs = offer.constraints.purposes, offer.constraints.consumer_orgs
    created_at = draw(times)
    expiry = created_at + expiry_step * draw(st.integers(1, max_expiry_steps))
    return AgreementTerms(
        offer_id=offer.offer_id,
        offer_digest=offer_digest(offer),
        provider_org=offer.provider_org,
        consumer_org=draw(names if orgs is None else st.sampled_from(orgs)),
        consumer_name=draw(names),
        dataset=offer.dataset,
        actions=offer.actions,
        constraints=offer.constraints,
        purpose=draw(names if purposes is None else st.sampled_from(purposes)),
        created_at=created_at,
        expires_at=draw(st.none() | st.just(expiry)),
    )
