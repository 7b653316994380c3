"""The consumer's side of an encrypted match: keys, the encrypted query, a node's answer decrypted.

The need text is embedded and projected here, on the consumer's machine, and encrypted under keys that never
leave it; a node receives the ciphertext, the rotation keys the kernel needs and the projection, and answers
with ciphertexts only these keys decrypt (models/matching/encrypted_scores.py).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.query_grants import match_query_digest, sign_query_grant
from contracts.v1 import matching_pb2
from crypto import Identity
from crypto.ckks import CkksParameters, ConsumerKeys
from ipspace.coordinator_client import CoordinatorClient
from models.matching.encrypted_scores import decrypt_scores, encrypt_query, rotation_steps
from models.matching.projection import Projection


@dataclass(frozen=True)
class NodeScores:
    """One node's decrypted answer: a score per record, in the node's order."""

    record_ids: tuple[str, ...]
    scores: np.ndarray
    score_noise: float
    queries_left_today: int
    queries_left_total: int


@dataclass(frozen=True)
class MatchQuery:
    """What a node computes with: the parameters, the rotation keys, the ciphertext and the projection."""

    parameters: CkksParameters
    evaluation_keys: bytes
    ciphertext: bytes
    projection: bytes

    @property
    def digest(self) -> str:
        """What the consumer's query grant signs (contracts/query_grants.py)."""
        parameters = self.parameters
        return match_query_digest(
            (parameters.poly_modulus_degree, *parameters.coeff_modulus_bits, parameters.scale_bits),
            self.evaluation_keys,
            self.ciphertext,
            self.projection,
        )


def consumer_keys(projection: Projection, parameters: CkksParameters | None = None) -> ConsumerKeys:
    """Fresh keys with exactly the rotation keys a query of the projection's dimension needs."""
    return ConsumerKeys.generate(parameters or CkksParameters(), rotation_steps(projection.dimension))


def parameters_message(parameters: CkksParameters) -> matching_pb2.CkksParameters:
    return matching_pb2.CkksParameters(
        poly_modulus_degree=parameters.poly_modulus_degree,
        coeff_modulus_bits=list(parameters.coeff_modulus_bits),
        scale_bits=parameters.scale_bits,
    )


def encrypt_need(keys: ConsumerKeys, projection: Projection, need: np.ndarray) -> MatchQuery:
    """The need (a MiniLM embedding, 384 values) projected and encrypted under the consumer's keys."""
    projected = projection.apply(np.asarray(need, dtype=np.float32)[None, :])[0]
    return MatchQuery(
        keys.parameters, keys.evaluation_keys(), encrypt_query(keys, projected), projection.to_bytes()
    )


def send_query(
    client: NodeClient, agreement: Agreement, query: MatchQuery, consumer: Identity
) -> matching_pb2.MatchResponse:
    """Sign a one-use grant for `query` under `agreement` and send both. Raises NodeRefused."""
    grant = sign_query_grant(consumer, agreement, query.digest)
    return client.match(
        agreement,
        parameters=parameters_message(query.parameters),
        evaluation_keys=query.evaluation_keys,
        query=query.ciphertext,
        projection=query.projection,
        query_grant_json=grant.model_dump_json(),
    )


def read_answer(keys: ConsumerKeys, response: matching_pb2.MatchResponse) -> NodeScores:
    scores = decrypt_scores(keys, list(response.score_blocks), len(response.record_ids))
    return NodeScores(
        tuple(response.record_ids),
        scores,
        response.score_noise,
        response.queries_left_today,
        response.queries_left_total,
    )


def match_node(
    client: NodeClient,
    agreement: Agreement,
    *,
    consumer: Identity,
    keys: ConsumerKeys,
    projection: Projection,
    need: np.ndarray,
) -> NodeScores:
    """Score every record the agreement covers against `need` under encryption, straight at one node.
    Raises NodeRefused with the node's status and reason."""
    return read_answer(keys, send_query(client, agreement, encrypt_need(keys, projection, need), consumer))


def coordinator_request(query: MatchQuery, grants: dict[str, str]) -> dict[str, Any]:
    """The JSON body of the coordinator's POST /queries/match: the query's parts and a grant per agreement."""
    parameters = query.parameters
    return {
        "parameters": {
            "poly_modulus_degree": parameters.poly_modulus_degree,
            "coeff_modulus_bits": list(parameters.coeff_modulus_bits),
            "scale_bits": parameters.scale_bits,
        },
        "evaluation_keys": base64.b64encode(query.evaluation_keys).decode(),
        "query": base64.b64encode(query.ciphertext).decode(),
        "projection": base64.b64encode(query.projection).decode(),
        "grants": grants,
    }


def read_coordinator_answer(keys: ConsumerKeys, result: dict[str, Any]) -> NodeScores:
    """One node's entry of the coordinator's answer, decrypted (the entry must hold no error)."""
    blocks = [base64.b64decode(block) for block in result["score_blocks"]]
    scores = decrypt_scores(keys, blocks, len(result["record_ids"]))
    return NodeScores(
        tuple(result["record_ids"]),
        scores,
        result["score_noise"],
        result["queries_left_today"],
        result["queries_left_total"],
    )


@dataclass(frozen=True)
class RankedRecord:
    score: float
    provider_org: str
    node: str
    record_id: str


@dataclass(frozen=True)
class FanOutAnswer:
    """A need matched through the coordinator: every scored record, best first, and each node's outcome."""

    ranked: list[RankedRecord]
    answers: dict[str, NodeScores]  # provider org -> its decrypted scores
    refusals: dict[str, str]  # provider org -> "STATUS: the node's reason"


def match_via_coordinator(
    client: CoordinatorClient,
    member: Identity,
    *,
    keys: ConsumerKeys,
    projection: Projection,
    need: np.ndarray,
    agreements: list[Agreement],
) -> FanOutAnswer:
    """Encrypt `need` (a MiniLM embedding), sign a grant per agreement, send it through the coordinator and
    decrypt every node's answer. Raises CoordinatorRefused for a query the coordinator cannot route."""
    query = encrypt_need(keys, projection, need)
    grants = {a.agreement_id: sign_query_grant(member, a, query.digest).model_dump_json() for a in agreements}
    answer = client.match(coordinator_request(query, grants))
    ranked, answers, refusals = [], {}, {}
    for result in answer["results"]:
        provider = result["provider_org"]
        if result["error"] is not None:
            refusals[provider] = f"{result['error']['status']}: {result['error']['reason']}"
            continue
        scores = read_coordinator_answer(keys, result)
        answers[provider] = scores
        ranked += [
            RankedRecord(float(score), provider, result["node"], record_id)
            for record_id, score in zip(scores.record_ids, scores.scores, strict=True)
        ]
    ranked.sort(key=lambda record: -record.score)
    return FanOutAnswer(ranked, answers, refusals)
