"""Ed25519 signatures with signing certificates, and CA-signed tokens bound to a TLS certificate."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from crypto import (
    CertificateAuthority,
    Identity,
    Role,
    check_token_binding,
    verify_signature,
    verify_token,
)
from crypto.errors import InvalidCertificate, InvalidSignature, InvalidToken

NOW = datetime.now(UTC).replace(microsecond=0)
CA_START = NOW - timedelta(days=30)
MESSAGE = b'{"offer_id":"o-1","purpose":"prior-art search"}'


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ca")


@pytest.fixture(scope="module")
def ca(ca_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.create(ca_dir, now=CA_START, days=3650)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("other-ca"), now=CA_START, days=3650)


@pytest.fixture(scope="module")
def alice(ca: CertificateAuthority) -> Identity:
    return ca.issue("alice-node", "acme", Role.CONSUMER, now=NOW)


@pytest.fixture(scope="module")
def bob(ca: CertificateAuthority) -> Identity:
    return ca.issue("bob-node", "beta", Role.PROVIDER, now=NOW)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _ca_signed(ca_dir: Path, claims: dict) -> str:
    """A token really signed by the CA key (read from its file), with whatever claims the test wants."""
    key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    return jwt.encode(claims, key, algorithm="ES256")


def _good_claims(identity: Identity) -> dict:
    at = int(NOW.timestamp())
    return {
        "iss": "ipspace-ca",
        "sub": identity.name,
        "org": identity.org,
        "role": identity.role.value,
        "iat": at,
        "nbf": at,
        "exp": at + 600,
        "jti": "j-1",
        "cnf": {"x5t#S256": identity.principal().tls_thumbprint},
    }


# --- signatures ---------------------------------------------------------------------------------------


def test_signature_verifies_and_names_the_signer(ca, alice):
    signer = verify_signature(alice.signing_cert_pem, ca.cert_pem, MESSAGE, alice.sign(MESSAGE), now=NOW)
    assert (signer.name, signer.org, signer.role) == ("alice-node", "acme", Role.CONSUMER)
    assert signer.tls_thumbprint == ""


def test_every_flipped_bit_of_the_signature_is_rejected(ca, alice):
    signature = alice.sign(MESSAGE)
    for index in range(len(signature)):
        altered = bytearray(signature)
        altered[index] ^= 0x01 << (index % 8)
        with pytest.raises(InvalidSignature, match="does not match"):
            verify_signature(alice.signing_cert_pem, ca.cert_pem, MESSAGE, bytes(altered), now=NOW)


def test_signature_over_another_message_is_rejected(ca, alice):
    signature = alice.sign(MESSAGE)
    with pytest.raises(InvalidSignature):
        verify_signature(alice.signing_cert_pem, ca.cert_pem, MESSAGE + b" ", signature, now=NOW)


def test_signature_checked_against_another_identity_is_rejected(ca, alice, bob):
    with pytest.raises(InvalidSignature, match="beta/bob-node"):
        verify_signature(bob.signing_cert_pem, ca.cert_pem, MESSAGE, alice.sign(MESSAGE), now=NOW)


def test_signer_from_another_ca_is_rejected(ca, other_ca):
    stranger = other_ca.issue("alice-node", "acme", Role.CONSUMER, now=NOW)
    with pytest.raises(InvalidCertificate, match="not signed by this data space's CA"):
        verify_signature(stranger.signing_cert_pem, ca.cert_pem, MESSAGE, stranger.sign(MESSAGE), now=NOW)


def test_tls_certificate_cannot_vouch_for_a_signature(ca, alice):
    with pytest.raises(InvalidCertificate, match="not a signing certificate"):
        verify_signature(alice.tls_cert_pem, ca.cert_pem, MESSAGE, alice.sign(MESSAGE), now=NOW)


def test_expired_signing_certificate_is_rejected_unless_checked_at_signing_time(ca):
    signed_at = NOW - timedelta(days=10)
    old = ca.issue("old", "acme", Role.REGULATOR, days=1, now=signed_at)
    signature = old.sign(MESSAGE)
    signer = verify_signature(old.signing_cert_pem, ca.cert_pem, MESSAGE, signature, now=signed_at)
    assert signer.name == "old"
    with pytest.raises(InvalidCertificate, match="expired at"):
        verify_signature(old.signing_cert_pem, ca.cert_pem, MESSAGE, signature, now=NOW)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_every_single_bit_flip_of_a_signing_certificate_is_rejected(ca, alice):
    der = x509.load_pem_x509_certificate(alice.signing_cert_pem).public_bytes(serialization.Encoding.DER)
    signature = alice.sign(MESSAGE)
    for index in range(len(der)):
        for bit in range(8):
            altered = bytearray(der)
            altered[index] ^= 1 << bit
            with pytest.raises(InvalidCertificate):
                verify_signature(bytes(altered), ca.cert_pem, MESSAGE, signature, now=NOW)


def test_signature_must_be_bytes(ca, alice):
    with pytest.raises(InvalidSignature, match="bytes"):
        verify_signature(alice.signing_cert_pem, ca.cert_pem, MESSAGE, alice.sign(MESSAGE).hex(), now=NOW)


# --- tokens -------------------------------------------------------------------------------------------


def test_token_verifies_and_is_bound_to_its_holder(ca, alice):
    token = ca.issue_token(alice.principal(), ttl=timedelta(minutes=10), now=NOW)
    claims = verify_token(token, ca.cert_pem, now=NOW)
    assert (claims.name, claims.org, claims.role) == ("alice-node", "acme", Role.CONSUMER)
    assert claims.expires_at == NOW + timedelta(minutes=10)
    assert claims.thumbprint == alice.principal().tls_thumbprint
    check_token_binding(claims, alice.principal())


def test_token_claims_follow_the_contract(ca, alice):
    token = ca.issue_token(alice.principal(), now=NOW)
    header = json.loads(_unb64url(token.split(".")[0]))
    payload = json.loads(_unb64url(token.split(".")[1]))
    assert header["alg"] == "ES256"
    assert payload["iss"] == "ipspace-ca"
    assert payload["iat"] == payload["nbf"] == int(NOW.timestamp())
    assert payload["exp"] == int(NOW.timestamp()) + 3600
    assert payload["cnf"] == {"x5t#S256": alice.principal().tls_thumbprint}
    another = json.loads(_unb64url(ca.issue_token(alice.principal(), now=NOW).split(".")[1]))
    assert payload["jti"] != another["jti"]


def test_expired_token_is_refused_from_its_exp_second_on(ca, alice):
    token = ca.issue_token(alice.principal(), ttl=timedelta(seconds=60), now=NOW)
    expires = NOW + timedelta(seconds=60)
    assert verify_token(token, ca.cert_pem, now=expires - timedelta(seconds=1)).name == "alice-node"
    with pytest.raises(InvalidToken) as refused:
        verify_token(token, ca.cert_pem, now=expires)
    assert refused.value.reason == f"token expired at {expires.isoformat()}"


def test_token_used_before_its_start_is_refused(ca, alice):
    token = ca.issue_token(alice.principal(), now=NOW + timedelta(minutes=5))
    with pytest.raises(InvalidToken, match="not valid before"):
        verify_token(token, ca.cert_pem, now=NOW)


def test_token_signed_by_another_ca_is_refused(ca, other_ca, alice):
    token = other_ca.issue_token(alice.principal(), now=NOW)
    with pytest.raises(InvalidToken, match="not signed by this data space's CA"):
        verify_token(token, ca.cert_pem, now=NOW)


@pytest.mark.parametrize(("claim", "value"), [("role", "regulator"), ("org", "beta"), ("exp", 4102444800)])
def test_token_with_tampered_claims_is_refused(ca, alice, claim, value):
    header, payload, signature = ca.issue_token(alice.principal(), now=NOW).split(".")
    claims = json.loads(_unb64url(payload))
    claims[claim] = value
    forged = ".".join([header, _b64url(json.dumps(claims).encode()), signature])
    with pytest.raises(InvalidToken, match="not signed by this data space's CA"):
        verify_token(forged, ca.cert_pem, now=NOW)


def test_token_bound_to_another_certificate_is_refused(ca, alice):
    token = ca.issue_token(alice.principal(), now=NOW)
    # The same member re-issued: same name, org and role, but another TLS certificate.
    reissued = ca.issue("alice-node", "acme", Role.CONSUMER, now=NOW)
    claims = verify_token(token, ca.cert_pem, now=NOW)
    with pytest.raises(InvalidToken, match="bound to another certificate"):
        check_token_binding(claims, reissued.principal())


def test_token_of_another_org_is_refused_for_this_peer(ca, alice, bob):
    claims = verify_token(ca.issue_token(bob.principal(), now=NOW), ca.cert_pem, now=NOW)
    reason = "token issued to org 'beta', but the connection is from org 'acme'"
    with pytest.raises(InvalidToken, match=reason):
        check_token_binding(claims, alice.principal())


def test_token_of_another_role_or_name_is_refused(ca, alice):
    claims = verify_token(ca.issue_token(alice.principal(), now=NOW), ca.cert_pem, now=NOW)
    peer = alice.principal()
    with pytest.raises(InvalidToken, match="role"):
        check_token_binding(claims, dataclasses.replace(peer, role=Role.REGULATOR))
    with pytest.raises(InvalidToken, match="issued to 'alice-node'"):
        check_token_binding(claims, dataclasses.replace(peer, name="eve"))
    with pytest.raises(InvalidToken, match="bound to another certificate"):
        check_token_binding(claims, dataclasses.replace(peer, tls_thumbprint=""))


def test_hs256_token_keyed_with_the_ca_public_key_is_refused(ca, alice):
    # The classic algorithm confusion: an HMAC over the token keyed with the (public) CA certificate.
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(_good_claims(alice)).encode())
    public_pem = (
        x509.load_pem_x509_certificate(ca.cert_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for secret in (public_pem, ca.cert_pem):
        mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidToken, match="algorithm 'HS256'; only ES256"):
            verify_token(f"{header}.{payload}.{_b64url(mac)}", ca.cert_pem, now=NOW)


def test_unsigned_alg_none_token_is_refused(ca, alice):
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(_good_claims(alice)).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}.{_b64url(b'x')}"):
        with pytest.raises(InvalidToken, match="algorithm 'none'"):
            verify_token(token, ca.cert_pem, now=NOW)


def test_ca_signed_token_with_good_claims_passes(ca_dir, ca, alice):
    # Control for the next test: the hand-built claims are accepted as they are.
    claims = verify_token(_ca_signed(ca_dir, _good_claims(alice)), ca.cert_pem, now=NOW)
    check_token_binding(claims, alice.principal())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"cnf": None}, "lacks the required claim 'cnf'"),
        ({"exp": None}, "lacks the required claim 'exp'"),
        ({"jti": None}, "lacks the required claim 'jti'"),
        ({"iss": "someone-else"}, "not issued by 'ipspace-ca'"),
        ({"cnf": {"x5t": "abc"}}, "not bound to a TLS certificate"),
        ({"cnf": {"x5t#S256": "é" * 43}}, "not a base64url SHA-256 thumbprint"),
        ({"exp": int(NOW.timestamp()) + 600.5}, "'exp' is not a whole number"),
        ({"role": "admin"}, "unknown role 'admin'"),
        ({"org": "a b"}, "org 'a b' is not allowed"),
    ],
)
def test_ca_signed_token_with_bad_claims_is_refused(ca_dir, ca, alice, change, reason):
    claims = {**_good_claims(alice), **change}
    claims = {key: value for key, value in claims.items() if value is not None}
    with pytest.raises(InvalidToken, match=reason):
        verify_token(_ca_signed(ca_dir, claims), ca.cert_pem, now=NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "...", None, b"bytes.are.not"])
def test_malformed_tokens_are_refused(ca, garbage):
    with pytest.raises(InvalidToken):
        verify_token(garbage, ca.cert_pem, now=NOW)


def test_issue_token_refuses_nonsense(ca, alice):
    with pytest.raises(ValueError, match="positive"):
        ca.issue_token(alice.principal(), ttl=timedelta(0))
    unbound = dataclasses.replace(alice.principal(), tls_thumbprint="")
    with pytest.raises(ValueError, match="bound"):
        ca.issue_token(unbound)
