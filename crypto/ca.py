"""The data space's certificate authority: issues identities (two certificates each) and access tokens.

The CA key is ECDSA P-256 because gRPC's TLS stack refuses Ed25519 certificates in the chain (measured:
the handshake fails with NO_COMMON_SIGNATURE_ALGORITHMS).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from crypto._clock import resolve_now
from crypto._keyfiles import (
    PRIVATE_MODE,
    PUBLIC_MODE,
    load_private_key,
    private_key_pem,
    read_file,
    refuse_existing,
    write_new_file,
)
from crypto._secret_access import TOKEN
from crypto._x509 import DOCUMENT_SIGNING, TLS_USAGES, certificate_pem, load_ca_certificate, subject_for
from crypto.errors import InvalidCertificate, InvalidKeyFile
from crypto.identity import Identity
from crypto.principal import Principal, Role, check_host, check_label, parse_role
from crypto.tokens import sign_token

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
# Certificates start a little in the past so a peer whose clock lags ours still accepts them.
_CLOCK_SKEW = timedelta(minutes=5)
_MAX_CA_NAME = 64


class CertificateAuthority:
    """The CA key handle. Refuses pickling; its repr shows only the subject."""

    __slots__ = ("_cert", "_key")

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        """Raise InvalidKeyFile if `key` is not the key of `cert`."""
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            raise InvalidKeyFile("the CA key does not match the CA certificate")
        self._cert = cert
        self._key = key

    @property
    def cert_pem(self) -> bytes:
        return certificate_pem(self._cert)

    @classmethod
    def create(
        cls, directory: Path, name: str = "IP data space CA", *, days: int = 3650, now: datetime | None = None
    ) -> CertificateAuthority:
        """Make a new CA key and self-signed certificate and write ca.crt and ca.key (0600) into `directory`.

        Raises FileExistsError (writing nothing) if either file exists, ValueError for a bad name or days.
        """
        if not isinstance(name, str) or not 1 <= len(name) <= _MAX_CA_NAME or not name.isprintable():
            raise ValueError(f"CA name {name!r} must be 1 to {_MAX_CA_NAME} printable characters")
        _require_positive_days(days)
        at = resolve_now(now)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(at - _CLOCK_SKEW)
            .not_valid_after(at + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        refuse_existing([directory / CA_CERT_FILE, directory / CA_KEY_FILE])
        write_new_file(directory / CA_KEY_FILE, private_key_pem(key, TOKEN), PRIVATE_MODE)
        write_new_file(directory / CA_CERT_FILE, certificate_pem(cert), PUBLIC_MODE)
        return cls(cert, key)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Read ca.crt and ca.key; raise FileNotFoundError, InvalidCertificate or InvalidKeyFile."""
        directory = Path(directory)
        cert = load_ca_certificate(read_file(directory / CA_CERT_FILE, "CA certificate"))
        key = load_private_key(directory / CA_KEY_FILE, ec.EllipticCurvePrivateKey, "CA key")
        return cls(cert, key)

    def issue(
        self,
        name: str,
        org: str,
        role: Role | str,
        *,
        hosts: Sequence[str] = (),
        days: int = 365,
        now: datetime | None = None,
    ) -> Identity:
        """Issue a new identity: fresh P-256 TLS key and Ed25519 signing key, one certificate each.

        The TLS certificate's SAN holds `name` as a DNS name plus each of `hosts` (DNS name or IP address).
        Validity starts at `now` (less a few minutes of clock skew) and ends `days` later, or when the CA
        certificate ends if sooner. Raises ValueError for a bad name, org, role, host or days, and
        InvalidCertificate if the CA certificate is not valid at `now`.
        """
        check_label("name", name)
        check_label("org", org)
        member_role = parse_role(role)
        if isinstance(hosts, str):
            raise ValueError("hosts must be a sequence of host names, not a single string")
        alt_names = _alt_names(name, hosts)
        _require_positive_days(days)
        at = resolve_now(now)
        if not self._cert.not_valid_before_utc <= at <= self._cert.not_valid_after_utc:
            raise InvalidCertificate(
                f"this data space's CA certificate is valid from "
                f"{self._cert.not_valid_before_utc.isoformat()} to "
                f"{self._cert.not_valid_after_utc.isoformat()}, not at {at.isoformat()}"
            )
        not_before = max(at - _CLOCK_SKEW, self._cert.not_valid_before_utc)
        not_after = min(at + timedelta(days=days), self._cert.not_valid_after_utc)
        subject = subject_for(name, org, member_role)

        tls_key = ec.generate_private_key(ec.SECP256R1())
        tls_cert = self._sign(
            self._leaf_builder(
                subject, tls_key.public_key(), not_before, not_after, list(TLS_USAGES)
            ).add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        )
        signing_key = ed25519.Ed25519PrivateKey.generate()
        signing_cert = self._sign(
            self._leaf_builder(subject, signing_key.public_key(), not_before, not_after, [DOCUMENT_SIGNING])
        )
        return Identity(
            tls_cert=tls_cert,
            tls_key=tls_key,
            signing_cert=signing_cert,
            signing_key=signing_key,
            ca_cert=self._cert,
        )

    def issue_token(
        self, principal: Principal, *, ttl: timedelta = timedelta(hours=1), now: datetime | None = None
    ) -> str:
        """An ES256 token naming `principal`, bound to its TLS certificate (RFC 8705), valid for `ttl`."""
        return sign_token(self._key, principal, ttl=ttl, now=now)

    def _leaf_builder(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        not_before: datetime,
        not_after: datetime,
        usages: list[x509.ObjectIdentifier],
    ) -> x509.CertificateBuilder:
        try:
            issuer_key_id = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:  # a CA made elsewhere; derive the identifier the same way ours is
            issuer_key_id = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id), critical=False
            )
        )

    def _sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self._key, hashes.SHA256())

    def __repr__(self) -> str:
        return f"CertificateAuthority(subject={self._cert.subject.rfc4514_string()!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("CertificateAuthority holds the CA private key and cannot be pickled or copied")


def _alt_names(name: str, hosts: Sequence[str]) -> list[x509.GeneralName]:
    """SAN entries: the member's name first (so peers can pin it as the TLS target name), then `hosts`."""
    entries: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        parsed = check_host(host)
        entry = x509.DNSName(parsed) if isinstance(parsed, str) else x509.IPAddress(parsed)
        if entry not in entries:
            entries.append(entry)
    return entries


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _require_positive_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise ValueError(f"days must be a positive whole number, not {days!r}")
