"""Who gets through to the coordinator, over a real TLS socket on 127.0.0.1.

No client certificate, or one of another CA: refused in the TLS handshake (no request exists). A valid
certificate with no token, someone else's token, a token bound to another certificate, an expired or garbled
token: 401 with the reason. The right identity in the wrong role: 403 with the reason.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from coordinator.api import create_app
from crypto import CertificateAuthority, Role
from tests.coordinator.conftest import Coordinator, FakeRunner, coordinator_settings, submission


@pytest.fixture
def coordinator(shared_coordinator: Coordinator) -> Coordinator:
    """These tests change nothing they count on, so they share one coordinator."""
    return shared_coordinator


def _client_without_certificate(coordinator: Coordinator) -> httpx.Client:
    context = ssl.create_default_context(cafile=coordinator.space.members["bea"] / "ca.crt")
    return httpx.Client(base_url=coordinator.base_url, verify=context, timeout=10)


def test_no_client_certificate_is_refused_in_the_tls_handshake(coordinator: Coordinator) -> None:
    body = submission(coordinator.space, [coordinator.space.agreement("bea", "node-us")])
    before = len(coordinator.events())
    with _client_without_certificate(coordinator) as client, pytest.raises(httpx.TransportError):
        client.post("/jobs", json=body, headers={"Authorization": f"Bearer {coordinator.space.token('bea')}"})
    assert len(coordinator.events()) == before and body["job_id"] not in coordinator.runner.started
    with _client_without_certificate(coordinator) as client, pytest.raises(httpx.TransportError):
        client.get("/openapi.json")


def test_a_certificate_of_another_ca_is_refused_in_the_tls_handshake(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    stranger_ca = CertificateAuthority.create(tmp_path / "other-ca")
    stranger = stranger_ca.issue("bea", "acme", Role.BUILDER)  # the same name, but not of this data space
    stranger.save(tmp_path / "stranger")
    context = ssl.create_default_context(cafile=coordinator.space.members["bea"] / "ca.crt")
    context.load_cert_chain(tmp_path / "stranger" / "tls.crt", tmp_path / "stranger" / "tls.key")
    token = stranger_ca.issue_token(stranger.principal())
    client = httpx.Client(base_url=coordinator.base_url, verify=context, timeout=10)
    with client, pytest.raises(httpx.TransportError):
        client.get("/jobs", headers={"Authorization": f"Bearer {token}"})


def _refusal(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["detail"]


def test_no_token_is_401_with_a_bearer_challenge(coordinator: Coordinator) -> None:
    with coordinator.client("bea") as client:
        response = client.get("/jobs", headers={"Authorization": ""})
    assert "no token" in _refusal(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_a_token_bound_to_another_certificate_is_401(coordinator: Coordinator) -> None:
    # The CA re-issues bea (same name, org and role): a token for that certificate is not good on bea's own.
    ca = coordinator.space.local.ca
    twin = ca.issue("bea", "acme", Role.BUILDER)
    token = ca.issue_token(twin.principal())
    with coordinator.client("bea", token=token) as client:
        response = client.get("/jobs")
    assert "bound to another certificate" in _refusal(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_another_members_token_is_401(coordinator: Coordinator) -> None:
    with coordinator.client("bea", token=coordinator.space.token("gil")) as client:
        detail = _refusal(client.get("/jobs"), 401)
    assert "org 'globex'" in detail and "org 'acme'" in detail


@pytest.mark.parametrize(
    ("make_token", "expected"),
    [
        (
            lambda ca, principal: ca.issue_token(principal, now=datetime.now(UTC) - timedelta(hours=3)),
            "expired",
        ),
        (lambda _ca, _principal: "not-a-jwt", "malformed"),
    ],
    ids=["expired", "garbled"],
)
def test_bad_tokens_are_401_with_the_reason(coordinator: Coordinator, make_token, expected: str) -> None:
    space = coordinator.space
    token = make_token(space.local.ca, space.identity("bea").principal())
    with coordinator.client("bea", token=token) as client:
        assert expected in _refusal(client.get("/catalog"), 401)


def test_a_consumer_may_not_submit_and_the_refusal_is_recorded(coordinator: Coordinator) -> None:
    body = submission(coordinator.space, [coordinator.space.agreement("bea", "node-us")])
    with coordinator.client("carl") as client:
        detail = _refusal(client.post("/jobs", json=body), 403)
    assert "open to the roles builder" in detail and "'consumer'" in detail
    assert body["job_id"] not in coordinator.runner.started
    event = coordinator.events("/jobs")[-1]
    assert event["action"] == "job.submit" and event["outcome"] == "refused" and event["status"] == 403
    assert event["actor"] == {"name": "carl", "org": "acme", "role": "consumer"}


@pytest.mark.parametrize(
    ("member", "method", "path"),
    [
        ("node-us", "GET", "/jobs"),  # a provider does not read jobs
        ("carl", "GET", "/jobs/job-1"),  # nor does a consumer
        ("rita", "POST", "/jobs/job-1/cancel"),  # a regulator reads, never acts
        ("rita", "GET", "/jobs/job-1/model"),  # and downloads no model
        ("rita", "POST", "/agreements"),  # nor registers agreements: only parties' roles may
    ],
)
def test_roles_are_enforced_per_route(coordinator: Coordinator, member: str, method: str, path: str) -> None:
    with coordinator.client(member) as client:
        response = client.request(method, path, json={})
    assert "is open to the roles" in _refusal(response, 403)  # before the (empty) body is even looked at


@pytest.mark.parametrize("member", ["bea", "carl", "rita", "node-us", "coordinator"])
def test_every_authenticated_role_reads_the_catalog(coordinator: Coordinator, member: str) -> None:
    with coordinator.client(member) as client:
        assert client.get("/catalog").status_code == 200


def test_an_app_served_without_the_tls_extension_refuses_everyone(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    """Fail closed: served by something that does not pass the client certificate, the app admits nobody."""
    settings = coordinator_settings(coordinator.space, tmp_path / "bare")
    app = create_app(settings, FakeRunner())
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {coordinator.space.token('bea')}"}

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="https://coordinator") as client:
            return await client.get("/jobs", headers=headers)

    try:
        assert "no client certificate" in _refusal(asyncio.run(call()), 401)
    finally:
        app.state.own_log.close()  # never served, so no lifespan closes it
