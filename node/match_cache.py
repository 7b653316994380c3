"""The node's packed patent encodings, kept between match queries.

Encoding a dataset's vectors for the matching kernel takes about 0.1 s of CPU and 16 MB per 8,192 records,
and every query of the same projection on the same data needs the same encodings, so they are built once
and kept. The key names everything the encodings depend on: the dataset as imported (name, file digest,
row count), the projection's digest and the CKKS parameters. A few are kept, the least recently used dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from crypto.ckks import CkksParameters
from models.matching.encrypted_scores import PackedPatents

MAX_ENTRIES = 4


@dataclass(frozen=True)
class PackedRecords:
    record_ids: tuple[str, ...]
    patents: PackedPatents


CacheKey = tuple[str, str, int, str, CkksParameters]


class PackedRecordsCache:
    """Thread-safe; a key is built at most once at a time (other callers of the same key wait for it)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[CacheKey, PackedRecords] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._building: dict[CacheKey, threading.Lock] = {}

    def get(self, key: CacheKey, build: Callable[[], PackedRecords]) -> PackedRecords:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            packed = build()
            with self._lock:
                self._entries[key] = packed
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
                self._building.pop(key, None)
        return packed
