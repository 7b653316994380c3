"""Usage-agreement schema: offers, agreements signed by both parties, revocations, and their signed form.

Every signature is Ed25519 by the signer's signing certificate (issued by the data-space CA) over a
domain-separation tag followed by the RFC 8785 canonical JSON of the signed body, so an agreement signature
can never pass for a revocation or a tree head. An agreement's id is the digest of its terms. Times are UTC
and serialise in one fixed format, so a model read back from its JSON has the same digest.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from contracts.errors import AgreementError, ContractError, OfferError, RevocationError
from crypto import Identity, Principal, Role, canonical_json, digest, verify_signature
from crypto.errors import InvalidCertificate, InvalidSignature

AGREEMENT_SIGNATURE_TAG = b"ipspace/agreement/v1\n"
REVOCATION_SIGNATURE_TAG = b"ipspace/revocation/v1\n"
MAX_JSON_INT = 2**53 - 1  # canonical JSON numbers are IEEE doubles: larger integers would not survive it
CONSUMER_ROLES = frozenset({Role.CONSUMER, Role.BUILDER})
PROVIDER_ROLES = frozenset({Role.PROVIDER})
_T = TypeVar("_T")


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a time must carry its time zone, e.g. 2026-01-31T00:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


def utc_text(value: datetime) -> str:
    """The one serialised form of a time: UTC, microseconds, 'Z' (e.g. 2026-01-31T00:00:00.000000Z)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _clean_text(value: str) -> str:
    if value != value.strip():
        raise ValueError("must not start or end with spaces")
    return _unicode_text(value)


def _unicode_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: canonical JSON could not encode them
        raise ValueError("contains characters that are not valid Unicode") from None
    return value


def _ascii_text(value: str) -> str:
    if not value.isascii():
        raise ValueError("must be ASCII (a PEM certificate)")
    return value


def _distinct(values: tuple[_T, ...]) -> tuple[_T, ...]:
    duplicates = sorted({str(value) for value in values if values.count(value) > 1})
    if duplicates:
        raise ValueError(f"lists {', '.join(duplicates)} more than once")
    return values


def _not_empty(values: tuple[_T, ...]) -> tuple[_T, ...]:
    if not values:
        raise ValueError("must list at least one entry (leave the field out for no limit)")
    return values


UtcDatetime = Annotated[
    datetime, AfterValidator(_as_utc), PlainSerializer(utc_text, return_type=str, when_used="json")
]
Name = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_clean_text)]
FreeText = Annotated[str, Field(max_length=4000), AfterValidator(_unicode_text)]
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")]
OfferId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Limit = Annotated[int, Field(ge=0, le=MAX_JSON_INT)]
NameList = Annotated[tuple[Name, ...], AfterValidator(_distinct), AfterValidator(_not_empty)]


class Action(StrEnum):
    CATALOG_READ = "catalog.read"
    TRAIN = "train"
    MATCH = "match"
    VALUATE = "valuate"
    REVEAL = "reveal"
    AUDIT_READ = "audit.read"


ActionList = Annotated[tuple[Action, ...], AfterValidator(_distinct), AfterValidator(_not_empty)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Constraints(_Frozen):
    """Limits an offer sets. An absent field means no such limit, except `reveal_fields`: absent, none may be
    revealed. `purposes` and `consumer_orgs` are None for "any"; an empty list is refused as ambiguous."""

    purposes: NameList | None = None
    consumer_orgs: NameList | None = None
    reveal_fields: Annotated[tuple[FieldName, ...], AfterValidator(_distinct)] = ()
    reveal_max_records_per_request: Limit | None = None
    reveal_max_records_total: Limit | None = None
    expires_at: UtcDatetime | None = None


class Offer(_Frozen):
    """What a provider offers on one dataset: a JSON file it edits, <node>/offers/<offer_id>.json."""

    offer_id: OfferId
    version: int = Field(default=1, ge=1, le=MAX_JSON_INT)
    provider_org: Name
    dataset: Name
    actions: ActionList
    constraints: Constraints = Constraints()
    approval: Literal["automatic", "manual"] = "automatic"
    description: FreeText = ""


class AgreementTerms(_Frozen):
    """An offer accepted by one consumer for one purpose: the part both parties sign."""

    offer_id: OfferId
    offer_digest: Digest
    provider_org: Name
    consumer_org: Name
    consumer_name: Name
    dataset: Name
    actions: ActionList
    constraints: Constraints
    purpose: Name
    created_at: UtcDatetime
    expires_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        purposes, orgs = self.constraints.purposes, self.constraints.consumer_orgs
        if purposes is not None and self.purpose not in purposes:
            raise ValueError(f"purpose {self.purpose!r} is not one the offer allows ({', '.join(purposes)})")
        if orgs is not None and self.consumer_org not in orgs:
            raise ValueError(f"org {self.consumer_org!r} is not one the offer is open to ({', '.join(orgs)})")
        if self.expires_at is not None and self.expires_at <= self.created_at:
            raise ValueError("the agreement would expire before it is created")
        return self


class Signature(_Frozen):
    """One party's Ed25519 signature; `role` is its side of the agreement, not its certificate's role."""

    signer_org: Name
    role: Literal["consumer", "provider"]
    certificate_pem: Annotated[str, Field(min_length=1, max_length=16384), AfterValidator(_ascii_text)]
    value: Annotated[str, Field(min_length=1, max_length=1024)]  # standard base64


class Agreement(_Frozen):
    terms: AgreementTerms
    signatures: tuple[Signature, ...] = Field(default=(), max_length=2)

    @property
    def agreement_id(self) -> str:
        """The digest of the canonical terms ("sha256:<hex>"): the same for every copy of this agreement."""
        return digest(self.terms.model_dump(mode="json"))

    def verify(self, ca_cert_pem: bytes, *, now: datetime | None = None) -> None:
        """Check that exactly one consumer and one provider signed these terms with certificates of this CA.

        The consumer's signer must be of `terms.consumer_org` as consumer or builder, the provider's of
        `terms.provider_org` as provider. The terms' expiry is not checked here (the policy checks it per
        call). Raises AgreementError naming the first problem.
        """
        parties = sorted(signature.role for signature in self.signatures)
        if parties != ["consumer", "provider"]:
            raise AgreementError(f"an agreement needs a consumer and a provider signature; it has {parties}")
        message = agreement_message(self.terms)
        for signature in self.signatures:
            _verify_party(signature, message, self.terms, ca_cert_pem, now=now, error=AgreementError)


class RevocationBody(_Frozen):
    """The signed part of a revocation."""

    agreement_id: Digest
    revoked_by_org: Name
    reason: Annotated[FreeText, Field(min_length=1)]
    revoked_at: UtcDatetime


class Revocation(RevocationBody):
    signature: Signature

    def verify(self, ca_cert_pem: bytes, agreement: Agreement, *, now: datetime | None = None) -> None:
        """Check that a party of `agreement` signed this revocation of it, with a certificate of this CA.

        Raises RevocationError naming the first problem.
        """
        if self.agreement_id != agreement.agreement_id:
            named, actual = self.agreement_id, agreement.agreement_id
            raise RevocationError(f"the revocation is of agreement {named}, not {actual}")
        party = self.signature.role
        org, _ = _party(agreement.terms, party)
        if self.revoked_by_org != org:
            by = self.revoked_by_org
            raise RevocationError(f"the revocation is by org {by!r}; the agreement's {party} is {org!r}")
        _verify_party(
            self.signature,
            revocation_message(self),
            agreement.terms,
            ca_cert_pem,
            now=now,
            error=RevocationError,
        )


def agreement_message(terms: AgreementTerms) -> bytes:
    """The exact bytes both parties sign: tag + canonical JSON of the terms."""
    return AGREEMENT_SIGNATURE_TAG + canonical_json(terms.model_dump(mode="json"))


def revocation_message(body: RevocationBody) -> bytes:
    """The exact bytes a revoking party signs: tag + canonical JSON of the revocation minus its signature."""
    return REVOCATION_SIGNATURE_TAG + canonical_json(body.model_dump(mode="json", exclude={"signature"}))


def _party(terms: AgreementTerms, party: str) -> tuple[str, frozenset[Role]]:
    """The org that signs as `party` of `terms`, and the certificate roles it may sign with."""
    if party == "provider":
        return terms.provider_org, PROVIDER_ROLES
    return terms.consumer_org, CONSUMER_ROLES


def _require_party(
    principal: Principal, terms: AgreementTerms, party: str, error: type[ContractError]
) -> None:
    org, roles = _party(terms, party)
    if principal.org != org:
        raise error(f"the {party} must be of org {org!r}; {principal.name!r} is of org {principal.org!r}")
    if principal.role not in roles:
        allowed = " or ".join(sorted(roles))
        raise error(f"the {party} must sign as {allowed}; {principal.name!r} holds the role {principal.role}")


def _verify_party(
    signature: Signature,
    message: bytes,
    terms: AgreementTerms,
    ca_cert_pem: bytes,
    *,
    now: datetime | None,
    error: type[ContractError],
) -> None:
    """Check `signature` over `message` by a CA-issued certificate of the org and role its party requires."""
    party = signature.role
    org, _ = _party(terms, party)
    if signature.signer_org != org:
        raise error(f"the {party} signature claims org {signature.signer_org!r}; the {party} is {org!r}")
    try:
        raw = base64.b64decode(signature.value, validate=True)
    except binascii.Error as exc:
        raise error(f"the {party} signature value is not base64") from exc
    certificate = signature.certificate_pem.encode("ascii")
    try:
        principal = verify_signature(certificate, ca_cert_pem, message, raw, now=now)
    except InvalidCertificate as exc:
        raise error(
            f"the {party}'s signing certificate is not one this data space's CA issued, "
            "or is not valid at this time"
        ) from exc
    except InvalidSignature as exc:
        raise error(f"the {party} signature does not match the signed content") from exc
    _require_party(principal, terms, party, error)


def _sign(identity: Identity, party: Literal["consumer", "provider"], message: bytes) -> Signature:
    value = base64.b64encode(identity.sign(message)).decode("ascii")
    certificate = identity.signing_cert_pem.decode("ascii")
    return Signature(signer_org=identity.org, role=party, certificate_pem=certificate, value=value)


def propose(terms: AgreementTerms, consumer: Identity) -> Agreement:
    """The consumer's half: `terms` signed by `consumer`, waiting for the provider's countersignature.

    Raises AgreementError if `consumer` is not of `terms.consumer_org` as consumer or builder.
    """
    _require_party(consumer.principal(), terms, "consumer", AgreementError)
    return Agreement(terms=terms, signatures=(_sign(consumer, "consumer", agreement_message(terms)),))


def verify_proposal(agreement: Agreement, ca_cert_pem: bytes, *, now: datetime | None = None) -> None:
    """Check that `agreement` is a proposal: exactly one signature, the consumer's, by a certificate of this
    CA belonging to `terms.consumer_org` as consumer or builder. Raises AgreementError naming the problem."""
    if [signature.role for signature in agreement.signatures] != ["consumer"]:
        raise AgreementError("a proposal must carry exactly one signature, the consumer's")
    _verify_party(
        agreement.signatures[0],
        agreement_message(agreement.terms),
        agreement.terms,
        ca_cert_pem,
        now=now,
        error=AgreementError,
    )


def countersign(agreement: Agreement, provider: Identity, *, now: datetime | None = None) -> Agreement:
    """The provider's half: check the consumer's signature (against the provider's CA), then add its own.

    Refuses a proposal with anything but one consumer signature, terms expired at `now`, or a `provider`
    that is not the terms' provider. Raises AgreementError.
    """
    terms = agreement.terms
    verify_proposal(agreement, provider.ca_cert_pem, now=now)
    _require_party(provider.principal(), terms, "provider", AgreementError)
    moment = now or datetime.now(UTC)
    for label, expiry in (("agreement", terms.expires_at), ("offer", terms.constraints.expires_at)):
        if expiry is not None and moment >= expiry:
            raise AgreementError(f"the {label} expired at {utc_text(expiry)}; it can no longer be signed")
    provider_signature = _sign(provider, "provider", agreement_message(terms))
    return Agreement(terms=terms, signatures=(agreement.signatures[0], provider_signature))


def revoke(agreement_id: str, identity: Identity, reason: str, *, now: datetime | None = None) -> Revocation:
    """A revocation of `agreement_id` signed by `identity`, as the party its role implies.

    That the identity's org is that party of the agreement is checked by `Revocation.verify`. Raises
    RevocationError for a role that is party to no agreement, or a malformed id or reason.
    """
    if identity.role in PROVIDER_ROLES:
        party: Literal["consumer", "provider"] = "provider"
    elif identity.role in CONSUMER_ROLES:
        party = "consumer"
    else:
        raise RevocationError(f"a {identity.role} is not a party to agreements and cannot revoke one")
    try:
        body = RevocationBody(
            agreement_id=agreement_id,
            revoked_by_org=identity.org,
            reason=reason,
            revoked_at=now or datetime.now(UTC),
        )
    except ValidationError as exc:
        raise RevocationError(describe_validation_error(exc)) from exc
    return Revocation(**dict(body), signature=_sign(identity, party, revocation_message(body)))


def offer_digest(offer: Offer) -> str:
    """The digest of the canonical offer; terms record it, so both sides know which version was accepted."""
    return digest(offer.model_dump(mode="json"))


def terms_from_offer(
    offer: Offer,
    *,
    consumer_org: str,
    consumer_name: str,
    purpose: str,
    actions: tuple[Action, ...] | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> AgreementTerms:
    """Terms accepting `offer` for one consumer and purpose, expiring at the earlier of the offer's expiry and
    `expires_at`. Raises AgreementError when the offer does not allow them (see `check_terms_match_offer`)."""
    moment = now or datetime.now(UTC)
    if offer.constraints.expires_at is not None and moment >= offer.constraints.expires_at:
        raise AgreementError(f"the offer expired at {utc_text(offer.constraints.expires_at)}")
    expiries = [when for when in (offer.constraints.expires_at, expires_at) if when is not None]
    try:
        terms = AgreementTerms(
            offer_id=offer.offer_id,
            offer_digest=offer_digest(offer),
            provider_org=offer.provider_org,
            consumer_org=consumer_org,
            consumer_name=consumer_name,
            dataset=offer.dataset,
            actions=offer.actions if actions is None else actions,
            constraints=offer.constraints,
            purpose=purpose,
            created_at=moment,
            expires_at=min(expiries) if expiries else None,
        )
    except ValidationError as exc:
        raise AgreementError(describe_validation_error(exc)) from exc
    check_terms_match_offer(terms, offer, now=moment)
    return terms


def check_terms_match_offer(terms: AgreementTerms, offer: Offer, *, now: datetime | None = None) -> None:
    """Check that `terms` accept this very `offer` (same digest, a subset of its actions), unexpired at `now`.

    Purpose and consumer org were checked against the constraints when the terms were built.
    Raises AgreementError.
    """
    if terms.offer_id != offer.offer_id or terms.offer_digest != offer_digest(offer):
        raise AgreementError(f"the terms accept another offer, or another version of {offer.offer_id!r}")
    same = (terms.provider_org, terms.dataset, terms.constraints)
    if same != (offer.provider_org, offer.dataset, offer.constraints):
        raise AgreementError(f"the terms' provider, dataset or constraints differ from {offer.offer_id!r}")
    not_offered = [action.value for action in terms.actions if action not in offer.actions]
    if not_offered:
        raise AgreementError(f"offer {offer.offer_id!r} does not offer {', '.join(not_offered)}")
    moment = now or datetime.now(UTC)
    for label, expiry in (("offer", offer.constraints.expires_at), ("agreement", terms.expires_at)):
        if expiry is not None and moment >= expiry:
            raise AgreementError(f"the {label} expired at {utc_text(expiry)}")


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's errors as one line a person can act on: each bad field by its dotted path, and why."""
    problems = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"field {where!r}: {message}" if where else message)
    return "; ".join(problems)


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


def parse_agreement(data: bytes | str) -> Agreement:
    """An agreement (or a proposal) from its JSON; signatures are NOT checked. Raises AgreementError."""
    try:
        return Agreement.model_validate_json(data)
    except ValidationError as exc:
        raise AgreementError(f"malformed agreement: {describe_validation_error(exc)}") from exc


def parse_revocation(data: bytes | str) -> Revocation:
    """A revocation from its JSON; its signature is NOT checked here. Raises RevocationError."""
    try:
        return Revocation.model_validate_json(data)
    except ValidationError as exc:
        raise RevocationError(f"malformed revocation: {describe_validation_error(exc)}") from exc
