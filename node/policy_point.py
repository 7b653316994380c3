"""The node's policy decision point: gathers what the pure policy functions need, then asks them.

This is the only part of the decide step that reads state (the stored agreement, its revocation, its budget)
or checks signatures; the rules themselves live in ``policies`` and are pure.
"""

from __future__ import annotations

from datetime import datetime

from contracts.agreements import verify_proposal
from contracts.errors import ContractError
from contracts.offers import Action, Offer
from crypto import Principal, Role
from node.rpc_table import GateAction, MethodRule, RequestFacts
from node.state import MATCH_QUERIES, REVEAL_RECORDS, NodeState, match_queries_on
from policies.decision import AccessRequest, BudgetState, Decision, ProviderPolicy, decide
from policies.matching import utc_day
from policies.negotiation import (
    decide_proposal,
    decide_provider_admin,
    decide_request_read,
    decide_revocation,
    decide_tree_head,
)
from policies.rules import Refusal
from policies.training import TrainingRequest, decide_training

# Who may read a node's catalog and its audit log without an agreement (a provider may narrow this).
CATALOG_ROLES = frozenset({Role.BUILDER, Role.CONSUMER, Role.REGULATOR, Role.COORDINATOR, Role.PROVIDER})
# The coordinator reads audit logs to index them for the regulator's dashboard: entries hold digests and call
# metadata, never rows or query contents.
AUDIT_ROLES = frozenset({Role.REGULATOR, Role.COORDINATOR})


class PolicyPoint:
    def __init__(self, *, org: str, state: NodeState, offers: dict[str, Offer], ca_cert_pem: bytes) -> None:
        self._org = org
        self._state = state
        self._offers = offers
        self._ca_cert_pem = ca_cert_pem
        self._policy = ProviderPolicy(provider_org=org, catalog_roles=CATALOG_ROLES, audit_roles=AUDIT_ROLES)

    def decide(self, principal: Principal, rule: MethodRule, facts: RequestFacts, now: datetime) -> Decision:
        match rule.action:
            case GateAction.CATALOG_READ:
                return self._access(principal, Action.CATALOG_READ, facts, now)
            case GateAction.AUDIT_READ:
                return self._access(principal, Action.AUDIT_READ, facts, now)
            case GateAction.REVEAL:
                return self._access(principal, Action.REVEAL, facts, now)
            case GateAction.MATCH:
                return self._match(principal, facts, now)
            case GateAction.AUDIT_HEAD:
                return decide_tree_head(principal)
            case GateAction.PROVIDER_ADMIN:
                return decide_provider_admin(principal, self._org)
            case GateAction.NEGOTIATE:
                return self._negotiation(principal, facts, now)
            case GateAction.REVOKE:
                return self._revocation(principal, facts, now)
            case GateAction.TRAIN | GateAction.EVALUATE:
                return self._training(principal, facts, now, evaluate=rule.action == GateAction.EVALUATE)
        return Decision.deny(Refusal(f"no rule decides {rule.action!r}"))  # fail closed

    def _access(self, principal: Principal, action: Action, facts: RequestFacts, now: datetime) -> Decision:
        agreement_id = facts.agreement_id
        agreement = self._state.agreement(agreement_id) if agreement_id else None
        revoked = self._state.is_revoked(agreement_id) if agreement_id else False
        budget = BudgetState()
        if agreement_id:
            budget = BudgetState(
                reveal_records_used=self._state.budget_used(agreement_id, REVEAL_RECORDS),
                match_queries_today=self._state.budget_used(agreement_id, match_queries_on(utc_day(now))),
                match_queries_total=self._state.budget_used(agreement_id, MATCH_QUERIES),
            )
        request = AccessRequest(
            principal=principal,
            action=action,
            dataset=facts.dataset,
            agreement_id=agreement_id,
            purpose=facts.purpose,
            fields=facts.fields,
            record_count=len(facts.record_ids),
        )
        return decide(request, agreement, revoked, self._policy, budget, now=now)

    def _match(self, caller: Principal, facts: RequestFacts, now: datetime) -> Decision:
        """A match query is judged for the consumer who signed its grant; the caller is that consumer, or
        the coordinator forwarding the query (which cannot sign one)."""
        agreement_id = facts.agreement_id
        agreement = self._state.agreement(agreement_id) if agreement_id else None
        grant = facts.query_grant
        if agreement is None or grant is None:
            return Decision.deny(Refusal(f"no agreement {agreement_id!r} at this node"))
        try:
            consumer = grant.verify(agreement, facts.query_digest, self._ca_cert_pem, now=now)
        except ContractError as error:
            return Decision.deny(Refusal(f"the query grant does not hold: {error}"))
        is_signer = (caller.org, caller.name) == (consumer.org, consumer.name)
        if not is_signer and caller.role != Role.COORDINATOR:
            return Decision.deny(
                Refusal(
                    f"{caller.name!r} of {caller.org!r} may not send a query {consumer.name!r} signed; only "
                    "the signer or the coordinator forwarding it may"
                )
            )
        return self._access(consumer, Action.MATCH, facts, now)

    def _training(self, caller: Principal, facts: RequestFacts, now: datetime, *, evaluate: bool) -> Decision:
        agreement_id = facts.agreement_id
        agreement = self._state.agreement(agreement_id) if agreement_id else None
        grant = facts.job_grant
        if agreement is None or grant is None:
            return Decision.deny(Refusal(f"no agreement {agreement_id!r} at this node"))
        try:
            # The signer stands behind the call; the agreement is then judged for it, not for the caller.
            consumer = grant.verify(agreement, self._ca_cert_pem, now=now)
        except ContractError as error:
            return Decision.deny(Refusal(f"the job grant does not hold: {error}"))
        ledger = self._state.privacy_ledger(agreement_id)
        request = TrainingRequest(
            caller=caller,
            consumer=consumer,
            agreement_id=agreement_id,
            dataset=facts.dataset,
            purpose=facts.purpose,
            job_epsilon=grant.body.epsilon,
            cohort_size=facts.cohort_size,
            round=facts.round,
            evaluate=evaluate,
        )
        return decide_training(
            request,
            agreement,
            self._state.is_revoked(agreement_id),
            self._policy,
            BudgetState(epsilon_spent=ledger[1] if ledger else 0.0),
            now=now,
        )

    def _negotiation(self, principal: Principal, facts: RequestFacts, now: datetime) -> Decision:
        if facts.proposal is None:  # following up an earlier request
            record = self._state.agreement_request(facts.request_id) if facts.request_id else None
            return decide_request_read(principal, record.consumer_org if record else None, self._org)
        existing = self._state.agreement_request(facts.request_id)
        if existing is not None:  # the same proposal again: its sender may hear the answer again
            return decide_request_read(principal, existing.consumer_org, self._org)
        try:
            # Refuse a proposal whose consumer signature does not hold before judging what it says.
            verify_proposal(facts.proposal, self._ca_cert_pem, now=now)
        except ContractError as error:
            return Decision.deny(Refusal(f"the proposal's signature does not hold: {error}"))
        offer = self._offers.get(facts.proposal.terms.offer_id)
        return decide_proposal(principal, facts.proposal, offer, self._org, now=now)

    def _revocation(self, principal: Principal, facts: RequestFacts, now: datetime) -> Decision:
        revocation = facts.revocation
        agreement = self._state.agreement(revocation.agreement_id)
        if agreement is not None:
            try:
                revocation.verify(self._ca_cert_pem, agreement, now=now)
            except ContractError as error:
                return Decision.deny(Refusal(f"the revocation does not hold: {error}"))
        return decide_revocation(
            principal, revocation, agreement, self._state.is_revoked(revocation.agreement_id)
        )
