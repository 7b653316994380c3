"""Match: every record of the decided dataset scored against a query encrypted under the consumer's key.

The node sees ciphertexts, the consumer's rotation keys and the projection; it never holds a key that
decrypts. A query the kernel refuses (parameters the node does not compute with, a ciphertext that does not
load, a missing rotation key, a projection that does not fit the stored vectors) is refused with
INVALID_ARGUMENT and the kernel's reason, and costs the agreement nothing; an answered query is charged to
the agreement's daily and total counts with the call's audit entry.
"""

from __future__ import annotations

import grpc

from contracts.v1 import matching_pb2, matching_pb2_grpc
from node.gate import current_grant
from node.grants import HandlerError, MatchGrant, require


class MatchingHandler(matching_pb2_grpc.MatchingServicer):
    def Match(self, request, context):
        from crypto.ckks import CkksInputError, CkksParameters, EvaluationContext
        from models.matching.encrypted_scores import MATCHING_PARAMETERS
        from models.matching.projection import Projection, ProjectionError

        grant = require(current_grant(), MatchGrant)
        try:
            parameters = CkksParameters(
                poly_modulus_degree=request.parameters.poly_modulus_degree,
                coeff_modulus_bits=tuple(request.parameters.coeff_modulus_bits),
                scale_bits=request.parameters.scale_bits,
            )
            if parameters != MATCHING_PARAMETERS:  # each kernel runs with its own set: this one's is small
                raise CkksInputError(
                    f"a node does not compute with {parameters} for matching; it matches with "
                    f"{MATCHING_PARAMETERS} only"
                )
            projection = Projection.from_bytes(request.projection)
            evaluation = EvaluationContext.from_bytes(parameters, request.evaluation_keys)
            records = grant.packed_records(projection, parameters)
            noise = grant.obligation.limits.score_noise
            blocks = records.patents.score(
                request.query, evaluation, query_dimension=projection.dimension, noise_std=noise
            )
        except (CkksInputError, ProjectionError) as error:
            raise HandlerError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        left_today, left_total = grant.charge_query()
        return matching_pb2.MatchResponse(
            score_blocks=blocks,
            record_ids=records.record_ids,
            score_noise=noise,
            queries_left_today=left_today,
            queries_left_total=left_total,
        )
