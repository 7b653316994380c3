"""Model provenance: a record, signed by the coordinator, of what a succeeded job's model came from.

The record names the model file's SHA-256 (the exact bytes ``GET /jobs/{id}/model`` serves), the job spec,
the agreements it trained under, who submitted it, and every training node's signed tree head pulled fresh
at the end of training. A node's head commits to its whole audit log at that moment, the job's Train calls
included, so anyone allowed to read that log can later check that the node's log still extends the head and
holds those calls (`ipspace.provenance_check`). A node that did not answer is listed with why, never dropped.

The signed bytes are the RFC 8785 canonical JSON of the record; its ``type`` member keeps this signature apart
from everything else the coordinator's Ed25519 key signs. The document is
``{"record": {...}, "signature": base64, "certificate_pem": the coordinator's signing certificate}``, so
`verify_provenance` needs only the CA certificate and the model's bytes.

Issuing and keeping records is `coordinator.provenance_issuer`'s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audit import InvalidTreeHead, SignedTreeHead, timestamp_text, verify_tree_head
from audit.heads import parse_timestamp
from contracts.fields import describe_validation_error
from contracts.job_grants import TrainingSettings
from coordinator.job_spec import JobRecord, JobState
from crypto import Identity, Principal, Role, canonical_json, verify_signature
from crypto.errors import InvalidCertificate, InvalidSignature

log = logging.getLogger(__name__)

PROVENANCE_TYPE = "ipspace.model.provenance.v1"


class InvalidProvenance(Exception):
    """A provenance document that does not hold: malformed, badly signed, or not about these model bytes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProvenanceUnavailable(Exception):
    """No record can be issued for the job (yet); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the document's shape (also the route's response model) -----------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HeadFields(_Strict):
    """A node's signed tree head, as ``audit.SignedTreeHead.to_dict()`` writes it."""

    node: str
    tree_size: int = Field(ge=0)
    root_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    timestamp: str
    signature: str = Field(description="base64 Ed25519 signature by the node")
    certificate_pem: str = Field(description="the node's signing certificate")


class Submitter(_Strict):
    name: str
    org: str


class UnheardNode(_Strict):
    """A node of the job that gave no head: ``node`` is None when no configured node serves ``org``, and
    ``org`` is None when the node's org is not configured (it may or may not be one of the job's)."""

    node: str | None
    org: str | None
    reason: str


class ProvenanceBody(_Strict):
    """The signed record."""

    type: str = Field(description=f"always {PROVENANCE_TYPE!r}")
    job_id: str
    task: str
    dataset: str
    purpose: str
    rounds: int
    epsilon: float | None
    model: TrainingSettings = Field(description="the local-step settings every node trained with")
    secagg: bool
    submitted_by: Submitter
    agreements: list[str] = Field(description="the ids of the agreements the job trained under")
    model_sha256: str = Field(description="SHA-256 (hex) of the model file GET /jobs/{id}/model serves")
    succeeded_at: str
    node_heads: dict[str, HeadFields] = Field(
        description="node name -> its signed tree head, pulled fresh after training ended"
    )
    nodes_unheard: list[UnheardNode] = Field(description="nodes of the job that gave no head, and why")
    head_alerts: dict[str, str] = Field(
        description="node name -> why its head contradicts a head the coordinator kept before"
    )
    issued_at: str


class ProvenanceDocument(_Strict):
    """A provenance record with the coordinator's signature and signing certificate."""

    record: ProvenanceBody
    signature: str = Field(description="base64 Ed25519 signature over the record's RFC 8785 JSON")
    certificate_pem: str = Field(description="the coordinator's signing certificate")


# --- signing and verifying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedProvenance:
    """What `verify_provenance` established."""

    job_id: str
    coordinator: Principal
    agreements: tuple[str, ...]
    model_sha256: str
    node_heads: Mapping[str, SignedTreeHead]
    nodes_unheard: tuple[UnheardNode, ...]
    head_alerts: Mapping[str, str]


def sign_provenance(
    identity: Identity,
    job: JobRecord,
    model_bytes: bytes,
    *,
    node_heads: Mapping[str, SignedTreeHead],
    nodes_unheard: Sequence[UnheardNode] = (),
    head_alerts: Mapping[str, str] | None = None,
    issued_at: datetime | None = None,
) -> dict[str, Any]:
    """The signed provenance document of ``job``'s model (``model_bytes``: the model file, as served).

    Raises ProvenanceUnavailable when the job has not succeeded or ``identity`` is not a coordinator's.
    """
    if job.state != JobState.SUCCEEDED:
        raise ProvenanceUnavailable(f"job {job.job_id!r} is {job.state.value}; only a succeeded job has one")
    if identity.role != Role.COORDINATOR:
        raise ProvenanceUnavailable(f"provenance is signed by the coordinator, not a {identity.role.value}")
    spec = job.spec
    record = {
        "type": PROVENANCE_TYPE,
        "job_id": job.job_id,
        "task": spec.task,
        "dataset": spec.dataset,
        "purpose": spec.purpose,
        "rounds": spec.rounds,
        "epsilon": spec.epsilon,
        "model": spec.model.model_dump(mode="json"),
        "secagg": spec.secagg,
        "submitted_by": {"name": job.submitted_by, "org": job.org},
        "agreements": list(spec.agreements),
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "succeeded_at": timestamp_text(job.updated_at),
        "node_heads": {name: head.to_dict() for name, head in sorted(node_heads.items())},
        "nodes_unheard": [item.model_dump(mode="json") for item in nodes_unheard],
        "head_alerts": dict(sorted((head_alerts or {}).items())),
        "issued_at": timestamp_text(issued_at or datetime.now(UTC)),
    }
    signature = identity.sign(canonical_json(record))
    return {
        "record": record,
        "signature": base64.b64encode(signature).decode("ascii"),
        "certificate_pem": identity.signing_cert_pem.decode("ascii"),
    }


def verify_provenance(document: Any, ca_cert_pem: bytes, model_bytes: bytes) -> VerifiedProvenance:
    """Check a provenance document against the CA and the model's bytes; return what it establishes.

    Guarantees on return: the record is signed by a coordinator's signing certificate issued by the CA
    (valid when the record was issued), the signature covers exactly the record, ``model_bytes`` hash to the
    record's digest, and every node head is signed by a provider's certificate of the CA naming that node.
    Raises InvalidProvenance naming the first problem.
    """
    try:
        parsed = ProvenanceDocument.model_validate(document)
    except ValidationError as error:
        raise InvalidProvenance(f"not a provenance document: {describe_validation_error(error)}") from None
    record = parsed.record
    if record.type != PROVENANCE_TYPE:
        raise InvalidProvenance(f"the record is of type {record.type!r}, not {PROVENANCE_TYPE!r}")
    try:
        issued_at = parse_timestamp(record.issued_at)
        signature = base64.b64decode(parsed.signature, validate=True)
        # The raw record, not the parsed one: the signature covers what was sent, whatever parsing adds.
        payload = canonical_json(document["record"])
    except (InvalidTreeHead, binascii.Error, ValueError):
        raise InvalidProvenance("the record's issue time, signature or content is malformed") from None
    try:
        signer = verify_signature(
            parsed.certificate_pem.encode("ascii"), ca_cert_pem, payload, signature, now=issued_at
        )
    except (InvalidCertificate, InvalidSignature) as error:
        raise InvalidProvenance(f"the coordinator's signature does not hold: {error}") from None
    if signer.role != Role.COORDINATOR:
        raise InvalidProvenance(
            f"the record is signed by {signer.org}/{signer.name}, a {signer.role.value}, not a coordinator"
        )
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != record.model_sha256:
        raise InvalidProvenance(
            f"the model's SHA-256 is {digest}, but the record is about a model with {record.model_sha256}"
        )
    heads = {name: _verified_head(name, fields, ca_cert_pem) for name, fields in record.node_heads.items()}
    return VerifiedProvenance(
        job_id=record.job_id,
        coordinator=signer,
        agreements=tuple(record.agreements),
        model_sha256=record.model_sha256,
        node_heads=heads,
        nodes_unheard=tuple(record.nodes_unheard),
        head_alerts=dict(record.head_alerts),
    )


def _verified_head(name: str, fields: HeadFields, ca_cert_pem: bytes) -> SignedTreeHead:
    head = SignedTreeHead(**fields.model_dump())
    try:
        signer = verify_tree_head(head, ca_cert_pem)
    except InvalidTreeHead as invalid:
        raise InvalidProvenance(f"the head of node {name!r} does not verify: {invalid.reason}") from None
    if head.node != name:
        raise InvalidProvenance(f"the head listed for node {name!r} is node {head.node!r}'s")
    if signer.role != Role.PROVIDER:
        raise InvalidProvenance(f"the head of node {name!r} is signed by a {signer.role.value}, not a node")
    return head
