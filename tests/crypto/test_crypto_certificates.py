"""The CA, identities, and which certificates count as whose principal."""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import pickle
import shutil
import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import CertificateAuthority, Identity, Role, principal_from_tls_certificate
from crypto._secret_access import TOKEN
from crypto.errors import InvalidCertificate, InvalidKeyFile

NOW = datetime.now(UTC).replace(microsecond=0)
CA_START = NOW - timedelta(days=30)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"), now=CA_START, days=3650)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    # Same default name as `ca`: only the signature tells them apart.
    return CertificateAuthority.create(tmp_path_factory.mktemp("other-ca"), now=CA_START, days=3650)


@pytest.fixture(scope="module")
def alice(ca: CertificateAuthority) -> Identity:
    return ca.issue("alice-node", "acme", Role.PROVIDER, hosts=["127.0.0.1", "alice.example", "::1"])


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


# --- the CA -------------------------------------------------------------------------------------------


def test_ca_create_then_load_round_trips(tmp_path):
    created = CertificateAuthority.create(tmp_path / "ca")
    loaded = CertificateAuthority.load(tmp_path / "ca")
    assert loaded.cert_pem == created.cert_pem
    member = loaded.issue("bob", "beta", "consumer")
    # Issued by the loaded CA, accepted against the certificate of the one that was created.
    assert principal_from_tls_certificate(member.tls_cert_pem, created.cert_pem).name == "bob"
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600


def test_ca_create_refuses_to_overwrite(tmp_path):
    CertificateAuthority.create(tmp_path)
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(FileExistsError):
        CertificateAuthority.create(tmp_path)
    assert (tmp_path / "ca.key").read_bytes() == before


def test_ca_load_reports_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ca\.crt"):
        CertificateAuthority.load(tmp_path)


def test_ca_certificate_is_a_path_length_zero_ca(ca):
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"


def test_ca_and_identity_refuse_pickling_and_hide_secrets(ca, alice):
    for handle in (ca, alice):
        with pytest.raises(TypeError):
            pickle.dumps(handle)
        with pytest.raises(TypeError):
            copy.deepcopy(handle)
    assert repr(alice) == "Identity(name='alice-node', org='acme', role='provider')"
    assert "PRIVATE" not in repr(ca) + str(alice)


# --- issuing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_issue_each_role_gives_the_principal_back(ca, role):
    member = ca.issue(f"m-{role.value}", "org.1", role, now=NOW)
    principal = principal_from_tls_certificate(member.tls_cert_pem, ca.cert_pem, now=NOW)
    assert (principal.name, principal.org, principal.role) == (f"m-{role.value}", "org.1", role)
    expected = base64.urlsafe_b64encode(hashlib.sha256(_der(member.tls_cert_pem)).digest()).rstrip(b"=")
    assert principal.tls_thumbprint == expected.decode()
    assert member.principal() == principal


def test_tls_certificate_carries_subject_usage_and_hosts(ca, alice):
    cert = x509.load_pem_x509_certificate(alice.tls_cert_pem)
    subject = {attr.oid: attr.value for attr in cert.subject}
    assert subject == {
        NameOID.COMMON_NAME: "alice-node",
        NameOID.ORGANIZATION_NAME: "acme",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "provider",
    }
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["alice-node", "alice.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_key_id


def test_signing_certificate_has_ed25519_key_and_no_tls_usage(alice):
    cert = x509.load_pem_x509_certificate(alice.signing_cert_pem)
    assert cert.public_key_algorithm_oid == x509.oid.PublicKeyAlgorithmOID.ED25519
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment and not usage.key_cert_sign
    eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert not eku & {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.subject == x509.load_pem_x509_certificate(alice.tls_cert_pem).subject


UNSAFE_LABELS = ["", "a" * 65, "has space", "-leading", ".hidden", "a/b", "x\n", "ünï", "a:b", "a\x00"]


@pytest.mark.parametrize("bad", UNSAFE_LABELS)
def test_issue_refuses_unsafe_names_and_orgs(ca, bad):
    with pytest.raises(ValueError, match="not allowed"):
        ca.issue(bad, "acme", Role.PROVIDER)
    with pytest.raises(ValueError, match="not allowed"):
        ca.issue("node", bad, Role.PROVIDER)


def test_issue_accepts_the_longest_allowed_name(ca):
    assert ca.issue("n" * 64, "o" * 64, "builder").name == "n" * 64


def test_issue_refuses_unknown_role_naming_the_accepted_ones(ca):
    with pytest.raises(ValueError, match=r"unknown role 'admin'.*provider, builder, consumer, regulator"):
        ca.issue("node", "acme", "admin")


@pytest.mark.parametrize("hosts", [["bad host"], ["a..b"], ["http://x"], "localhost"])
def test_issue_refuses_bad_hosts(ca, hosts):
    with pytest.raises(ValueError, match="host"):
        ca.issue("node", "acme", Role.PROVIDER, hosts=hosts)


def test_issue_refuses_a_time_outside_the_ca_validity(ca):
    with pytest.raises(InvalidCertificate, match="CA certificate is valid from"):
        ca.issue("node", "acme", Role.PROVIDER, now=CA_START - timedelta(days=1))


def test_leaf_validity_never_outlives_the_ca(ca):
    member = ca.issue("node", "acme", Role.PROVIDER, days=100_000, now=NOW)
    leaf = x509.load_pem_x509_certificate(member.tls_cert_pem)
    assert leaf.not_valid_after_utc == x509.load_pem_x509_certificate(ca.cert_pem).not_valid_after_utc


def test_naive_now_is_refused(ca):
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.issue("node", "acme", Role.PROVIDER, now=datetime(2026, 1, 1))


# --- principal_from_tls_certificate -------------------------------------------------------------------


def test_principal_accepts_der_as_well_as_pem(ca, alice):
    assert principal_from_tls_certificate(_der(alice.tls_cert_pem), ca.cert_pem) == alice.principal()


def test_certificate_from_another_ca_is_rejected(ca, other_ca):
    stranger = other_ca.issue("alice-node", "acme", Role.PROVIDER)
    with pytest.raises(InvalidCertificate, match="not signed by this data space's CA"):
        principal_from_tls_certificate(stranger.tls_cert_pem, ca.cert_pem)


def test_certificate_from_a_differently_named_ca_is_rejected(tmp_path, ca):
    foreign = CertificateAuthority.create(tmp_path, name="Some other CA")
    stranger = foreign.issue("alice-node", "acme", Role.PROVIDER)
    with pytest.raises(InvalidCertificate, match="issued by 'CN=Some other CA'"):
        principal_from_tls_certificate(stranger.tls_cert_pem, ca.cert_pem)


def test_expired_certificate_is_rejected_and_was_valid_before(ca):
    issued_at = NOW - timedelta(days=10)
    member = ca.issue("old", "acme", Role.CONSUMER, days=1, now=issued_at)
    assert principal_from_tls_certificate(member.tls_cert_pem, ca.cert_pem, now=issued_at).name == "old"
    with pytest.raises(InvalidCertificate, match="certificate expired at"):
        principal_from_tls_certificate(member.tls_cert_pem, ca.cert_pem)


def test_not_yet_valid_certificate_is_rejected(ca):
    member = ca.issue("future", "acme", Role.CONSUMER, now=NOW + timedelta(days=2))
    with pytest.raises(InvalidCertificate, match="not valid before"):
        principal_from_tls_certificate(member.tls_cert_pem, ca.cert_pem, now=NOW)


def test_signing_certificate_is_not_a_tls_principal(ca, alice):
    with pytest.raises(InvalidCertificate, match="not a TLS certificate"):
        principal_from_tls_certificate(alice.signing_cert_pem, ca.cert_pem)


def test_ca_certificate_is_not_a_member_principal(ca):
    with pytest.raises(InvalidCertificate, match="CA certificate, not a member"):
        principal_from_tls_certificate(ca.cert_pem, ca.cert_pem)


def test_a_member_certificate_cannot_act_as_the_ca(alice):
    with pytest.raises(InvalidCertificate, match="not a certificate authority"):
        principal_from_tls_certificate(alice.tls_cert_pem, alice.tls_cert_pem)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "zürich", None, 42],
)
def test_malformed_input_raises_invalid_certificate_only(ca, garbage):
    with pytest.raises(InvalidCertificate):
        principal_from_tls_certificate(garbage, ca.cert_pem)
    with pytest.raises(InvalidCertificate):
        principal_from_tls_certificate(ca.cert_pem, garbage)


def test_pem_of_another_kind_is_named_in_the_reason(ca, alice):
    with pytest.raises(InvalidCertificate, match="PRIVATE KEY"):
        principal_from_tls_certificate(alice.tls_key_pem(TOKEN), ca.cert_pem)


def _tls_der_whose_signature_ends_with_a_zero_bit(ca: CertificateAuthority) -> bytes:
    """A certificate where setting the BIT STRING's "unused bits" octet to 1 still parses: the case a
    lenient parser accepts. Half of all signatures end with a 0 bit, so a few tries suffice."""
    for _ in range(64):
        der = _der(ca.issue("flip", "acme", Role.PROVIDER, now=NOW).tls_cert_pem)
        if der[-1] & 1 == 0:
            return der
    raise AssertionError("no signature ending with a 0 bit in 64 tries")


def test_signature_with_nonzero_unused_bits_is_not_der_and_is_rejected(ca):
    der = _tls_der_whose_signature_ends_with_a_zero_bit(ca)
    signature_length = len(x509.load_der_x509_certificate(der).signature)
    unused_bits_at = len(der) - signature_length - 1
    assert der[unused_bits_at] == 0
    altered = der[:unused_bits_at] + b"\x01" + der[unused_bits_at + 1 :]
    with pytest.raises(InvalidCertificate, match="not DER encoded"):
        principal_from_tls_certificate(altered, ca.cert_pem, now=NOW)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_every_single_bit_flip_of_a_certificate_is_rejected(ca):
    der = _tls_der_whose_signature_ends_with_a_zero_bit(ca)
    accepted, other_errors = [], []
    for index in range(len(der)):
        for bit in range(8):
            altered = bytearray(der)
            altered[index] ^= 1 << bit
            try:
                principal_from_tls_certificate(bytes(altered), ca.cert_pem, now=NOW)
                accepted.append((index, bit))
            except InvalidCertificate:
                pass
            except Exception as exc:  # noqa: BLE001 - the point is that no other type escapes
                other_errors.append((index, bit, repr(exc)))
    assert accepted == []
    assert other_errors == []


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=300))
def test_random_bytes_are_rejected(ca, blob):
    with pytest.raises(InvalidCertificate):
        principal_from_tls_certificate(blob, ca.cert_pem)


# --- saving and loading identities --------------------------------------------------------------------


def test_identity_save_load_round_trip_with_private_key_modes(tmp_path, ca, alice):
    alice.save(tmp_path / "alice")
    names = sorted(p.name for p in (tmp_path / "alice").iterdir())
    assert names == ["ca.crt", "sign.crt", "sign.key", "tls.crt", "tls.key"]
    for key_file in ("tls.key", "sign.key"):
        assert stat.S_IMODE((tmp_path / "alice" / key_file).stat().st_mode) == 0o600
    loaded = Identity.load(tmp_path / "alice")
    assert loaded.principal() == alice.principal()
    assert loaded.tls_key_pem(TOKEN) == alice.tls_key_pem(TOKEN)
    assert loaded.ca_cert_pem == ca.cert_pem


def test_identity_save_refuses_to_overwrite(tmp_path, alice):
    alice.save(tmp_path)
    (tmp_path / "tls.crt").unlink()
    with pytest.raises(FileExistsError):
        alice.save(tmp_path)
    assert not (tmp_path / "tls.crt").exists()  # nothing written when refusing


def test_identity_load_names_the_missing_file(tmp_path, alice):
    alice.save(tmp_path)
    (tmp_path / "sign.key").unlink()
    with pytest.raises(FileNotFoundError, match=r"sign\.key"):
        Identity.load(tmp_path)


def test_identity_load_refuses_a_key_of_another_identity(tmp_path, ca, alice):
    alice.save(tmp_path / "alice")
    ca.issue("mallory", "acme", Role.PROVIDER).save(tmp_path / "mallory")
    shutil.copy(tmp_path / "mallory" / "tls.key", tmp_path / "alice" / "tls.key")
    with pytest.raises(InvalidKeyFile, match="does not match"):
        Identity.load(tmp_path / "alice")


def test_identity_load_refuses_mixed_subjects(tmp_path, ca, alice):
    alice.save(tmp_path / "alice")
    ca.issue("mallory", "acme", Role.PROVIDER).save(tmp_path / "mallory")
    for name in ("sign.crt", "sign.key"):
        shutil.copy(tmp_path / "mallory" / name, tmp_path / "alice" / name)
    with pytest.raises(InvalidCertificate, match="different subjects"):
        Identity.load(tmp_path / "alice")


def test_identity_load_refuses_garbage_key(tmp_path, alice):
    alice.save(tmp_path)
    (tmp_path / "tls.key").write_bytes(b"not a key")
    with pytest.raises(InvalidKeyFile, match=r"tls\.key"):
        Identity.load(tmp_path)


def test_identity_load_refuses_an_expired_identity(tmp_path, ca):
    ca.issue("old", "acme", Role.PROVIDER, days=1, now=NOW - timedelta(days=5)).save(tmp_path)
    with pytest.raises(InvalidCertificate, match=r"tls.crt: certificate expired at"):
        Identity.load(tmp_path)
    assert Identity.load(tmp_path, now=NOW - timedelta(days=5)).name == "old"


def test_secret_export_needs_the_access_token(alice):
    with pytest.raises(TypeError, match="TOKEN"):
        alice.tls_key_pem(None)
    assert alice.tls_key_pem(TOKEN).startswith(b"-----BEGIN PRIVATE KEY-----")
