"""Grants: the capabilities a handler receives, scoped by the gate's decision.

Handlers never hold the dataset store, the node's state or its audit log. The gate's record step asks the
:class:`GrantFactory` for the grant that matches the decided action, and a grant exposes only what that
decision allows: a reveal grant reads the decided fields of the decided records of the decided dataset, and
nothing else. Writes a handler wants (a stored agreement, a budget charge) are queued on the grant as effects
and commit with the call's audit entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import grpc

from audit import AuditLog, SignedTreeHead
from contracts.agreements import Agreement, countersign
from contracts.offers import Offer
from crypto import Identity, Principal
from node.match_cache import PackedRecords, PackedRecordsCache
from node.rpc_table import GateAction, RequestFacts
from node.state import (
    MATCH_QUERIES,
    REVEAL_RECORDS,
    AgreementRequestRecord,
    Effect,
    NodeState,
    match_queries_on,
)
from node.store import DatasetDescription, DatasetInfo, DatasetStore
from node.store_errors import NotEmbedded, UnknownDataset, UnknownField
from node.training.data import NotTrainable, PreparedData, PreparedDataCache, prepare
from policies.decision import Decision, PrivacyObligation
from policies.matching import MatchObligation
from policies.spend_record import spend_charges

if TYPE_CHECKING:
    from crypto.ckks import CkksParameters
    from models.matching.projection import Projection
    from node.training.rounds import RoundPlan


MAX_ENTRIES_PER_CALL = 10_000


class HandlerError(Exception):
    """A handler's refusal, with the status and the reason the caller is told (and the log records)."""

    def __init__(self, status: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Grant:
    principal: Principal
    facts: RequestFacts
    decision: Decision
    effects: list[Effect] = field(default_factory=list)
    charges: dict[str, int] = field(default_factory=dict)  # what the call spent, as its audit entry states


@dataclass
class CatalogGrant(Grant):
    _store: DatasetStore | None = None
    _offers: Sequence[Offer] = ()
    node: str = ""

    def datasets(self) -> list[DatasetInfo]:
        return self._store.list()

    def describe(self) -> DatasetDescription:
        try:
            return self._store.describe(self.facts.dataset)
        except UnknownDataset:
            raise HandlerError(
                grpc.StatusCode.NOT_FOUND, f"this node holds no dataset {self.facts.dataset!r}"
            ) from None

    def offers(self) -> list[Offer]:
        return [offer for offer in self._offers if self.facts.dataset in (None, offer.dataset)]


@dataclass
class NegotiationGrant(Grant):
    """A consumer's own proposal and requests; the provider's signature is applied here, not in handlers."""

    _state: NodeState | None = None
    _identity: Identity | None = None
    manual_approval: bool = False

    def countersign_and_store(self, proposal: Agreement) -> Agreement:
        agreement = countersign(proposal, self._identity)
        self.effects += [
            NodeState.open_request(proposal.agreement_id, proposal),
            NodeState.close_request(proposal.agreement_id, approved=True, reason=self.decision.reason),
            NodeState.store_agreement(agreement),
        ]
        return agreement

    def hold_for_approval(self, proposal: Agreement) -> None:
        self.effects.append(NodeState.open_request(proposal.agreement_id, proposal))

    def request(self) -> AgreementRequestRecord | None:
        return self._state.agreement_request(self.facts.request_id)

    def agreement(self, agreement_id: str) -> Agreement | None:
        return self._state.agreement(agreement_id)


@dataclass
class AdminGrant(NegotiationGrant):
    """The provider deciding on requests to its own node."""

    def pending(self) -> list[AgreementRequestRecord]:
        return self._state.agreement_requests("pending")

    def approve(self, record: AgreementRequestRecord, reason: str) -> Agreement:
        agreement = countersign(Agreement.model_validate_json(record.proposal_json), self._identity)
        self.effects += [
            NodeState.close_request(record.request_id, approved=True, reason=reason),
            NodeState.store_agreement(agreement),
        ]
        return agreement

    def reject(self, record: AgreementRequestRecord, reason: str) -> None:
        self.effects.append(NodeState.close_request(record.request_id, approved=False, reason=reason))


@dataclass
class RevokeGrant(Grant):
    def revoke(self) -> None:
        self.effects.append(NodeState.store_revocation(self.facts.revocation))


@dataclass
class RevealGrant(Grant):
    _store: DatasetStore | None = None

    def fetch(self) -> tuple[list[dict[str, object]], list[str]]:
        """The decided fields of the decided records; charges every asked-for id against the agreement.

        Missing ids are charged too: otherwise a caller could probe which ids a node holds for free.
        """
        try:
            found = self._store.fetch(
                self.facts.dataset, self.facts.record_ids, self.decision.obligations.fields
            )
        except (UnknownDataset, UnknownField) as error:  # the offer names something the dataset lacks
            raise HandlerError(
                grpc.StatusCode.FAILED_PRECONDITION, f"the offer does not match the data: {error}"
            ) from None
        self.effects.append(
            NodeState.charge(
                self.facts.agreement_id,
                REVEAL_RECORDS,
                self.decision.obligations.charge_reveal_records,
                self.decision.obligations.reveal_records_limit,
            )
        )
        return [dict(row) for row in found.rows], list(found.missing_ids)


@dataclass
class TrainingGrant(Grant):
    """The decided dataset's prepared training data and the agreement's privacy ledger; no row leaves here."""

    _store: DatasetStore | None = None
    _state: NodeState | None = None
    _prepared: PreparedDataCache | None = None

    @property
    def privacy(self) -> PrivacyObligation:
        privacy = self.decision.obligations.privacy
        if privacy is None:  # decide_training always sets it; a missing one is a wiring bug
            raise HandlerError(grpc.StatusCode.INTERNAL, "the node failed to serve this call")
        return privacy

    def prepared_data(self) -> PreparedData:
        """The training and held-out examples of the dataset for the job's task (raises HandlerError)."""
        body = self.facts.job_grant.body
        dataset = self.facts.dataset
        try:
            info = self._store.info(dataset)
            if body.task == "matching":
                key: tuple[object, ...] = ("matching", info.name, info.source_sha256, info.row_count)
                return self._prepared.get(key, lambda: self._matching_pairs(info.id_field, info.fields))
            year = body.settings.reference_year
            key = ("valuation", info.name, info.source_sha256, info.row_count, year)
            return self._prepared.get(key, lambda: prepare(self._store.rows(dataset), reference_year=year))
        except UnknownDataset:
            raise HandlerError(grpc.StatusCode.NOT_FOUND, f"this node holds no dataset {dataset!r}") from None
        except (NotTrainable, NotEmbedded) as error:
            raise HandlerError(
                grpc.StatusCode.FAILED_PRECONDITION, f"dataset {dataset!r} cannot train this model: {error}"
            ) from None

    def _matching_pairs(self, id_field: str, fields: tuple[str, ...]) -> PreparedData:
        from node.training.matching_data import EMBEDDED_FIELDS, check_pair_fields, prepare_pairs

        check_pair_fields(fields)
        dataset = self.facts.dataset
        anchors, targets = (self._store.embeddings(dataset, fields) for fields in EMBEDDED_FIELDS)
        return prepare_pairs(self._store.rows(dataset), id_field, anchors, targets)

    def privacy_ledger(self) -> str | None:
        """The agreement's stored ledger (JSON), None before its first round."""
        stored = self._state.privacy_ledger(self.facts.agreement_id)
        return stored[0] if stored else None

    def charge_round(self, plan: RoundPlan) -> None:
        """Charge the round's spend with the call's audit entry (refused there if the ledger has moved)."""
        from node.training.ledger import charge_privacy

        privacy = self.privacy
        self.effects.append(
            charge_privacy(
                self.facts.agreement_id,
                plan.spend,
                planned_on=plan.planned_on,
                epsilon_budget=privacy.epsilon_budget,
                delta=privacy.delta,
            )
        )
        spend = plan.spend
        self.charges.update(spend_charges(spend.noise_multiplier, spend.sample_rate, spend.steps))


@dataclass
class MatchGrant(Grant):
    """The decided dataset's record vectors, packed for encrypted scoring; no vector leaves here."""

    _store: DatasetStore | None = None
    _packed: PackedRecordsCache | None = None

    @property
    def obligation(self) -> MatchObligation:
        match = self.decision.obligations.match
        if match is None:  # decide sets it on every allowed match; a missing one is a wiring bug
            raise HandlerError(grpc.StatusCode.INTERNAL, "the node failed to serve this call")
        return match

    def packed_records(self, projection: Projection, parameters: CkksParameters) -> PackedRecords:
        """The dataset's vectors under `projection`, encoded for `parameters` (built once, then cached).

        Raises HandlerError: NOT_FOUND for a dataset the node does not hold, FAILED_PRECONDITION for one
        imported without embeddings or embedded by another model than the one consumers embed needs with.
        """
        from crypto.ckks import EvaluationContext
        from models.matching.embeddings import MODEL_ID
        from models.matching.encrypted_scores import PackedPatents

        dataset = self.facts.dataset
        try:
            info = self._store.info(dataset)
            key = (info.name, info.source_sha256, info.row_count, projection.digest, parameters)

            def build() -> PackedRecords:
                embeddings = self._store.embeddings(dataset)
                if embeddings.model_id != MODEL_ID:  # scores across two models' spaces would mean nothing
                    raise HandlerError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"dataset {dataset!r} was embedded with {embeddings.model_id}; queries are embedded "
                        f"with {MODEL_ID}: import it again with --embed",
                    )
                vectors = projection.apply(embeddings.vectors)
                packed = PackedPatents.encode(EvaluationContext.keyless(parameters), vectors)
                return PackedRecords(embeddings.record_ids, packed)

            return self._packed.get(key, build)
        except UnknownDataset:
            raise HandlerError(grpc.StatusCode.NOT_FOUND, f"this node holds no dataset {dataset!r}") from None
        except NotEmbedded as error:
            raise HandlerError(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from None

    def charge_query(self) -> tuple[int, int]:
        """Charge this query to today's count and the total with the call's audit entry (each checked again
        against its limit there); returns the queries left (today, in total) after it."""
        match = self.obligation
        limits = match.limits
        agreement_id = self.facts.agreement_id
        self.effects += [
            NodeState.use_query_grant(agreement_id, self.facts.query_grant.body.grant_id),
            NodeState.charge(agreement_id, MATCH_QUERIES, 1, limits.total),
            NodeState.charge(agreement_id, match_queries_on(match.day), 1, limits.per_day),
        ]
        self.charges["match.queries"] = 1
        return match.left_after()


@dataclass
class AuditGrant(Grant):
    _log: AuditLog | None = None

    def tree_head(self, *, fresh: bool) -> SignedTreeHead:
        return self._log.sign_head() if fresh else self._log.tree_head()

    def entries(self, start: int, end: int) -> list[bytes]:
        size = self._log.size
        if end > size:
            raise HandlerError(
                grpc.StatusCode.OUT_OF_RANGE, f"the log holds {size} entries; asked up to {end}"
            )
        if end - start > MAX_ENTRIES_PER_CALL:
            raise HandlerError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {MAX_ENTRIES_PER_CALL} entries per call; page through the range",
            )
        return self._log.entries(start, end)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        self._check_size(tree_size)
        if not 0 <= index < tree_size:
            raise HandlerError(
                grpc.StatusCode.INVALID_ARGUMENT, f"index {index} is not inside a tree of size {tree_size}"
            )
        return self._log.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        self._check_size(second)
        if not 0 < first <= second:
            raise HandlerError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a consistency proof needs 0 < first <= second; got {first} and {second}",
            )
        return self._log.consistency_proof(first, second)

    def _check_size(self, tree_size: int) -> None:
        size = self._log.size
        if not 0 < tree_size <= size:
            raise HandlerError(grpc.StatusCode.OUT_OF_RANGE, f"tree size {tree_size} is not in 1..{size}")


G = TypeVar("G", bound=Grant)


class GrantFactory:
    """Builds the grant for a decided call; the only holder of the store, the state and the log."""

    def __init__(
        self,
        *,
        node: str,
        store: DatasetStore,
        state: NodeState,
        log: AuditLog,
        identity: Identity,
        offers: dict[str, Offer],
    ) -> None:
        self._node = node
        self._store = store
        self._state = state
        self._log = log
        self._identity = identity
        self._offers = offers
        self._prepared = PreparedDataCache()
        self._packed = PackedRecordsCache()

    def grant_for(self, principal: Principal, action: str, facts: RequestFacts, decision: Decision) -> Grant:
        base = {"principal": principal, "facts": facts, "decision": decision}
        match action:
            case GateAction.CATALOG_READ:
                return CatalogGrant(
                    **base, _store=self._store, _offers=tuple(self._offers.values()), node=self._node
                )
            case GateAction.NEGOTIATE:
                offer = self._offers.get(facts.proposal.terms.offer_id) if facts.proposal else None
                return NegotiationGrant(
                    **base,
                    _state=self._state,
                    _identity=self._identity,
                    manual_approval=offer is not None and offer.approval == "manual",
                )
            case GateAction.PROVIDER_ADMIN:
                return AdminGrant(**base, _state=self._state, _identity=self._identity)
            case GateAction.REVOKE:
                return RevokeGrant(**base)
            case GateAction.REVEAL:
                return RevealGrant(**base, _store=self._store)
            case GateAction.TRAIN | GateAction.EVALUATE:
                return TrainingGrant(**base, _store=self._store, _state=self._state, _prepared=self._prepared)
            case GateAction.MATCH:
                return MatchGrant(**base, _store=self._store, _packed=self._packed)
            case GateAction.AUDIT_HEAD | GateAction.AUDIT_READ:
                return AuditGrant(**base, _log=self._log)
        raise LookupError(f"no grant for action {action!r}")  # the rpc table and this match must agree


def require(grant: Grant, kind: type[G]) -> G:
    """The grant as the kind a handler needs; a mismatch is a wiring bug, refused rather than served."""
    if not isinstance(grant, kind):
        raise HandlerError(grpc.StatusCode.INTERNAL, "the node failed to serve this call")
    return grant
