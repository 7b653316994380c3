"""The valuation routes: a job's valuation terms, and encrypted valuations with its model.

- GET  /jobs/{id}/valuation    consumer or builder of the job's org: the reference year, parameter set,
                               head degree and rotation steps to make keys for, and the budget left
- POST /jobs/{id}/valuations   the same callers: encrypted features in, the encrypted value out

Every POST is recorded in the coordinator's own log as "query.valuate", answered or refused (a refused
role, a malformed body and a spent budget too), with the job's dataset, purpose and agreements once
admitted. The work and the checks are `coordinator.valuation_service`'s; here they become HTTP.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from contracts.fields import UtcDatetime
from coordinator.auth import ValuationSender
from coordinator.events import audited
from coordinator.job_routes import Problem, Shared
from coordinator.valuation_budget import BudgetLeft, ValuationBudgetExhausted
from coordinator.valuation_service import InvalidValuationQuery, ValuationRefused, ValuationService
from models.valuation.features import FEATURE_NAMES

VALUATE_ACTION = "query.valuate"
# The consumer's seeded keys for the kernel's 4 rotation steps and its relinearization key take 37.7 MB
# (measured); SEAL's seeded form uncompressed takes 47.2 MB. 48 MiB admits that and refuses expanded keys
# (twice the size) or keys for many more steps. A fresh query ciphertext takes 0.8 MB; CKKS checks it exactly.
MAX_EVALUATION_KEY_BYTES = 48 * 2**20
MAX_FEATURES_BYTES = 4 * 2**20
VALUE_MEANING = (
    "the model's cohort-normalised citation score: log(1 + forward citations / mean of the patent's "
    "technology-field x filing-year cohort); 0.69 is cited as often as its peers. Citations are a weak, "
    "lagging label of value, not a price."
)


def _base64_chars(size: int) -> int:
    return 4 * math.ceil(size / 3)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValuationQuery(_View):
    """The consumer's encrypted features and the public part of its keys, base64-encoded."""

    parameter_set: str = Field(max_length=64, description="the parameter set's name, from GET .../valuation")
    evaluation_keys: str = Field(
        max_length=_base64_chars(MAX_EVALUATION_KEY_BYTES),
        description="Galois keys of the kernel's rotation steps and a relinearization key (no secret key)",
    )
    features: str = Field(
        max_length=_base64_chars(MAX_FEATURES_BYTES),
        description="one CKKS ciphertext: the features clipped into the head's bounds, repeated in slots",
    )


class ValuationAnswer(_View):
    job_id: str
    value: str = Field(description="base64 ciphertext: the value in slot 0, only the consumer's key decrypts")
    reference_year: int
    queries_left_today: int
    queries_left_total: int
    resets_at: UtcDatetime = Field(description="when today's count starts again (UTC midnight)")


class CkksParametersView(_View):
    poly_modulus_degree: int
    coeff_modulus_bits: list[int]
    scale_bits: int


class ValuationTermsView(_View):
    job_id: str
    reference_year: int = Field(description="count the patent's age to this year, as training did")
    feature_names: list[str]
    parameter_set: str
    parameters: CkksParametersView
    degree: int
    rotation_steps: list[int]
    value_meaning: str
    queries_left_today: int
    queries_left_total: int
    resets_at: UtcDatetime


def valuation_service(request: Request) -> ValuationService:
    return request.app.state.valuations


Valuations = Annotated[ValuationService, Depends(valuation_service)]
_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "no valid token bound to the client certificate"},
    403: {"model": Problem, "description": "the caller's role may not, or an agreement lacks 'valuate'"},
    404: {"model": Problem, "description": "no such job among those the caller may see"},
    409: {"model": Problem, "description": "the job has no final valuation model"},
}
valuation_router = APIRouter(prefix="/jobs", tags=["valuations"])


@valuation_router.get("/{job_id}/valuation", response_model=ValuationTermsView, responses=_REFUSALS)
def valuation_terms(job_id: str, caller: ValuationSender, service: Valuations) -> ValuationTermsView:
    """What to compute and encrypt for a valuation with this job's model, and the budget left."""
    try:
        terms = service.terms(caller, job_id, now=datetime.now(UTC))
    except ValuationRefused as refused:
        raise HTTPException(refused.status, refused.reason) from None
    parameters = terms.parameters
    return ValuationTermsView(
        job_id=terms.job_id,
        reference_year=terms.reference_year,
        feature_names=list(FEATURE_NAMES),
        parameter_set=terms.parameter_set,
        parameters=CkksParametersView(
            poly_modulus_degree=parameters.poly_modulus_degree,
            coeff_modulus_bits=list(parameters.coeff_modulus_bits),
            scale_bits=parameters.scale_bits,
        ),
        degree=terms.degree,
        rotation_steps=list(terms.rotation_steps),
        value_meaning=VALUE_MEANING,
        **_left(terms.left),
    )


@valuation_router.post(
    "/{job_id}/valuations",
    response_model=ValuationAnswer,
    responses={
        **_REFUSALS,
        400: {"model": Problem, "description": "not base64, another parameter set, keys or query refused"},
        429: {"model": Problem, "description": "the org's valuation queries on this job are spent"},
        503: {
            "model": Problem,
            "description": "every evaluation slot stayed busy, or the audit log could not record the call",
        },
    },
)
def valuate(
    job_id: str, query: ValuationQuery, caller: ValuationSender, service: Valuations, shared: Shared
) -> ValuationAnswer:
    """Evaluate the job's model on the consumer's encrypted features; the answer is encrypted for its key.
    The coordinator never sees the features or the value."""
    with audited(shared.events, caller, VALUATE_ACTION, job_id) as outcome:
        try:
            now = datetime.now(UTC)
            admission = service.admit(caller, job_id, now=now)  # before 38 MB of keys are decoded
            spec = admission.record.spec
            outcome.about(dataset=spec.dataset, purpose=spec.purpose, agreement_ids=spec.agreements)
            answer = service.valuate(
                admission,
                parameter_set=query.parameter_set,
                evaluation_keys=_decoded(query.evaluation_keys, "evaluation_keys"),
                features=_decoded(query.features, "features"),
                now=now,
            )
        except ValuationRefused as refused:
            raise HTTPException(refused.status, refused.reason) from None
        except ValuationBudgetExhausted as spent:
            headers = {}
            if spent.resets_at is not None:
                seconds = (spent.resets_at - datetime.now(UTC)).total_seconds()
                headers["Retry-After"] = str(max(1, math.ceil(seconds)))
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, spent.reason, headers=headers) from None
        outcome.reason = f"valued; {answer.left.today} left today, {answer.left.total} in total"
    return ValuationAnswer(
        job_id=job_id,
        value=base64.b64encode(answer.ciphertext).decode("ascii"),
        reference_year=answer.reference_year,
        **_left(answer.left),
    )


def _decoded(text: str, field: str) -> bytes:
    """Strict base64 (binascii's C check: `b64decode(validate=True)` runs a regex, 0.7 s over 50 MB)."""
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidValuationQuery(f"{field} is not base64 (RFC 4648, standard alphabet, padded)") from None


def _left(left: BudgetLeft) -> dict[str, object]:
    return {"queries_left_today": left.today, "queries_left_total": left.total, "resets_at": left.resets_at}
