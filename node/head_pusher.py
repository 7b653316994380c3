"""Pushing the node's signed tree heads to the coordinator, on a schedule and on demand (tree-head gossip).

The coordinator keeps every node's heads and judges each new one against them (``POST /audit/heads``). When
it needs a consistency proof it answers 428 naming the two sizes, and the pusher posts again with the proof
from its own log. A push that fails (coordinator down, refused) is logged and tried again at the next tick:
the node keeps serving, since its own log stays the authority and any later head must still extend it.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from audit import AuditLog, SignedTreeHead
from audit.gossip import ConsistencyEvidence, head_report
from crypto.identity import CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE

log = logging.getLogger(__name__)

TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret
PUSH_PATH = "/audit/heads"


@dataclass(frozen=True)
class PushOutcome:
    """The coordinator's answer to one push: its HTTP status and verdict, or why there was none."""

    tree_size: int
    status: int | None
    verdict: str | None
    detail: str

    @property
    def accepted(self) -> bool:
        return self.status in (200, 201)


class HeadPusher:
    """Pushes the latest signed head of ``log`` to the coordinator at ``coordinator_url``.

    ``identity_dir`` holds the node's TLS certificate and key, the CA certificate and the node's token.
    ``start()`` pushes at once and then every ``interval_s`` seconds while the log grew; ``push_now()``
    pushes on demand. Thread-safe: one push at a time.
    """

    def __init__(
        self,
        audit_log: AuditLog,
        coordinator_url: str,
        identity_dir: Path,
        *,
        interval_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the push interval must be > 0 seconds")
        self._log = audit_log
        self._url = coordinator_url.rstrip("/")
        self._identity_dir = Path(identity_dir)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_accepted: tuple[int, str] | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="head-pusher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def push_now(self) -> PushOutcome:
        """Sign a head over every entry so far and push it (with the proof the coordinator asks for)."""
        with self._lock:
            head = self._log.sign_head()
            if self._last_accepted == (head.tree_size, head.root_hash):
                return PushOutcome(head.tree_size, 200, "known", "already accepted by the coordinator")
            outcome = self._push(head)
            if outcome.accepted:
                self._last_accepted = (head.tree_size, head.root_hash)
            return outcome

    def _push(self, head: SignedTreeHead) -> PushOutcome:
        try:
            with self._client() as client:
                answer = client.post(PUSH_PATH, json=head_report(head))
                needed = _proof_needed(answer)
                if needed is not None:
                    first, second = needed
                    if not 0 < first <= second <= self._log.size:
                        return _outcome(
                            head,
                            answer,
                            f"asked for a proof from {first} to {second}, "
                            f"which this log of {self._log.size} entries cannot give",
                        )
                    proof = tuple(self._log.consistency_proof(first, second))
                    evidence = ConsistencyEvidence(first, second, proof)
                    answer = client.post(PUSH_PATH, json=head_report(head, evidence))
                return _outcome(head, answer, None)
        except (httpx.HTTPError, OSError, ssl.SSLError) as error:
            return PushOutcome(head.tree_size, None, None, f"the coordinator could not be reached: {error}")

    def _client(self) -> httpx.Client:
        directory = self._identity_dir
        context = ssl.create_default_context(cafile=str(directory / CA_CERT_FILE))
        context.load_cert_chain(directory / TLS_CERT_FILE, directory / TLS_KEY_FILE)
        token = (
            (directory / TOKEN_FILE).read_text(encoding="ascii").strip()
        )  # re-read: a renewed token counts
        return httpx.Client(
            base_url=self._url,
            verify=context,
            headers={"Authorization": f"Bearer {token}"},
            timeout=self._timeout_s,
        )

    def _run(self) -> None:
        while not self._stopping.is_set():
            outcome = self.push_now()
            if not outcome.accepted:
                log.warning("tree head of size %d not accepted: %s", outcome.tree_size, outcome.detail)
            self._stopping.wait(self._interval_s)


def _proof_needed(answer: httpx.Response) -> tuple[int, int] | None:
    if answer.status_code != httpx.codes.PRECONDITION_REQUIRED:
        return None
    needed = _json(answer).get("proof_needed") or {}
    first, second = needed.get("first"), needed.get("second")
    return (first, second) if isinstance(first, int) and isinstance(second, int) else None


def _outcome(head: SignedTreeHead, answer: httpx.Response, note: str | None) -> PushOutcome:
    body = _json(answer)
    detail = note or str(body.get("detail", answer.reason_phrase))
    verdict = body.get("verdict")
    return PushOutcome(
        head.tree_size, answer.status_code, verdict if isinstance(verdict, str) else None, detail
    )


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
