"""A member's identity (key handle) and the two checks that prove who a peer is.

An identity holds two CA-issued certificates with the same subject: a TLS certificate (ECDSA P-256, for
mTLS) and a signing certificate (Ed25519, for signatures over canonical JSON). Each is accepted only for its
own purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import NoReturn, TypeVar

from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import Certificate

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
from crypto._secret_access import TOKEN, SecretKeyAccess
from crypto._x509 import (
    Purpose,
    certificate_pem,
    load_ca_certificate,
    load_certificate,
    principal_of,
    thumbprint,
    verify_issued_certificate,
)
from crypto.errors import InvalidCertificate, InvalidKeyFile, InvalidSignature
from crypto.principal import Principal, Role, parse_role

__all__ = [
    "Identity",
    "Principal",
    "Role",
    "parse_role",
    "principal_from_tls_certificate",
    "verify_signature",
]

_T = TypeVar("_T")

TLS_CERT_FILE = "tls.crt"
TLS_KEY_FILE = "tls.key"
SIGNING_CERT_FILE = "sign.crt"
SIGNING_KEY_FILE = "sign.key"
CA_CERT_FILE = "ca.crt"


class Identity:
    """A member's key handle: both certificates, both private keys, and the CA certificate they chain to.

    Made by `CertificateAuthority.issue` or `Identity.load`. It refuses pickling and its repr shows no
    secret; private key bytes leave it only through `save` or `tls_key_pem(TOKEN)`.
    """

    __slots__ = ("_ca_cert", "_principal", "_signing_cert", "_signing_key", "_tls_cert", "_tls_key")

    def __init__(
        self,
        *,
        tls_cert: Certificate,
        tls_key: ec.EllipticCurvePrivateKey,
        signing_cert: Certificate,
        signing_key: ed25519.Ed25519PrivateKey,
        ca_cert: Certificate,
    ) -> None:
        """Raise InvalidKeyFile if a key does not match its certificate, InvalidCertificate if the two
        certificates name different subjects."""
        _require_matching_key(tls_cert, tls_key, "TLS")
        _require_matching_key(signing_cert, signing_key, "signing")
        principal = principal_of(tls_cert, thumbprint(tls_cert))
        signer = principal_of(signing_cert, "")
        if (signer.name, signer.org, signer.role) != (principal.name, principal.org, principal.role):
            raise InvalidCertificate("the TLS and signing certificates name different subjects")
        self._tls_cert = tls_cert
        self._tls_key = tls_key
        self._signing_cert = signing_cert
        self._signing_key = signing_key
        self._ca_cert = ca_cert
        self._principal = principal

    @property
    def name(self) -> str:
        return self._principal.name

    @property
    def org(self) -> str:
        return self._principal.org

    @property
    def role(self) -> Role:
        return self._principal.role

    @property
    def tls_cert_pem(self) -> bytes:
        return certificate_pem(self._tls_cert)

    @property
    def signing_cert_pem(self) -> bytes:
        return certificate_pem(self._signing_cert)

    @property
    def ca_cert_pem(self) -> bytes:
        return certificate_pem(self._ca_cert)

    def principal(self) -> Principal:
        """This identity as its peers see it over mTLS (with the TLS certificate's thumbprint)."""
        return self._principal

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature over `message` with the signing key; verify it with `verify_signature`."""
        if not isinstance(message, bytes):
            raise TypeError(f"message must be bytes, not {type(message).__name__}")
        return self._signing_key.sign(message)

    def tls_key_pem(self, access: SecretKeyAccess) -> bytes:
        """The TLS private key as PKCS#8 PEM; `access` must be `crypto._secret_access.TOKEN`."""
        return private_key_pem(self._tls_key, access)

    def save(self, directory: Path) -> None:
        """Write tls.crt tls.key sign.crt sign.key ca.crt into `directory`; keys get mode 0600.

        Raises FileExistsError (before writing anything) if any of the files already exists.
        """
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = [
            (TLS_CERT_FILE, self.tls_cert_pem, PUBLIC_MODE),
            (TLS_KEY_FILE, private_key_pem(self._tls_key, TOKEN), PRIVATE_MODE),
            (SIGNING_CERT_FILE, self.signing_cert_pem, PUBLIC_MODE),
            (SIGNING_KEY_FILE, private_key_pem(self._signing_key, TOKEN), PRIVATE_MODE),
            (CA_CERT_FILE, self.ca_cert_pem, PUBLIC_MODE),
        ]
        refuse_existing([directory / file_name for file_name, _, _ in files])
        for file_name, data, mode in files:
            write_new_file(directory / file_name, data, mode)

    @classmethod
    def load(cls, directory: Path, *, now: datetime | None = None) -> Identity:
        """Read an identity saved by `save` and check it is usable at `now`.

        Raises FileNotFoundError naming a missing file, InvalidKeyFile for a malformed or mismatched key,
        InvalidCertificate (prefixed with the file's path) if a certificate is malformed, not issued by the
        saved CA, of the wrong kind, or outside its validity at `now`.
        """
        directory = Path(directory)
        at = resolve_now(now)
        ca_path = directory / CA_CERT_FILE
        ca_cert = _with_path(ca_path, lambda: load_ca_certificate(read_file(ca_path, "CA certificate")))
        tls_cert = _load_leaf(directory / TLS_CERT_FILE, "TLS certificate", ca_cert, Purpose.TLS, at)
        signing_cert = _load_leaf(
            directory / SIGNING_CERT_FILE, "signing certificate", ca_cert, Purpose.SIGNING, at
        )
        tls_key = load_private_key(directory / TLS_KEY_FILE, ec.EllipticCurvePrivateKey, "TLS key")
        signing_key = load_private_key(directory / SIGNING_KEY_FILE, ed25519.Ed25519PrivateKey, "signing key")
        return cls(
            tls_cert=tls_cert,
            tls_key=tls_key,
            signing_cert=signing_cert,
            signing_key=signing_key,
            ca_cert=ca_cert,
        )

    def __repr__(self) -> str:
        return f"Identity(name={self.name!r}, org={self.org!r}, role={self.role.value!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Identity holds private keys and cannot be pickled or copied")


def principal_from_tls_certificate(
    cert_pem_or_der: bytes, ca_cert_pem: bytes, *, now: datetime | None = None
) -> Principal:
    """Return the principal named by a peer's TLS certificate.

    Guarantees the certificate is a TLS certificate (EKU serverAuth+clientAuth, P-256 key) issued by the CA
    in `ca_cert_pem`, and that both are valid at `now`. A signing certificate is refused. Raises
    InvalidCertificate with the reason for any failure, malformed input included.
    """
    cert = load_certificate(cert_pem_or_der, "peer certificate")
    ca = load_ca_certificate(ca_cert_pem)
    verify_issued_certificate(cert, ca, Purpose.TLS, resolve_now(now))
    return principal_of(cert, thumbprint(cert))


def verify_signature(
    signing_cert_pem: bytes,
    ca_cert_pem: bytes,
    message: bytes,
    signature: bytes,
    *,
    now: datetime | None = None,
) -> Principal:
    """Check an Ed25519 signature and return who made it.

    First the signing certificate must be a signing certificate (documentSigning, Ed25519) issued by the CA
    and valid at `now` (else InvalidCertificate; a TLS certificate is refused); then `signature` must be
    valid over `message` (else InvalidSignature). The returned principal has an empty `tls_thumbprint`.
    """
    cert = load_certificate(signing_cert_pem, "signing certificate")
    ca = load_ca_certificate(ca_cert_pem)
    verify_issued_certificate(cert, ca, Purpose.SIGNING, resolve_now(now))
    signer = principal_of(cert, "")
    if not isinstance(message, bytes) or not isinstance(signature, bytes):
        raise InvalidSignature("message and signature must be bytes")
    public_key = cert.public_key()
    if not isinstance(public_key, ed25519.Ed25519PublicKey):  # already refused by the purpose check
        raise InvalidCertificate("not a signing certificate: the key is not Ed25519")
    try:
        public_key.verify(signature, message)
    except _CryptographyInvalidSignature:
        raise InvalidSignature(
            f"signature does not match the message for {signer.org}/{signer.name}"
        ) from None
    return signer


def _require_matching_key(
    cert: Certificate, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, what: str
) -> None:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise InvalidKeyFile(f"the {what} key does not match the {what} certificate")


def _load_leaf(path: Path, what: str, ca: Certificate, purpose: Purpose, now: datetime) -> Certificate:
    def load() -> Certificate:
        cert = load_certificate(read_file(path, what), what)
        verify_issued_certificate(cert, ca, purpose, now)
        return cert

    return _with_path(path, load)


def _with_path(path: Path, action: Callable[[], _T]) -> _T:
    try:
        return action()
    except InvalidCertificate as exc:
        raise InvalidCertificate(f"{path}: {exc}") from None
