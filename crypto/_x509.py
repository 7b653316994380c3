"""X.509 plumbing shared by the CA and the verifiers: parsing, subjects, thumbprints, chain checks.

Private on purpose: callers use `crypto.identity` (principal_from_tls_certificate, verify_signature), which
wraps these with the right purpose. Every failure here is an `InvalidCertificate` with a reason.
"""

from __future__ import annotations

import base64
from datetime import datetime
from enum import Enum
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from crypto.errors import InvalidCertificate
from crypto.principal import Principal, Role, check_label, parse_role

# id-kp-documentSigning (RFC 9336): marks the signing certificate as "not for TLS" in every TLS stack.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
TLS_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)

_Extension = TypeVar("_Extension", bound=x509.ExtensionType)

# Errors cryptography raises while parsing lazily-decoded parts of a certificate.
_PARSE_ERRORS = (ValueError, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


class Purpose(Enum):
    """What a leaf certificate is for; each purpose accepts exactly one kind of certificate."""

    TLS = "TLS"
    SIGNING = "signing"


def load_certificate(data: bytes | str, what: str = "certificate") -> x509.Certificate:
    """Parse one PEM or DER certificate; raise InvalidCertificate (never another type) if it is not one."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidCertificate(f"{what} is malformed: PEM text must be ASCII") from None
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidCertificate(f"{what} must be PEM or DER bytes, not {type(data).__name__}")
    raw = bytes(data).lstrip()
    if raw.startswith(b"-----BEGIN") and not raw.startswith(b"-----BEGIN CERTIFICATE-----"):
        label = raw.split(b"\n", 1)[0].decode("ascii", "replace").strip()
        raise InvalidCertificate(f"{what} is a PEM block of another kind ({label}), not a certificate")
    try:
        if raw.startswith(b"-----BEGIN CERTIFICATE-----"):
            cert = x509.load_pem_x509_certificate(raw)
        else:
            cert = x509.load_der_x509_certificate(raw)
    except (ValueError, x509.InvalidVersion):
        raise InvalidCertificate(f"{what} is malformed: not a PEM or DER X.509 certificate") from None
    _decode_everything(cert, what)
    return cert


def _decode_everything(cert: x509.Certificate, what: str) -> None:
    """Parse the parts cryptography decodes lazily, so a malformed one fails here as InvalidCertificate
    instead of as some other exception deep inside a later check."""
    try:
        _ = (cert.version, cert.issuer, cert.subject, cert.not_valid_before_utc, cert.not_valid_after_utc)
        _ = (list(cert.extensions), cert.public_key(), cert.signature_hash_algorithm)
    except _PARSE_ERRORS:
        raise InvalidCertificate(f"{what} is malformed: a field cannot be decoded") from None
    except UnsupportedAlgorithm:
        raise InvalidCertificate(f"{what} uses an unsupported key or signature algorithm") from None
    # cryptography ignores the "unused bits" octet of the signature BIT STRING, so a certificate with
    # that octet changed would verify yet have another DER and thumbprint. DER demands 0: insist on it.
    signature_field = b"\x03" + _der_length(len(cert.signature) + 1) + b"\x00" + cert.signature
    if not cert.public_bytes(serialization.Encoding.DER).endswith(signature_field):
        raise InvalidCertificate(f"{what} is malformed: its signature is not DER encoded")


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def load_ca_certificate(data: bytes | str) -> x509.Certificate:
    """Parse the data space's CA certificate and check that it is a CA; raise InvalidCertificate otherwise."""
    ca = load_certificate(data, "CA certificate")
    constraints = _extension(ca, x509.BasicConstraints, "CA certificate")
    if constraints is None or not constraints.ca:
        raise InvalidCertificate(
            "CA certificate is not a certificate authority (BasicConstraints ca is not set)"
        )
    return ca


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def thumbprint(cert: x509.Certificate) -> str:
    """RFC 8705 `x5t#S256`: base64url (no padding) of SHA-256 over the certificate's DER."""
    return base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode("ascii")


def subject_for(name: str, org: str, role: Role) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
        ]
    )


def principal_of(cert: x509.Certificate, tls_thumbprint: str) -> Principal:
    """Read CN/O/OU from the subject; raise InvalidCertificate unless each is present once and well formed."""
    try:
        parts = [_single_attribute(cert, oid, label) for oid, label in _SUBJECT_PARTS]
    except _PARSE_ERRORS:
        raise InvalidCertificate("certificate subject is malformed") from None
    name, org, role = parts
    try:
        return Principal(check_label("name", name), check_label("org", org), parse_role(role), tls_thumbprint)
    except ValueError as exc:
        raise InvalidCertificate(f"certificate subject is not one of this data space's: {exc}") from None


_SUBJECT_PARTS = (
    (NameOID.COMMON_NAME, "CN (name)"),
    (NameOID.ORGANIZATION_NAME, "O (org)"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)"),
)


def _single_attribute(cert: x509.Certificate, oid: ObjectIdentifier, label: str) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        raise InvalidCertificate(f"certificate subject must hold exactly one {label}, found {len(values)}")
    return values[0].value


def verify_issued_certificate(
    cert: x509.Certificate, ca: x509.Certificate, purpose: Purpose, now: datetime
) -> None:
    """Check that `cert` is a leaf for `purpose`, issued by `ca`, and that both are valid at `now`.

    The friendly checks (validity windows, issuer, signature, usage) run first so the reason is specific;
    then cryptography's RFC 5280 path validation runs as well, so nothing the hand checks miss gets through.
    Raises InvalidCertificate with the reason.
    """
    _check_window(ca, now, "this data space's CA certificate")
    _check_window(cert, now, "certificate")
    if cert.issuer != ca.subject:
        raise InvalidCertificate(
            f"certificate issued by '{cert.issuer.rfc4514_string()}', "
            f"not by this data space's CA ('{ca.subject.rfc4514_string()}')"
        )
    try:
        cert.verify_directly_issued_by(ca)
    except (_CryptographyInvalidSignature, ValueError, TypeError):
        raise InvalidCertificate("certificate not signed by this data space's CA") from None
    _check_usage(cert, purpose)
    _validate_path(cert, ca, purpose, now)


def _check_window(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise InvalidCertificate(f"{what} not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise InvalidCertificate(f"{what} expired at {cert.not_valid_after_utc.isoformat()}")


def _check_usage(cert: x509.Certificate, purpose: Purpose) -> None:
    constraints = _extension(cert, x509.BasicConstraints, "certificate")
    if constraints is not None and constraints.ca:
        raise InvalidCertificate("certificate is a CA certificate, not a member's certificate")
    key_usage = _extension(cert, x509.KeyUsage, "certificate")
    if key_usage is None or not key_usage.digital_signature or key_usage.key_cert_sign:
        raise InvalidCertificate("certificate key usage does not allow digital signatures by a member")
    extended = _extension(cert, x509.ExtendedKeyUsage, "certificate")
    usages = set(extended) if extended is not None else set()
    key = cert.public_key()
    if purpose is Purpose.TLS:
        if not set(TLS_USAGES) <= usages:
            raise InvalidCertificate(
                "not a TLS certificate: extended key usage lacks serverAuth and clientAuth"
            )
        if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
            raise InvalidCertificate("not a TLS certificate: the key is not ECDSA P-256")
    else:
        if DOCUMENT_SIGNING not in usages or usages & set(TLS_USAGES):
            raise InvalidCertificate(
                "not a signing certificate: extended key usage is not documentSigning only"
            )
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise InvalidCertificate("not a signing certificate: the key is not Ed25519")


def _validate_path(cert: x509.Certificate, ca: x509.Certificate, purpose: Purpose, now: datetime) -> None:
    builder = verification.PolicyBuilder().store(verification.Store([ca])).time(now)
    if purpose is Purpose.SIGNING:
        # The default leaf policy demands the clientAuth EKU; signing certs carry documentSigning instead,
        # which _check_usage has already enforced.
        builder = builder.extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
    try:
        builder.build_client_verifier().verify(cert, [])
    except verification.VerificationError as exc:
        raise InvalidCertificate(f"certificate failed path validation: {exc}") from None


def _extension(cert: x509.Certificate, kind: type[_Extension], what: str) -> _Extension | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except _PARSE_ERRORS:
        raise InvalidCertificate(f"{what} has malformed extensions") from None
