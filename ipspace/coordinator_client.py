"""A member's client of the coordinator's API (agreements, jobs, match queries): HTTPS with the member's
client certificate and token.

The coordinator's certificate must chain to the data space's CA (the only trusted root) and name the host;
the client certificate and the bound token say who calls (RFC 8705, as with the nodes). A refusal arrives as
CoordinatorRefused with the HTTP status and the coordinator's reason.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from contracts.agreements import Agreement
from contracts.job_grants import TrainingSettings, default_settings, sign_job_grant
from crypto import Identity
from crypto.identity import CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE

TIMEOUT_S = 30.0


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
