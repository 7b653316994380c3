"""Checking entries fetched from an audit log against the tree head its keeper signed.

The entries after those already checked are fetched and must, together with the hashes of those, hash to the
signed root. When they do not, the first bad entry is found with the keeper's own inclusion proofs: they come
from the hashes it signed, so the first entry whose recomputed hash they do not lead to the signed root is
the one that changed. A full check fetches every entry again and compares each with the hash checked before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from audit import AuditEntry, InvalidProof, MerkleTree, SignedTreeHead, decode_leaf, leaf_hash
from audit.proofs import verify_inclusion
from contracts.client import NodeClient, NodeRefused

PAGE = 2000  # entries fetched per GetEntries call
MAX_LOCATE_PROOFS = 5000  # inclusion proofs asked to locate a bad entry; past this the batch's start is named


@dataclass
class CheckedBatch:
    """Entries of a log that hash to its signed head, as (index, leaf hash, entry); or the first bad index."""

    entries: list[tuple[int, bytes, AuditEntry]] = field(default_factory=list)
    first_bad_index: int | None = None
    reason: str = ""


def fetch_checked(
    client: NodeClient, checked: list[bytes], head: SignedTreeHead, *, full: bool
) -> CheckedBatch:
    """Fetch a node's entries after ``checked`` (the leaf hashes checked before; with ``full`` every entry)
    up to ``head`` and check them. Raises NodeRefused if the node refuses to serve them."""
    if head.tree_size < len(checked):
        return CheckedBatch(
            first_bad_index=head.tree_size, reason="the node's head is smaller than what was checked before"
        )
    start = 0 if full else len(checked)
    leaves: list[bytes] = []
    for first in range(start, head.tree_size, PAGE):
        leaves.extend(client.entries(first, min(head.tree_size, first + PAGE), page=PAGE))

    def locate(index: int) -> list[bytes]:
        return client.inclusion_proof(index, head.tree_size)

    batch = check_batch(checked[:start], leaves, head, locate=locate)
    if full and batch.first_bad_index is None:
        # What the node serves now must be what was checked before, entry for entry.
        changed = next(
            (index for index, hashed, _ in batch.entries[: len(checked)] if hashed != checked[index]), None
        )
        if changed is not None:
            return CheckedBatch(
                first_bad_index=changed, reason=f"entry {changed} differs from the one checked before"
            )
    return batch


def check_batch(
    checked: list[bytes],
    leaves: list[bytes],
    head: SignedTreeHead,
    *,
    locate: Callable[[int], list[bytes]] | None = None,
) -> CheckedBatch:
    """The entries ``leaves`` (of index len(checked) on) if, after ``checked``, they hash to ``head``'s root.

    ``locate(index)`` gives the keeper's inclusion proof of an entry in the head's tree, to name the first
    bad entry; without it the batch's first entry is named.
    """
    start = len(checked)
    if start + len(leaves) != head.tree_size:
        return CheckedBatch(
            first_bad_index=start + len(leaves), reason="the log sent fewer entries than its head covers"
        )
    hashes = [leaf_hash(leaf) for leaf in leaves]
    batch = CheckedBatch()
    for offset, leaf in enumerate(leaves):
        index = start + offset
        try:
            embedded, entry = decode_leaf(leaf)
        except ValueError as error:
            return CheckedBatch(first_bad_index=index, reason=f"entry {index} is malformed: {error}")
        if embedded != index:
            return CheckedBatch(first_bad_index=index, reason=f"entry {index} carries index {embedded}")
        batch.entries.append((index, hashes[offset], entry))
    if MerkleTree([*checked, *hashes]).root(head.tree_size) == head.root:
        return batch
    bad = _first_bad(start, hashes, head, locate)
    return CheckedBatch(
        first_bad_index=bad,
        reason=f"entry {bad} does not hash to the leaf the log's keeper signed at size {head.tree_size}",
    )


def _first_bad(
    start: int, hashes: list[bytes], head: SignedTreeHead, locate: Callable[[int], list[bytes]] | None
) -> int:
    """The first entry whose hash the keeper's own inclusion proof does not lead to its signed root."""
    if locate is None:
        return start
    for offset, value in enumerate(hashes[:MAX_LOCATE_PROOFS]):
        try:
            verify_inclusion(value, start + offset, head.tree_size, locate(start + offset), head.root)
        except (InvalidProof, NodeRefused):
            return start + offset
    return start
