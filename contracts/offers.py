"""Offers: what a provider offers on one dataset, read from the JSON file it edits, and the offer's digest."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from contracts.errors import OfferError
from contracts.fields import (
    MAX_JSON_INT,
    FieldName,
    FreeText,
    FrozenModel,
    Limit,
    Name,
    NameList,
    OfferId,
    UtcDatetime,
    describe_validation_error,
    distinct,
    not_empty,
)
from crypto import digest


class Action(StrEnum):
    CATALOG_READ = "catalog.read"
    TRAIN = "train"
    MATCH = "match"
    VALUATE = "valuate"
    REVEAL = "reveal"
    AUDIT_READ = "audit.read"


ActionList = Annotated[tuple[Action, ...], AfterValidator(distinct), AfterValidator(not_empty)]


class Constraints(FrozenModel):
    """Limits an offer sets. An absent field means no such limit, except `reveal_fields`: absent, none may be
    revealed, and `model_export`: absent, a trained model may not leave the job. `purposes` and
    `consumer_orgs` are None for "any"; an empty list is refused as ambiguous.

    Training: `epsilon` and `delta` are the agreement's whole differential-privacy budget, spent by the node's
    own accountant over every training job under the agreement (both or neither; without them the provider
    allows training without DP). `min_cohort` is the fewest nodes a secure-aggregation round may have for this
    node to take part: below it, a single node's update would be too easy to single out.

    Matching: `match_queries_per_day` (UTC days) and `match_queries_total` bound the encrypted match queries
    an agreement may make; absent, the node applies its defaults (policies/matching.py), since enough
    queries would reconstruct every patent's embedding. `match_score_noise` obliges the node to add Gaussian
    noise of that standard deviation to every score it returns.

    Valuation: `valuation_queries_per_day` (UTC days) and `valuation_queries_total` bound the encrypted
    valuations the coordinator answers per consumer org with a model trained under the agreement (the
    tightest of the job's agreements holds); absent, the coordinator's defaults
    (policies/valuation_queries.py) apply, since each answer is one value of the model at a point the consumer
    chose.
    """

    purposes: NameList | None = None
    consumer_orgs: NameList | None = None
    reveal_fields: Annotated[tuple[FieldName, ...], AfterValidator(distinct)] = ()
    reveal_max_records_per_request: Limit | None = None
    reveal_max_records_total: Limit | None = None
    epsilon: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | None = None
    delta: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = None
    min_cohort: Annotated[int, Field(ge=2, le=1000)] | None = None
    model_export: bool = False
    match_queries_per_day: Annotated[int, Field(ge=1, le=MAX_JSON_INT)] | None = None
    match_queries_total: Annotated[int, Field(ge=1, le=MAX_JSON_INT)] | None = None
    match_score_noise: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    valuation_queries_per_day: Annotated[int, Field(ge=1, le=MAX_JSON_INT)] | None = None
    valuation_queries_total: Annotated[int, Field(ge=1, le=MAX_JSON_INT)] | None = None
    expires_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _budget_complete(self) -> Constraints:
        if (self.epsilon is None) != (self.delta is None):
            raise ValueError("a privacy budget needs both epsilon and delta (or neither)")
        return self


class Offer(FrozenModel):
    """What a provider offers on one dataset: a JSON file it edits, <node>/offers/<offer_id>.json."""

    offer_id: OfferId
    version: int = Field(default=1, ge=1, le=MAX_JSON_INT)
    provider_org: Name
    dataset: Name
    actions: ActionList
    constraints: Constraints = Constraints()
    approval: Literal["automatic", "manual"] = "automatic"
    description: FreeText = ""


def offer_digest(offer: Offer) -> str:
    """The digest of the canonical offer; terms record it, so both sides know which version was accepted."""
    return digest(offer.model_dump(mode="json"))


class _DuplicateKeyError(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise _DuplicateKeyError(f"the key {duplicates[0]!r} appears twice in one object")
    return dict(pairs)


def load_offer(path: Path | str) -> Offer:
    """Read and validate an offer file. Raises OfferError naming the file and the first bad field(s)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise OfferError("is not UTF-8 text", path=path) from exc
    except OSError as exc:
        raise OfferError(f"cannot be read ({exc.strerror or type(exc).__name__})", path=path) from exc
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise OfferError(f"is not valid JSON: {exc.msg} at {where}", path=path) from exc
    except _DuplicateKeyError as exc:
        raise OfferError(f"is ambiguous: {exc}", path=path) from exc
    try:
        return Offer.model_validate(document)
    except ValidationError as exc:
        raise OfferError(describe_validation_error(exc), path=path) from exc
