"""Reveal: the decided fields of the decided records, counted against the agreement's limit."""

from __future__ import annotations

from google.protobuf.struct_pb2 import Struct

from contracts.v1 import reveal_pb2, reveal_pb2_grpc
from node.gate import current_grant
from node.grants import RevealGrant, require


class RevealHandler(reveal_pb2_grpc.RevealServicer):
    def Reveal(self, request, context):
        grant = require(current_grant(), RevealGrant)
        rows, missing = grant.fetch()
        records = []
        for row in rows:
            struct = Struct()
            struct.update(row)
            records.append(struct)
        return reveal_pb2.RevealResponse(records=records, missing_ids=missing)
