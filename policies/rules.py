"""The rules behind `decide`, one small pure check each: a Refusal when a request breaks the rule, or None.

Every check reads only its arguments and compares with `==`, so none can raise on strange but well-typed input
(odd strings, negative counts, an agreement for another node); reasons quote request values with repr, so a
value with line breaks cannot forge a second line in a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.agreements import Agreement
from contracts.fields import utc_text
from contracts.offers import Action, Constraints
from crypto import Principal

AGREEMENT_ACTIONS = (Action.REVEAL, Action.TRAIN, Action.MATCH, Action.VALUATE)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused; `exhausted` when only a spent budget stands in the way, `precondition` when
    the request is allowed in kind but the state of the job around it is not (a cohort too small)."""

    reason: str
    exhausted: bool = False
    precondition: bool = False


def _listing(values: tuple[str, ...]) -> str:
    return ", ".join(repr(value) for value in values) if values else "none"


def check_clock(now: datetime) -> Refusal | None:
    """Refuse when the node's own clock reading cannot be compared with expiry times."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        return Refusal("the node's clock reading carries no time zone, so expiry cannot be checked; refusing")
    return None


def check_agreement_present(agreement_id: str | None, agreement: Agreement | None) -> Refusal | None:
    if not agreement_id:
        return Refusal("this action needs an agreement, and the request names none")
    if agreement is None:
        return Refusal(f"no agreement {agreement_id!r} at this node")
    return None


def check_agreement_standing(
    agreement_id: str, agreement: Agreement, revoked: bool, provider_org: str, now: datetime
) -> Refusal | None:
    """Refuse an agreement with another provider, a revoked one, or one past its own or its offer's expiry."""
    terms = agreement.terms
    if terms.provider_org != provider_org:
        return Refusal(
            f"agreement {agreement_id!r} is with provider {terms.provider_org!r}, "
            f"not with this node's org {provider_org!r}"
        )
    if revoked:
        return Refusal(f"agreement {agreement_id!r} was revoked")
    for label, expiry in (
        ("agreement", terms.expires_at),
        ("offer behind the agreement", terms.constraints.expires_at),
    ):
        if expiry is not None and now >= expiry:
            return Refusal(f"the {label} {agreement_id!r} expired at {utc_text(expiry)}")
    return None


def check_consumer(agreement_id: str, agreement: Agreement, principal: Principal) -> Refusal | None:
    """Refuse a caller who is not of the agreement's consumer org, or an org the offer is not open to."""
    terms = agreement.terms
    if principal.org != terms.consumer_org:
        return Refusal(
            f"agreement {agreement_id!r} belongs to org {terms.consumer_org!r}; "
            f"the caller {principal.name!r} is of org {principal.org!r}"
        )
    allowed_orgs = terms.constraints.consumer_orgs
    if allowed_orgs is not None and not any(terms.consumer_org == org for org in allowed_orgs):
        return Refusal(
            f"the offer behind agreement {agreement_id!r} is not open to org {terms.consumer_org!r}"
        )
    return None


def check_scope(
    agreement_id: str, agreement: Agreement, action: str, dataset: str | None, purpose: str | None
) -> Refusal | None:
    """Refuse an action, dataset or purpose that the agreement does not cover."""
    terms = agreement.terms
    if not any(action == permitted for permitted in terms.actions):
        permitted = tuple(permitted.value for permitted in terms.actions)
        return Refusal(
            f"agreement {agreement_id!r} does not permit {str(action)!r}; it permits {_listing(permitted)}"
        )
    if dataset != terms.dataset:
        return Refusal(f"agreement {agreement_id!r} covers dataset {terms.dataset!r}, not {dataset!r}")
    if purpose != terms.purpose:
        return Refusal(
            f"agreement {agreement_id!r} is for the purpose {terms.purpose!r}; the request states {purpose!r}"
        )
    purposes = terms.constraints.purposes
    if purposes is not None and not any(terms.purpose == allowed for allowed in purposes):
        return Refusal(
            f"the offer behind agreement {agreement_id!r} does not allow the purpose {terms.purpose!r}"
        )
    return None


def distinct_in_order(values: tuple[str, ...]) -> tuple[str, ...]:
    """`values` without repeats, first occurrence kept."""
    kept: list[str] = []
    for value in values:
        if not any(value == seen for seen in kept):
            kept.append(value)
    return tuple(kept)


def check_reveal(
    constraints: Constraints, fields: tuple[str, ...], record_count: int, records_used: int
) -> Refusal | None:
    """Refuse a reveal of fields the offer does not list, too many records per request, or beyond the total.

    Only the total limit yields an `exhausted` refusal; its reason says how many records remain.
    """
    allowed = constraints.reveal_fields
    if record_count < 1:
        return Refusal(f"a reveal must ask for at least one record; this one asks for {record_count}")
    if not fields:
        return Refusal(f"a reveal must name the fields it wants; this agreement allows {_listing(allowed)}")
    refused = tuple(field for field in distinct_in_order(fields) if not any(field == ok for ok in allowed))
    if refused:
        return Refusal(
            f"the agreement does not allow revealing {_listing(refused)}; it allows {_listing(allowed)}"
        )
    per_request = constraints.reveal_max_records_per_request
    if per_request is not None and record_count > per_request:
        return Refusal(
            f"a reveal may ask for at most {per_request} records per request; this one asks for "
            f"{record_count}"
        )
    total = constraints.reveal_max_records_total
    if total is None:
        return None
    if records_used < 0:
        return Refusal("this node's record of reveals under the agreement is invalid (negative); refusing")
    remaining = max(total - records_used, 0)
    if record_count > remaining:
        return Refusal(
            f"the reveal budget is exhausted: {remaining} of {total} records remain, and this request "
            f"asks for {record_count}",
            exhausted=True,
        )
    return None
