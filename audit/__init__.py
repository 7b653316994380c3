"""What was asked: a node's append-only audit log, its RFC 9162 Merkle tree, signed tree heads, proofs,
export bundles and their offline verifier.

Arrows: `audit` imports only `crypto` (signatures, canonical JSON).
"""

from __future__ import annotations

from audit.bundle import BundleContents, ConsistencyLink, read_bundle
from audit.entry import AuditEntry, decode_leaf, encode_leaf, timestamp_text
from audit.errors import (
    AuditCorrupted,
    AuditError,
    AuditWriteError,
    BundleInvalid,
    InvalidProof,
    InvalidTreeHead,
    RootMismatch,
)
from audit.heads import SignedTreeHead, sign_tree_head, verify_tree_head
from audit.log import AuditLog
from audit.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, node_hash
from audit.proofs import root_from_inclusion_proof, verify_consistency, verify_inclusion
from audit.verify import Summary, verify_bundle

__all__ = [
    "EMPTY_ROOT",
    "AuditCorrupted",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditWriteError",
    "BundleContents",
    "BundleInvalid",
    "ConsistencyLink",
    "InvalidProof",
    "InvalidTreeHead",
    "MerkleTree",
    "RootMismatch",
    "SignedTreeHead",
    "Summary",
    "decode_leaf",
    "encode_leaf",
    "leaf_hash",
    "node_hash",
    "read_bundle",
    "root_from_inclusion_proof",
    "sign_tree_head",
    "timestamp_text",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
    "verify_tree_head",
]
