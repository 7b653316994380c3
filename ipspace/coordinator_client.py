"""A member's client of the coordinator's API (agreements, jobs, match and valuation queries, and for a
regulator the coordinator's own audit log): HTTPS with the member's client certificate and token.

The coordinator's certificate must chain to the data space's CA (the only trusted root) and name the host;
the client certificate and the bound token say who calls (RFC 8705, as with the nodes). A refusal arrives as
CoordinatorRefused with the HTTP status and the coordinator's reason.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from audit import SignedTreeHead
from contracts.agreements import Agreement
from contracts.job_grants import TrainingSettings, default_settings, sign_job_grant
from crypto import Identity
from crypto.identity import CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE

TIMEOUT_S = 30.0
AUDIT_PAGE = 1000  # the coordinator's own_log_routes.MAX_ENTRIES_PER_PAGE


class CoordinatorRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class CoordinatorClient:
    def __init__(self, url: str, identity_dir: Path, token: str) -> None:
        context = ssl.create_default_context(cafile=str(identity_dir / CA_CERT_FILE))
        context.load_cert_chain(identity_dir / TLS_CERT_FILE, identity_dir / TLS_KEY_FILE)
        self._identity_dir = identity_dir
        self._http = httpx.Client(
            base_url=url, verify=context, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise CoordinatorRefused(response.status_code, detail if isinstance(detail, str) else str(detail))
        return response

    def catalog(self) -> dict[str, Any]:
        return self._call("GET", "/catalog").json()

    def register_agreement(self, agreement: Agreement) -> dict[str, Any]:
        return self._call(
            "POST",
            "/agreements",
            content=agreement.model_dump_json(),
            headers={"Content-Type": "application/json"},
        ).json()

    def agreements(self) -> list[Agreement]:
        return [
            Agreement.model_validate(entry["agreement"]) for entry in self._call("GET", "/agreements").json()
        ]

    def submit(self, spec: dict[str, Any], job_id: str) -> dict[str, Any]:
        """Sign one grant per agreement of `spec` for `job_id` with this member's identity; submit the job.

        Raises CoordinatorRefused, and KeyError naming an agreement the coordinator holds for no org of yours.
        """
        identity = Identity.load(self._identity_dir)
        held = {agreement.agreement_id: agreement for agreement in self.agreements()}
        task = spec.get("task", "valuation")
        given = spec.get("model")
        settings = default_settings(task) if given is None else TrainingSettings.model_validate(given)
        grants = {}
        for agreement_id in spec["agreements"]:
            if agreement_id not in held:
                raise KeyError(
                    f"the coordinator holds no agreement {agreement_id} of your org: register it first"
                )
            grant = sign_job_grant(
                identity,
                held[agreement_id],
                job_id=job_id,
                rounds=spec["rounds"],
                epsilon=spec.get("epsilon"),
                task=task,
                settings=settings,
            )
            grants[agreement_id] = grant.model_dump_json()
        body = {**spec, "model": settings.model_dump(mode="json"), "job_id": job_id, "grants": grants}
        return self._call("POST", "/jobs", json=body).json()

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs").json()

    def status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}").json()

    def provenance(self, job_id: str) -> dict[str, Any]:
        """The job's model provenance document, unverified (`coordinator.provenance.verify_provenance` checks
        it). Raises CoordinatorRefused (404 for a job you may not see, 409 for one that has not succeeded)."""
        return self._call("GET", f"/jobs/{job_id}/provenance").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel").json()

    def model(self, job_id: str) -> bytes:
        return self._call("GET", f"/jobs/{job_id}/model").content

    def match(self, body: dict[str, Any], *, timeout_s: float = 120.0) -> dict[str, Any]:
        """POST /queries/match (ipspace.match_query.coordinator_request builds the body)."""
        return self._call("POST", "/queries/match", json=body, timeout=timeout_s).json()

    def valuation_terms(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}/valuation: the reference year, CKKS parameter set, head degree and budget left."""
        return self._call("GET", f"/jobs/{job_id}/valuation").json()

    def valuate(self, job_id: str, body: dict[str, Any], *, timeout_s: float = 120.0) -> dict[str, Any]:
        """POST /jobs/{id}/valuations (ipspace.valuation_query.valuation_request builds the body)."""
        return self._call("POST", f"/jobs/{job_id}/valuations", json=body, timeout=timeout_s).json()

    # --- tree-head gossip (regulators) ---------------------------------------------------------------------

    def head_summary(self) -> list[dict[str, Any]]:
        """Each node's latest head the coordinator keeps, with counts of heads and alerts."""
        return self._call("GET", "/audit/heads").json()

    def kept_heads(self, node: str) -> list[dict[str, Any]]:
        """Every head the coordinator keeps of ``node`` (an empty list when it keeps none)."""
        try:
            return self._call("GET", f"/audit/heads/{node}").json()
        except CoordinatorRefused as refused:
            if refused.status == httpx.codes.NOT_FOUND:
                return []
            raise

    def report_head(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Report a head seen at a node; returns (status, receipt): 409 (an alert) and 428 are answers too."""
        response = self._http.post("/audit/heads/observed", json=body)
        if response.status_code not in (200, 201, 409, 428):
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise CoordinatorRefused(response.status_code, str(detail))
        return response.status_code, response.json()

    def alerts(self) -> list[dict[str, Any]]:
        return self._call("GET", "/audit/alerts").json()

    def collect_heads(self) -> list[dict[str, Any]]:
        """Ask the coordinator to pull a fresh head from every node now."""
        return self._call("POST", "/audit/heads/collect").json()

    # --- the coordinator's own audit log (a regulator's) ------------------------------------------------

    def audit_tree_head(self, *, fresh: bool = False) -> SignedTreeHead:
        """GET /audit/log/head: the coordinator's latest signed head, unverified (the bundle verifier checks
        it). Raises audit.InvalidTreeHead if the answer is not a tree head's shape."""
        answer = self._call("GET", "/audit/log/head", params={"fresh": "true" if fresh else "false"})
        return SignedTreeHead.from_dict(answer.json())

    def audit_entries(self, start: int, end: int) -> list[bytes]:
        """GET /audit/log/entries, page by page: the leaves of entries start..end-1, as the bytes hashed."""
        leaves: list[bytes] = []
        for page_start in range(start, end, AUDIT_PAGE):
            page_end = min(end, page_start + AUDIT_PAGE)
            answer = self._call("GET", "/audit/log/entries", params={"start": page_start, "end": page_end})
            # Nothing is checked here: the bundle's verifier judges what came back, byte for byte.
            leaves.extend(leaf.encode("utf-8", "surrogatepass") for leaf in answer.json()["leaves"])
        return leaves

    def audit_consistency_proof(self, first: int, second: int) -> list[bytes]:
        """GET /audit/log/consistency: the RFC 9162 proof between the trees of `first` and `second` leaves."""
        answer = self._call("GET", "/audit/log/consistency", params={"first": first, "second": second})
        return [bytes.fromhex(value) for value in answer.json()["proof"]]

    # --- the regulator's index of every log -----------------------------------------------------------------

    def audit_status(self, *, sync: bool = False, full: bool = False) -> list[dict[str, Any]]:
        """Every log's verification state (after syncing the index now, with ``sync``)."""
        if sync:
            return self._call("POST", "/audit/sync", params={"full": "true"} if full else None).json()
        return self._call("GET", "/audit/status").json()

    def indexed_entries(self, **filters: Any) -> dict[str, Any]:
        """A page of indexed entries; ``filters`` are the query parameters of GET /audit/entries."""
        params = {name: value for name, value in filters.items() if value is not None}
        return self._call("GET", "/audit/entries", params=params).json()

    def audit_usage(self) -> list[dict[str, Any]]:
        return self._call("GET", "/audit/usage").json()
