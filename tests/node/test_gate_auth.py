"""Every RPC behind the gate, called over real mTLS sockets by callers who must not get through.

For each RPC: no client certificate and a certificate of another CA fail the TLS handshake (no call exists,
so there is nothing to record); an expired token, a token bound to another member, a missing token, a
malformed and an oversized message are refused with the right status and a reason a person understands, are
recorded as denials, and return no data.
"""

from __future__ import annotations

import grpc
import pytest

from crypto import CertificateAuthority, Role, channel_credentials
from node.rpc_table import RULES
from tests.node.conftest import Space, expired_token

METHODS = sorted(RULES)


def _raw_call(
    space: Space, method: str, payload: bytes, *, credentials: grpc.ChannelCredentials, token: str | None
) -> grpc.RpcError:
    """Call ``method`` with raw bytes, so any payload (even an undecodable one) reaches the node."""
    with grpc.secure_channel(space.address, credentials) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        with pytest.raises(grpc.RpcError) as raised:
            call(payload, metadata=metadata, timeout=10)
    return raised.value


def _last_entry(space: Space) -> dict:
    return space.entries()[-1]


def _alice_credentials(space: Space) -> grpc.ChannelCredentials:
    return channel_credentials(space.identity("alice"))


@pytest.mark.parametrize("method", METHODS)
def test_no_client_certificate_fails_the_handshake(space: Space, method: str) -> None:
    before = len(space.entries())
    credentials = grpc.ssl_channel_credentials(root_certificates=space.local.ca.cert_pem)
    error = _raw_call(space, method, b"", credentials=credentials, token="irrelevant")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert len(space.entries()) == before  # TLS refused it: no call reached the gate


@pytest.mark.parametrize("method", METHODS)
def test_certificate_of_another_ca_fails_the_handshake(space: Space, method: str, tmp_path) -> None:
    other_ca = CertificateAuthority.create(tmp_path / "other-ca")
    intruder = other_ca.issue("mallory", "acme", Role.CONSUMER)
    token = other_ca.issue_token(intruder.principal())
    before = len(space.entries())
    error = _raw_call(space, method, b"", credentials=channel_credentials(intruder), token=token)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert len(space.entries()) == before


@pytest.mark.parametrize("method", METHODS)
def test_expired_token_is_refused_and_recorded(space: Space, method: str) -> None:
    error = _raw_call(
        space, method, b"", credentials=_alice_credentials(space), token=expired_token(space, "alice")
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in error.details()
    entry = _last_entry(space)
    assert (entry["method"], entry["decision"], entry["status"]) == (method, "deny", "UNAUTHENTICATED")
    assert entry["actor"] == "alice" and "expired" in entry["reason"]


@pytest.mark.parametrize("method", METHODS)
def test_token_of_another_member_is_refused_and_recorded(space: Space, method: str) -> None:
    bobs_token = (space.members["bob"] / "token").read_text().strip()
    error = _raw_call(space, method, b"", credentials=_alice_credentials(space), token=bobs_token)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "certificate" in error.details() or "org" in error.details()
    entry = _last_entry(space)
    assert (entry["method"], entry["decision"], entry["org"]) == (method, "deny", "acme")


@pytest.mark.parametrize("method", METHODS)
def test_missing_token_is_refused_and_recorded(space: Space, method: str) -> None:
    error = _raw_call(space, method, b"", credentials=_alice_credentials(space), token=None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "token" in error.details()
    assert (_last_entry(space)["method"], _last_entry(space)["decision"]) == (method, "deny")


@pytest.mark.parametrize("method", METHODS)
def test_malformed_message_is_refused_and_recorded(space: Space, method: str) -> None:
    token = (space.members["alice"] / "token").read_text().strip()
    # A field-1 length-delimited record that claims 100 bytes and carries 3: no protobuf decoder accepts it.
    error = _raw_call(space, method, b"\x0a\x64abc", credentials=_alice_credentials(space), token=token)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid" in error.details()
    entry = _last_entry(space)
    assert (entry["method"], entry["decision"], entry["status"]) == (method, "deny", "INVALID_ARGUMENT")


@pytest.mark.parametrize("method", METHODS)
def test_oversized_message_is_refused_and_recorded(space: Space, method: str) -> None:
    token = (space.members["alice"] / "token").read_text().strip()
    limit = RULES[method].max_request_bytes
    payload = b"\x0a" + _varint(limit + 10) + b"x" * (limit + 10)  # one huge string field, well-formed
    error = _raw_call(space, method, payload, credentials=_alice_credentials(space), token=token)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"at most {limit:,}" in error.details()
    entry = _last_entry(space)
    assert (entry["method"], entry["decision"], entry["status"]) == (method, "deny", "RESOURCE_EXHAUSTED")


def test_a_method_outside_the_table_is_unknown(space: Space) -> None:
    token = (space.members["alice"] / "token").read_text().strip()
    error = _raw_call(
        space, "/ipspace.v1.Reveal/RevealEverything", b"", credentials=_alice_credentials(space), token=token
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
