"""Encrypted match queries, fanned out: one consumer query to every node it holds a match agreement with.

The coordinator forwards what it cannot read: the query is a ciphertext under the consumer's key, the answers
are ciphertexts only that key decrypts, and each node checks the consumer's one-use grant over the exact
query (contracts/query_grants.py), so the coordinator can neither make, change nor replay a query. It only
routes: the agreement's provider org names the node (its configured `org`, else the org its offers name),
and every node's answer or refusal goes back as the node gave it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field

from contracts.agreements import Agreement
from contracts.client import NodeRefused
from contracts.v1 import matching_pb2
from coordinator.agreements import AgreementRegistry
from coordinator.settings import NodeEndpoint
from crypto import Identity, Principal

MAX_PARALLEL_NODES = 8
MAX_AGREEMENTS = 64
# The bit size of one prime of the modulus chain: SEAL's primes have at most 60 bits. Bounded here because the
# wire's uint32 refuses a negative or huge value with a ValueError (a 500); the node checks the chain itself.
PrimeBits = Annotated[int, Field(ge=1, le=60)]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CkksParametersView(_View):
    poly_modulus_degree: int = Field(ge=1, le=65536)
    coeff_modulus_bits: list[PrimeBits] = Field(min_length=1, max_length=16)
    scale_bits: int = Field(ge=1, le=64)


class MatchQueryRequest(_View):
    """The consumer's query: its parts base64-encoded, and one signed query grant per agreement."""

    parameters: CkksParametersView
    evaluation_keys: Base64Bytes
    query: Base64Bytes
    projection: Base64Bytes
    grants: dict[str, str] = Field(min_length=1, max_length=MAX_AGREEMENTS)  # agreement id -> grant JSON


class NodeRefusal(_View):
    status: str
    reason: str


class NodeMatch(_View):
    """One node's answer (ciphertexts, base64) or refusal, for one agreement."""

    agreement_id: str
    provider_org: str
    node: str | None = None
    record_ids: list[str] = []
    score_blocks: list[str] = []  # base64 of each serialized ciphertext
    score_noise: float = 0.0
    queries_left_today: int = 0
    queries_left_total: int = 0
    error: NodeRefusal | None = None


class MatchQueryResult(_View):
    results: list[NodeMatch]


class UnroutableQuery(Exception):
    """The query names agreements the coordinator cannot route for this caller; `reasons` says why each."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class MatchFanOut:
    def __init__(
        self,
        nodes: Sequence[NodeEndpoint],
        identity: Identity,
        read_token: Callable[[], str],
        registry: AgreementRegistry,
        *,
        timeout_s: float = 60.0,
    ) -> None:
        self._nodes = tuple(nodes)
        self._identity = identity
        self._read_token = read_token
        self._registry = registry
        self._timeout_s = timeout_s
        self._orgs: dict[str, str] = {}  # node name -> the provider org its offers name

    def send(self, caller: Principal, request: MatchQueryRequest) -> MatchQueryResult:
        """Forward the query to each agreement's node, in parallel; answers in the request's order.

        Raises UnroutableQuery (before any node is asked) for an agreement that is not registered, not the
        caller's org's, or whose provider has no configured node.
        """
        routes, problems = [], []
        for agreement_id in request.grants:
            agreement = self._registry.get(agreement_id)
            if agreement is None:
                problems.append(f"agreement {agreement_id!r} is not registered with the coordinator")
            elif agreement.terms.consumer_org != caller.org:
                problems.append(f"agreement {agreement_id!r} is not one of org {caller.org!r}'s")
            elif (endpoint := self._endpoint_of(agreement.terms.provider_org)) is None:
                problems.append(f"no node of provider {agreement.terms.provider_org!r} is configured")
            else:
                routes.append((agreement, endpoint))
        if problems:
            raise UnroutableQuery(problems)
        token = self._read_token()
        parameters = matching_pb2.CkksParameters(**request.parameters.model_dump())
        with ThreadPoolExecutor(min(MAX_PARALLEL_NODES, len(routes)), "match") as pool:
            results = list(
                pool.map(lambda route: self._ask(route[0], route[1], token, parameters, request), routes)
            )
        return MatchQueryResult(results=results)

    def _ask(
        self,
        agreement: Agreement,
        endpoint: NodeEndpoint,
        token: str,
        parameters: matching_pb2.CkksParameters,
        request: MatchQueryRequest,
    ) -> NodeMatch:
        base = {
            "agreement_id": agreement.agreement_id,
            "provider_org": agreement.terms.provider_org,
            "node": endpoint.name,
        }
        client = endpoint.client(self._identity, token, timeout_s=self._timeout_s)
        with client:
            try:
                answer = client.match(
                    agreement,
                    parameters=parameters,
                    evaluation_keys=request.evaluation_keys,
                    query=request.query,
                    projection=request.projection,
                    query_grant_json=request.grants[agreement.agreement_id],
                )
            except NodeRefused as refused:
                return NodeMatch(**base, error=NodeRefusal(status=refused.status.name, reason=refused.reason))
        return NodeMatch(
            **base,
            record_ids=list(answer.record_ids),
            score_blocks=[base64.b64encode(block).decode() for block in answer.score_blocks],
            score_noise=answer.score_noise,
            queries_left_today=answer.queries_left_today,
            queries_left_total=answer.queries_left_total,
        )

    def _endpoint_of(self, provider_org: str) -> NodeEndpoint | None:
        for endpoint in self._nodes:
            if endpoint.org == provider_org:
                return endpoint
        for endpoint in self._nodes:  # no org configured: ask the node which org its offers name, once
            if endpoint.org is None and self._org_of(endpoint) == provider_org:
                return endpoint
        return None

    def _org_of(self, endpoint: NodeEndpoint) -> str | None:
        if endpoint.name not in self._orgs:
            client = endpoint.client(self._identity, self._read_token(), timeout_s=self._timeout_s)
            with client:
                try:
                    orgs = {offer.provider_org for offer in client.offers()}
                except NodeRefused:
                    return None  # unreachable now: asked again next time
            if len(orgs) != 1:
                return None
            self._orgs[endpoint.name] = orgs.pop()
        return self._orgs[endpoint.name]
