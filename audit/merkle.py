"""RFC 9162 Merkle tree hashing and proof generation over an append-only list of leaf hashes.

The hashing follows RFC 9162 §2.1 exactly: a leaf hash is SHA-256(0x00 || leaf), an interior node is
SHA-256(0x01 || left || right), the empty tree hashes to SHA-256(""), and a range of n > 1 leaves splits at
the largest power of two smaller than n. The distinct prefixes keep a leaf from posing as an interior node.

`MerkleTree` keeps every complete, aligned power-of-two subtree root in memory (about two hashes per leaf, in
flat bytearrays), so a root or a proof for any size costs O(log² n) hashes and not O(n). Proofs are built by
the literal recursions of RFC 9162 §2.1.3 (PATH) and §2.1.4 (SUBPROOF) over those cached subtree roots;
their checkers live in `audit.proofs`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    """Return the RFC 9162 hash of one leaf: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """Return the largest power of two strictly smaller than n (n >= 2): where RFC 9162 splits n leaves."""
    if n < 2:
        raise ValueError(f"a range of {n} leaves has no split point")
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 9162 Merkle tree over leaf hashes, safe to share between threads.

    `_levels[h]` holds, back to back, the roots of the complete subtrees of width 2**h that start at multiples
    of 2**h; a level grows as soon as the last two roots below it are complete.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self._lock = threading.Lock()
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash_: bytes) -> int:
        """Append one leaf hash; return its index (counting from zero)."""
        if len(leaf_hash_) != HASH_SIZE:
            raise ValueError(f"a leaf hash has {HASH_SIZE} bytes, got {len(leaf_hash_)}")
        with self._lock:
            index = self._size
            self._levels[0] += leaf_hash_
            # Each trailing 1 bit of the index completes one more aligned subtree, bottom up.
            position, height = index, 0
            while position & 1:
                level = self._levels[height]
                parent = node_hash(bytes(level[-2 * HASH_SIZE : -HASH_SIZE]), bytes(level[-HASH_SIZE:]))
                if height + 1 == len(self._levels):
                    self._levels.append(bytearray())
                self._levels[height + 1] += parent
                position >>= 1
                height += 1
            self._size = index + 1
            return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes in order."""
        for value in leaf_hashes:
            self.append(value)

    def leaf(self, index: int) -> bytes:
        """Return the leaf hash at `index`; raise IndexError outside the tree."""
        if not 0 <= index < self._size:
            raise IndexError(f"leaf {index} is outside a tree of {self._size} leaves")
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def root(self, size: int | None = None) -> bytes:
        """Return the RFC 9162 root hash of the first `size` leaves (default: all of them)."""
        size = self._checked_size(size)
        return self._range_root(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the RFC 9162 inclusion proof (PATH) of leaf `index` in the tree of the first `size` leaves.

        Raises ValueError unless 0 <= index < size <= self.size.
        """
        size = self._checked_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")
        return self._path(index, 0, size)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """Return the RFC 9162 consistency proof between the trees of `first` and `second` leaves.

        The proof is empty when first == second or first == 0 (an empty tree is a prefix of every tree).
        Raises ValueError unless 0 <= first <= second <= self.size.
        """
        second = self._checked_size(second)
        if not 0 <= first <= second:
            raise ValueError(f"no consistency proof from size {first} to size {second}")
        if first in (0, second):
            return []
        return self._subproof(first, 0, second, complete=True)

    def _checked_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} is outside 0..{self._size}")
        return size

    def _range_root(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]); O(log n) hashes when the range is a node of an RFC 9162 tree."""
        width = end - start
        if width == 0:
            return EMPTY_ROOT
        if width & (width - 1) == 0 and start % width == 0:
            height = width.bit_length() - 1
            offset = (start >> height) * HASH_SIZE
            return bytes(self._levels[height][offset : offset + HASH_SIZE])
        k = split_point(width)
        return node_hash(self._range_root(start, start + k), self._range_root(start + k, end))

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        """PATH(index, D[start:end]) of RFC 9162 §2.1.3.1, with an absolute leaf index."""
        if end - start == 1:
            return []
        middle = start + split_point(end - start)
        if index < middle:
            return [*self._path(index, start, middle), self._range_root(middle, end)]
        return [*self._path(index, middle, end), self._range_root(start, middle)]

    def _subproof(self, first: int, start: int, end: int, *, complete: bool) -> list[bytes]:
        """SUBPROOF(first, D[start:end], complete) of RFC 9162 §2.1.4.1, with an absolute old size."""
        if first == end:
            return [] if complete else [self._range_root(start, end)]
        middle = start + split_point(end - start)
        if first <= middle:
            return [*self._subproof(first, start, middle, complete=complete), self._range_root(middle, end)]
        return [*self._subproof(first, middle, end, complete=False), self._range_root(start, middle)]
