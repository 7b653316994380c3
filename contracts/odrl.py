"""ODRL 2.2 JSON-LD form of offers and agreements, for dataspace tools (EDC, Gaia-X) that speak ODRL.

The mapping uses ODRL's own terms where it has them (Offer, Agreement, uid, target, assigner, assignee,
permission, constraint; left operands purpose, dateTime, count; operators isAnyOf, eq, lt, lteq, gteq) and the
ipspace namespace for the rest (our actions, reveal fields, per-request limit, consumer orgs, the privacy
budget, minimum cohort and model export, match query limits and score noise, valuation query limits,
signatures).
One permission per action (an ODRL rule has one action), each carrying the same constraints. Reading back
accepts only documents shaped as this module writes them, so `offer_from_odrl(offer_to_odrl(o)) == o` exactly;
anything else raises OdrlError saying what is wrong.

Agreement-only facts that ODRL has no term for (offer digest, consumer name, creation and expiry time of the
agreement itself) are ipspace-namespaced properties of the policy; the agreement's purpose is a `purpose eq`
constraint. The offer's own expiry (`constraints.expires_at`) is the `dateTime lt` constraint in both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.agreements import Agreement
from contracts.errors import OdrlError
from contracts.fields import describe_validation_error, utc_text
from contracts.offers import Action, Constraints, Offer

ODRL_CONTEXT_URL = "http://www.w3.org/ns/odrl.jsonld"
IPSPACE_NAMESPACE = "https://ipspace.example/ns#"
XSD_NAMESPACE = "http://www.w3.org/2001/XMLSchema#"
_OFFER_UID = "urn:ipspace:offer:"
_AGREEMENT_UID = "urn:ipspace:agreement:"
_DATASET = "urn:ipspace:dataset:"
_ORG = "urn:ipspace:org:"
_ACTION = "ipspace:"
_DATETIME_TYPE = "xsd:dateTime"

# (leftOperand, operator) -> Constraints field, in the order they are written.
_CONSTRAINT_TERMS: dict[tuple[str, str], str] = {
    ("purpose", "isAnyOf"): "purposes",
    ("ipspace:consumerOrg", "isAnyOf"): "consumer_orgs",
    ("ipspace:revealField", "isAnyOf"): "reveal_fields",
    ("ipspace:revealRecordsPerRequest", "lteq"): "reveal_max_records_per_request",
    ("count", "lteq"): "reveal_max_records_total",  # each revealed record counts as one use
    ("ipspace:epsilon", "lteq"): "epsilon",
    ("ipspace:delta", "lteq"): "delta",
    ("ipspace:minCohort", "gteq"): "min_cohort",
    ("ipspace:modelExport", "eq"): "model_export",  # written only when true (absent: no export)
    ("ipspace:matchQueriesPerDay", "lteq"): "match_queries_per_day",
    ("ipspace:matchQueries", "lteq"): "match_queries_total",
    ("ipspace:matchScoreNoise", "gteq"): "match_score_noise",
    ("ipspace:valuationQueriesPerDay", "lteq"): "valuation_queries_per_day",
    ("ipspace:valuationQueries", "lteq"): "valuation_queries_total",
    ("dateTime", "lt"): "expires_at",
}
_NUMBER_FIELDS = {"epsilon", "delta", "match_score_noise"}
_INTEGER_FIELDS = {
    "reveal_max_records_per_request",
    "reveal_max_records_total",
    "min_cohort",
    "match_queries_per_day",
    "match_queries_total",
    "valuation_queries_per_day",
    "valuation_queries_total",
}
_PURPOSE_EQ = ("purpose", "eq")
_COMMON_KEYS = {"@context", "@type", "uid", "assigner", "target", "permission"}
_OFFER_KEYS = _COMMON_KEYS | {"ipspace:version", "ipspace:approval", "ipspace:description"}
_AGREEMENT_KEYS = _COMMON_KEYS | {
    "assignee",
    "ipspace:offer",
    "ipspace:offerDigest",
    "ipspace:consumerName",
    "ipspace:createdAt",
    "ipspace:expiresAt",
    "ipspace:signatures",
}
_OPTIONAL_KEYS = {"ipspace:expiresAt"}
_KNOWN_ACTIONS = {_ACTION + action.value for action in Action}
_M = TypeVar("_M", bound=BaseModel)


def odrl_context() -> list[Any]:
    """The @context of every document this module writes (a fresh copy)."""
    return [ODRL_CONTEXT_URL, {"ipspace": IPSPACE_NAMESPACE, "xsd": XSD_NAMESPACE}]


def offer_to_odrl(offer: Offer) -> dict[str, Any]:
    """The offer as an ODRL Offer (JSON-LD, plain JSON types only)."""
    return {
        "@context": odrl_context(),
        "@type": "Offer",
        "uid": _OFFER_UID + offer.offer_id,
        "assigner": _ORG + offer.provider_org,
        "target": _DATASET + offer.dataset,
        "permission": _permissions(offer.actions, _constraints_to_odrl(offer.constraints)),
        "ipspace:version": offer.version,
        "ipspace:approval": offer.approval,
        "ipspace:description": offer.description,
    }


def agreement_to_odrl(agreement: Agreement) -> dict[str, Any]:
    """The agreement, signatures included, as an ODRL Agreement whose uid carries the agreement id."""
    terms = agreement.terms
    constraints = [
        *_constraints_to_odrl(terms.constraints),
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": terms.purpose},
    ]
    document: dict[str, Any] = {
        "@context": odrl_context(),
        "@type": "Agreement",
        "uid": _AGREEMENT_UID + agreement.agreement_id,
        "assigner": _ORG + terms.provider_org,
        "assignee": _ORG + terms.consumer_org,
        "target": _DATASET + terms.dataset,
        "permission": _permissions(terms.actions, constraints),
        "ipspace:offer": _OFFER_UID + terms.offer_id,
        "ipspace:offerDigest": terms.offer_digest,
        "ipspace:consumerName": terms.consumer_name,
        "ipspace:createdAt": _datetime_literal(terms.created_at),
        "ipspace:signatures": [signature.model_dump(mode="json") for signature in agreement.signatures],
    }
    if terms.expires_at is not None:
        document["ipspace:expiresAt"] = _datetime_literal(terms.expires_at)
    return document


def offer_from_odrl(document: object) -> Offer:
    """The offer an ODRL Offer written by `offer_to_odrl` describes. Raises OdrlError for other documents."""
    policy = _policy(document, "Offer", _OFFER_KEYS)
    actions, constraints = _read_permissions(policy)
    fields, purpose = _constraints_from_odrl(constraints)
    if purpose is not None:
        raise OdrlError("an Offer must not fix one purpose (purpose eq); that belongs in an Agreement")
    return _validated(
        Offer,
        {
            "offer_id": _after_prefix(policy, "uid", _OFFER_UID),
            "version": _integer(policy["ipspace:version"], "ipspace:version"),
            "provider_org": _after_prefix(policy, "assigner", _ORG),
            "dataset": _after_prefix(policy, "target", _DATASET),
            "actions": actions,
            "constraints": fields,
            "approval": policy["ipspace:approval"],
            "description": policy["ipspace:description"],
        },
    )


def agreement_from_odrl(document: object) -> Agreement:
    """The agreement an ODRL Agreement written by `agreement_to_odrl` describes; its uid must match its terms.

    Signatures are carried over, not checked (call `Agreement.verify`). Raises OdrlError for other documents.
    """
    policy = _policy(document, "Agreement", _AGREEMENT_KEYS)
    actions, constraints = _read_permissions(policy)
    fields, purpose = _constraints_from_odrl(constraints)
    if purpose is None:
        raise OdrlError("an Agreement must fix its purpose with a 'purpose eq' constraint")
    expires_at = policy.get("ipspace:expiresAt")
    terms = {
        "offer_id": _after_prefix(policy, "ipspace:offer", _OFFER_UID),
        "offer_digest": policy["ipspace:offerDigest"],
        "provider_org": _after_prefix(policy, "assigner", _ORG),
        "consumer_org": _after_prefix(policy, "assignee", _ORG),
        "consumer_name": policy["ipspace:consumerName"],
        "dataset": _after_prefix(policy, "target", _DATASET),
        "actions": actions,
        "constraints": fields,
        "purpose": purpose,
        "created_at": _datetime_value(policy["ipspace:createdAt"], "ipspace:createdAt"),
        "expires_at": None if expires_at is None else _datetime_value(expires_at, "ipspace:expiresAt"),
    }
    signatures = policy["ipspace:signatures"]
    if not isinstance(signatures, list):
        raise OdrlError("'ipspace:signatures' must be a list")
    agreement = _validated(Agreement, {"terms": terms, "signatures": signatures})
    uid = _after_prefix(policy, "uid", _AGREEMENT_UID)
    if uid != agreement.agreement_id:
        raise OdrlError(f"the uid names agreement {uid}, but the terms have the id {agreement.agreement_id}")
    return agreement


def _permissions(actions: tuple[Action, ...], constraints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"action": _ACTION + action.value, "constraint": [dict(item) for item in constraints]}
        for action in actions
    ]


def _datetime_literal(value: datetime) -> dict[str, str]:
    return {"@value": utc_text(value), "@type": _DATETIME_TYPE}


def _constraints_to_odrl(constraints: Constraints) -> list[dict[str, Any]]:
    written = []
    for (left, operator), field in _CONSTRAINT_TERMS.items():
        value = getattr(constraints, field)
        if value is None or value is False:
            continue
        if isinstance(value, datetime):
            value = _datetime_literal(value)
        elif isinstance(value, tuple):
            value = list(value)
        written.append({"leftOperand": left, "operator": operator, "rightOperand": value})
    return written


def _policy(document: object, kind: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise OdrlError(f"an ODRL {kind} must be a JSON object, not {type(document).__name__}")
    if document.get("@context") != odrl_context():
        raise OdrlError(f"not an ipspace ODRL document: @context must be {odrl_context()}")
    if document.get("@type") != kind:
        raise OdrlError(f"expected an ODRL {kind}, found @type {document.get('@type')!r}")
    unknown = sorted(set(document) - keys)
    if unknown:
        raise OdrlError(f"the {kind} has properties ipspace does not write: {', '.join(unknown)}")
    missing = sorted(keys - _OPTIONAL_KEYS - set(document))
    if missing:
        raise OdrlError(f"the {kind} lacks {', '.join(missing)}")
    return document


def _read_permissions(policy: dict[str, Any]) -> tuple[list[str], list[Any]]:
    permissions = policy["permission"]
    if not isinstance(permissions, list) or not permissions:
        raise OdrlError("'permission' must be a non-empty list (one permission per action)")
    actions = []
    for index, permission in enumerate(permissions):
        if not isinstance(permission, dict) or set(permission) != {"action", "constraint"}:
            raise OdrlError(f"permission {index} must have exactly 'action' and 'constraint'")
        action = permission["action"]
        if not isinstance(action, str) or action not in _KNOWN_ACTIONS:
            known = ", ".join(sorted(_KNOWN_ACTIONS))
            raise OdrlError(f"permission {index} has the action {action!r}; known: {known}")
        if permission["constraint"] != permissions[0]["constraint"]:
            raise OdrlError(
                f"permission {index} has other constraints than permission 0; ipspace writes them equal"
            )
        actions.append(action.removeprefix(_ACTION))
    constraints = permissions[0]["constraint"]
    if not isinstance(constraints, list):
        raise OdrlError("'constraint' must be a list")
    return actions, constraints


def _constraints_from_odrl(constraints: list[Any]) -> tuple[dict[str, Any], str | None]:
    fields: dict[str, Any] = {}
    purpose: str | None = None
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(constraints):
        if not isinstance(item, dict) or set(item) != {"leftOperand", "operator", "rightOperand"}:
            raise OdrlError(f"constraint {index} must have exactly leftOperand, operator and rightOperand")
        term = (item["leftOperand"], item["operator"])
        if not all(isinstance(part, str) for part in term):
            raise OdrlError(f"constraint {index} needs a string leftOperand and operator")
        if term != _PURPOSE_EQ and term not in _CONSTRAINT_TERMS:
            raise OdrlError(f"constraint {index} ({term[0]!r} {term[1]!r}) is not one ipspace writes")
        if term in seen:
            raise OdrlError(f"constraint {index} repeats {term[0]!r} {term[1]!r}")
        seen.add(term)
        value = item["rightOperand"]
        if term == _PURPOSE_EQ:
            if not isinstance(value, str):
                raise OdrlError("the purpose of an agreement must be a string")
            purpose = value
            continue
        field = _CONSTRAINT_TERMS[term]
        if term[1] == "isAnyOf" and not isinstance(value, list):
            raise OdrlError(f"constraint {term[0]!r} isAnyOf needs a list")
        if field in _INTEGER_FIELDS:
            value = _integer(value, term[0])
        elif field in _NUMBER_FIELDS:
            value = _number(value, term[0])
        elif field == "model_export" and value is not True:
            raise OdrlError(f"{term[0]!r} eq is written only as true")
        if field == "expires_at":
            value = _datetime_value(value, term[0])
        fields[field] = value
    return fields, purpose


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OdrlError(f"{where!r} must be a number")
    return float(value)


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OdrlError(f"{where!r} must be an integer")
    return value


def _datetime_value(value: object, where: str) -> str:
    if (
        not isinstance(value, dict)
        or value.get("@type") != _DATETIME_TYPE
        or set(value) != {"@value", "@type"}
    ):
        raise OdrlError(f"{where!r} must be a typed literal {{'@value': ..., '@type': '{_DATETIME_TYPE}'}}")
    if not isinstance(value["@value"], str):
        raise OdrlError(f"{where!r} must hold its time as a string")
    return value["@value"]


def _after_prefix(policy: dict[str, Any], key: str, prefix: str) -> str:
    value = policy[key]
    if not isinstance(value, str) or not value.startswith(prefix):
        raise OdrlError(f"{key!r} must be a string starting with {prefix!r}")
    return value.removeprefix(prefix)


def _validated(model: type[_M], fields: dict[str, Any]) -> _M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise OdrlError(
            f"the document does not describe a valid {model.__name__.lower()}: "
            f"{describe_validation_error(exc)}"
        ) from exc
