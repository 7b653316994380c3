"""Issuing and keeping model provenance records (`coordinator.provenance` says what one is).

Records are kept in the coordinator's SQLite file, one per succeeded job, append-only (triggers refuse UPDATE
and DELETE). `ProvenanceIssuer` issues them when a job succeeds (the runner's watcher calls it) or, for a job
that succeeded while no watcher ran, on the first request for its record.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from audit import SignedTreeHead, verify_tree_head
from coordinator.agreements import AgreementRegistry
from coordinator.database import create_schema, reading, transaction
from coordinator.events import EventSink, joined_ids
from coordinator.head_collect import collect_head
from coordinator.head_gossip import HeadGossip, Receipt
from coordinator.job_spec import JobRecord, JobState
from coordinator.jobs import JobStore
from coordinator.provenance import ProvenanceUnavailable, UnheardNode, sign_provenance
from coordinator.settings import NodeEndpoint, SettingsError
from crypto import Identity

log = logging.getLogger(__name__)

ISSUE_ACTION = "model.provenance.issue"
MAX_PARALLEL_NODES = 8

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_provenance (
    job_id TEXT PRIMARY KEY,
    document_json TEXT NOT NULL,
    issued_at TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS model_provenance_append_only_u BEFORE UPDATE ON model_provenance
    BEGIN SELECT RAISE(ABORT, 'model_provenance is append-only'); END;
CREATE TRIGGER IF NOT EXISTS model_provenance_append_only_d BEFORE DELETE ON model_provenance
    BEGIN SELECT RAISE(ABORT, 'model_provenance is append-only'); END;
"""


# --- keeping records ---------------------------------------------------------------------------------------


class ProvenanceStore:
    """One provenance document per job, in the coordinator's SQLite file. Safe across threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        create_schema(self.path, SCHEMA)

    def add(self, job_id: str, document: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Keep ``document`` unless the job has one; returns the job's kept document and whether it is new."""
        text = json.dumps(document, sort_keys=True)
        with transaction(self.path) as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO model_provenance (job_id, document_json, issued_at) VALUES (?, ?, ?)",
                (job_id, text, document["record"]["issued_at"]),
            ).rowcount
            row = db.execute(
                "SELECT document_json FROM model_provenance WHERE job_id = ?", (job_id,)
            ).fetchone()
        return json.loads(row["document_json"]), inserted == 1

    def get_json(self, job_id: str) -> str | None:
        """The job's document exactly as kept (JSON text), or None."""
        with reading(self.path) as db:
            row = db.execute(
                "SELECT document_json FROM model_provenance WHERE job_id = ?", (job_id,)
            ).fetchone()
        return row["document_json"] if row is not None else None

    def get(self, job_id: str) -> dict[str, Any] | None:
        text = self.get_json(job_id)
        return json.loads(text) if text is not None else None


# --- issuing -----------------------------------------------------------------------------------------------


class ProvenanceIssuer:
    """Issues a succeeded job's record: reads its model, pulls each of its nodes' fresh heads, signs, keeps.

    The job's nodes are those of its agreements' provider orgs: a configured node of such an org, or a node
    with no configured org whose fresh head is signed by one. Heads are judged by the coordinator's head
    gossip on the way in (a head that contradicts a kept one is recorded with the alert's reason).
    """

    def __init__(
        self,
        *,
        jobs: JobStore,
        registry: AgreementRegistry,
        records: ProvenanceStore,
        gossip: HeadGossip,
        identity: Identity,
        nodes: Sequence[NodeEndpoint],
        read_token: Callable[[], str],
        timeout_s: float,
        events: EventSink | None = None,
    ) -> None:
        self.records = records
        self._jobs = jobs
        self._registry = registry
        self._gossip = gossip
        self._identity = identity
        self._nodes = tuple(nodes)
        self._read_token = read_token
        self._timeout_s = timeout_s
        self._events = events

    def issue(self, job_id: str) -> dict[str, Any]:
        """The job's provenance document, issued now unless it was before (then the kept one).

        Raises jobs.UnknownJob, ProvenanceUnavailable when the job has not succeeded or its model file no
        longer hashes to the digest recorded when it was saved, and audit.AuditWriteError when the issue
        cannot be recorded in the coordinator's own log (the record is kept all the same).
        """
        kept = self.records.get(job_id)
        if kept is not None:
            return kept
        job = self._jobs.get(job_id)
        path = self._jobs.model_path(job)
        if job.state != JobState.SUCCEEDED or path is None:
            raise ProvenanceUnavailable(f"job {job_id!r} is {job.state.value}; only a succeeded job has one")
        model_bytes = path.read_bytes()
        if hashlib.sha256(model_bytes).hexdigest() != job.model_sha256:
            raise ProvenanceUnavailable(
                f"the model file of job {job_id!r} no longer has the SHA-256 recorded when it was saved"
            )
        heads, unheard, alerts = self._job_heads(job)
        document = sign_provenance(
            self._identity, job, model_bytes, node_heads=heads, nodes_unheard=unheard, head_alerts=alerts
        )
        document, new = self.records.add(job_id, document)
        if new and self._events is not None:
            self._record_issue(job, document)
        return document

    def _job_heads(
        self, job: JobRecord
    ) -> tuple[dict[str, SignedTreeHead], list[UnheardNode], dict[str, str]]:
        orgs = set()
        unheard: list[UnheardNode] = []
        for agreement_id in job.spec.agreements:
            agreement = self._registry.get(agreement_id)
            if agreement is None:  # admission checks this; kept visible should the registry lose one
                unheard.append(
                    UnheardNode(node=None, org=None, reason=f"agreement {agreement_id} is unknown")
                )
            else:
                orgs.add(agreement.terms.provider_org)
        candidates = [node for node in self._nodes if node.org is None or node.org in orgs]
        results = self._pull(candidates)
        heads: dict[str, SignedTreeHead] = {}
        alerts: dict[str, str] = {}
        accounted: set[str] = set()  # provider orgs with a head, or with a configured node listed unheard
        silent_unknown: list[UnheardNode] = []  # nodes of no configured org that did not answer
        for node, result in zip(candidates, results, strict=True):
            if isinstance(result, str):
                if node.org is None:
                    silent_unknown.append(UnheardNode(node=node.name, org=None, reason=result))
                else:
                    unheard.append(UnheardNode(node=node.name, org=node.org, reason=result))
                    accounted.add(node.org)
                continue
            head = result.head
            assert head is not None  # a receipt of a pulled head always carries it
            signer_org = verify_tree_head(head, self._identity.ca_cert_pem).org  # gossip verified it
            if signer_org not in orgs:
                continue  # a node of another provider: not one of this job's
            heads[head.node] = head
            accounted.add(signer_org)
            if result.judgement.verdict.is_alarm:
                alerts[head.node] = f"{result.judgement.verdict.value}: {result.judgement.reason}"
        missing = sorted(orgs - accounted)
        if missing and silent_unknown:  # one of these may be the missing org's node: name them all
            may_serve = ", ".join(missing)
            unheard.extend(
                item.model_copy(update={"reason": f"{item.reason} (it may serve {may_serve})"})
                for item in silent_unknown
            )
        elif missing:
            unheard.extend(
                UnheardNode(node=None, org=org, reason=f"no configured node serves provider org {org!r}")
                for org in missing
            )
        return heads, unheard, alerts

    def _pull(self, nodes: list[NodeEndpoint]) -> list[Receipt | str]:
        if not nodes:
            return []
        try:
            token = self._read_token()
        except SettingsError as error:
            return [str(error)] * len(nodes)
        with ThreadPoolExecutor(min(MAX_PARALLEL_NODES, len(nodes)), "provenance") as pool:
            return list(
                pool.map(
                    lambda node: collect_head(self._gossip, node, self._identity, token, self._timeout_s),
                    nodes,
                )
            )

    def _record_issue(self, job: JobRecord, document: Mapping[str, Any]) -> None:
        record = document["record"]
        sizes = ", ".join(f"{name} at {head['tree_size']}" for name, head in record["node_heads"].items())
        unheard = "; ".join(
            f"{item['node'] or item['org']}: {item['reason']}" for item in record["nodes_unheard"]
        )
        assert self._events is not None
        self._events.record(
            actor=self._identity.principal(),
            action=ISSUE_ACTION,
            target=job.job_id,
            outcome="ok",
            status=201,
            reason=f"model sha256 {record['model_sha256']}; heads: {sizes or 'none'}"
            + (f"; unheard: {unheard}" if unheard else ""),
            dataset=job.spec.dataset,
            purpose=job.spec.purpose,
            agreement_id=joined_ids(job.spec.agreements),
        )
