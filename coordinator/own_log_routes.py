"""A regulator's read access to the coordinator's own log (`coordinator.own_log`), over REST.

- GET /audit/log/head?fresh=          the latest signed tree head; ``fresh=true`` signs one over every entry
- GET /audit/log/entries?start=&end=  the leaves of entries start..end-1 (canonical JSON text, as hashed),
                                      at most `MAX_ENTRIES_PER_PAGE` per call
- GET /audit/log/consistency?first=&second=  the RFC 9162 consistency proof between two tree sizes

Regulator only: every other role gets 403 with the reason. A range or pair outside the log is 400 with the
reason. Nothing here is trusted by the reader: ``ipspace audit export --coordinator`` writes what it fetched
into a bundle, and `audit.verify_bundle` checks it with only the CA certificate. Reads are not recorded in
the log (it records what changes state), so exporting it does not grow it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from audit import AuditError, AuditLog
from coordinator.auth import LogReader
from coordinator.job_routes import Problem

logger = logging.getLogger(__name__)
MAX_ENTRIES_PER_PAGE = 1000
LOG_UNAVAILABLE = "the coordinator's audit log can not be read, or a head signed, now; try again later"


def own_log(request: Request) -> AuditLog:
    return request.app.state.own_log.log


OwnLog = Annotated[AuditLog, Depends(own_log)]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TreeHeadView(_View):
    """A signed tree head, as ``audit.SignedTreeHead.to_dict()`` writes it."""

    node: str
    tree_size: int
    root_hash: str = Field(description="lowercase hex of the RFC 9162 root")
    timestamp: str
    signature: str = Field(description="base64 Ed25519 signature over the head's canonical JSON")
    certificate_pem: str = Field(description="the signing certificate; it must chain to the data space's CA")


class EntriesView(_View):
    start: int
    end: int
    tree_size: int = Field(description="the log's size when read")
    leaves: list[str] = Field(description="entry start + i is leaves[i]: UTF-8 text of the hashed bytes")


class ConsistencyView(_View):
    first: int
    second: int
    proof: list[str] = Field(description="hex hashes of the RFC 9162 consistency proof")


_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "no valid token bound to the client certificate"},
    403: {"model": Problem, "description": "only a regulator reads the coordinator's log"},
    503: {"model": Problem, "description": "the log could not be read or a head could not be signed"},
}
_BAD_RANGE = {400: {"model": Problem, "description": "outside the log, or more than one page"}}
own_log_router = APIRouter(prefix="/audit/log", tags=["audit"], responses=_REFUSALS)


@own_log_router.get("/head", response_model=TreeHeadView)
def tree_head(_caller: LogReader, log: OwnLog, fresh: bool = False) -> TreeHeadView:
    """The latest signed tree head; with ``fresh=true`` one signed now over every entry."""
    with _available():
        head = log.sign_head() if fresh else log.tree_head()
    return TreeHeadView(**head.to_dict())


@own_log_router.get("/entries", response_model=EntriesView, responses=_BAD_RANGE)
def entries(_caller: LogReader, log: OwnLog, start: int, end: int) -> EntriesView:
    """Entries ``start``..``end - 1``: each the canonical JSON text whose UTF-8 bytes are the Merkle leaf."""
    size = log.size
    problem = None
    if not 0 <= start <= end:
        problem = f"start={start}, end={end} is not a range: it needs 0 <= start <= end"
    elif end - start > MAX_ENTRIES_PER_PAGE:
        problem = f"at most {MAX_ENTRIES_PER_PAGE} entries per call, asked for {end - start}: page through"
    elif end > size:
        problem = f"the log holds {size} entries; asked up to end={end}"
    if problem is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, problem)
    with _available():
        leaves = [leaf.decode("utf-8") for leaf in log.entries(start, end)]
    return EntriesView(start=start, end=end, tree_size=size, leaves=leaves)


@own_log_router.get("/consistency", response_model=ConsistencyView, responses=_BAD_RANGE)
def consistency(_caller: LogReader, log: OwnLog, first: int, second: int) -> ConsistencyView:
    """The proof that the tree of ``first`` entries is a prefix of the tree of ``second`` entries."""
    size = log.size
    if not 0 < first <= second <= size:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"a consistency proof needs 0 < first <= second <= {size} (the log's size); "
            f"got first={first}, second={second}",
        )
    proof = log.consistency_proof(first, second)  # from the tree in memory: no file read
    return ConsistencyView(first=first, second=second, proof=[value.hex() for value in proof])


@contextmanager
def _available() -> Iterator[None]:
    """503 with a fixed reason when the log is closed or a head could not be stored (details: server log)."""
    try:
        yield
    except AuditError as error:
        logger.error("the coordinator's own log could not serve a regulator: %s", error)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, LOG_UNAVAILABLE) from None
