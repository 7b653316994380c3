"""Audit: signed tree heads, entries and proofs of the node's own log."""

from __future__ import annotations

import base64

from audit import SignedTreeHead
from contracts.v1 import audit_pb2, audit_pb2_grpc
from node.gate import current_grant
from node.grants import AuditGrant, require


def tree_head_message(head: SignedTreeHead) -> audit_pb2.SignedTreeHead:
    return audit_pb2.SignedTreeHead(
        head_json=head.signed_payload(),
        signature=base64.b64decode(head.signature),
        signing_certificate_pem=head.certificate_pem.encode("ascii"),
        tree_size=head.tree_size,
        root_hash=head.root_hash,
    )


class AuditHandler(audit_pb2_grpc.AuditServicer):
    def GetTreeHead(self, request, context):
        grant = require(current_grant(), AuditGrant)
        return tree_head_message(grant.tree_head(fresh=request.fresh))

    def GetEntries(self, request, context):
        grant = require(current_grant(), AuditGrant)
        return audit_pb2.GetEntriesResponse(
            start=request.start, leaves=grant.entries(request.start, request.end)
        )

    def GetInclusionProof(self, request, context):
        grant = require(current_grant(), AuditGrant)
        hashes = grant.inclusion_proof(request.index, request.tree_size)
        return audit_pb2.InclusionProof(index=request.index, tree_size=request.tree_size, hashes=hashes)

    def GetConsistencyProof(self, request, context):
        grant = require(current_grant(), AuditGrant)
        hashes = grant.consistency_proof(request.first, request.second)
        return audit_pb2.ConsistencyProof(first=request.first, second=request.second, hashes=hashes)
