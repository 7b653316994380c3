"""The consumer's side of an encrypted match: keys, the encrypted query, a node's answer decrypted.

The need text is embedded and projected here, on the consumer's machine, and encrypted under keys that never
leave it; a node receives the ciphertext, the rotation keys the kernel needs and the projection, and answers
with ciphertexts only these keys decrypt (models/matching/encrypted_scores.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.v1 import matching_pb2
from crypto.ckks import CkksParameters, ConsumerKeys
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


def consumer_keys(projection: Projection, parameters: CkksParameters | None = None) -> ConsumerKeys:
    """Fresh keys with exactly the rotation keys a query of the projection's dimension needs."""
    return ConsumerKeys.generate(parameters or CkksParameters(), rotation_steps(projection.dimension))


def parameters_message(parameters: CkksParameters) -> matching_pb2.CkksParameters:
    return matching_pb2.CkksParameters(
        poly_modulus_degree=parameters.poly_modulus_degree,
        coeff_modulus_bits=list(parameters.coeff_modulus_bits),
        scale_bits=parameters.scale_bits,
    )


def match_node(
    client: NodeClient,
    agreement: Agreement,
    keys: ConsumerKeys,
    projection: Projection,
    need: np.ndarray,
) -> NodeScores:
    """Score every record the agreement covers against `need` (a MiniLM embedding, 384 values) under
    encryption. Raises NodeRefused with the node's status and reason."""
    query = projection.apply(np.asarray(need, dtype=np.float32)[None, :])[0]
    response = client.match(
        agreement,
        parameters=parameters_message(keys.parameters),
        evaluation_keys=keys.evaluation_keys(),
        query=encrypt_query(keys, query),
        projection=projection.to_bytes(),
    )
    scores = decrypt_scores(keys, list(response.score_blocks), len(response.record_ids))
    return NodeScores(
        tuple(response.record_ids),
        scores,
        response.score_noise,
        response.queries_left_today,
        response.queries_left_total,
    )
