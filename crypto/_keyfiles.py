"""Reading and writing key and certificate files with safe permissions.

Private keys are created with mode 0600 from the first byte (os.open with O_CREAT|O_EXCL), never written
first and restricted afterwards, and an existing file is never overwritten.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from crypto._secret_access import SecretKeyAccess, require_access
from crypto.errors import InvalidKeyFile

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644

_Key = TypeVar("_Key", ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)


def private_key_pem(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, access: SecretKeyAccess
) -> bytes:
    """Serialize a private key as unencrypted PKCS#8 PEM; needs the secret-access token."""
    require_access(access)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def refuse_existing(paths: list[Path]) -> None:
    """Raise FileExistsError naming the first path that exists, before anything is written."""
    for path in paths:
        if path.exists() or path.is_symlink():
            raise FileExistsError(
                errno.EEXIST, "refusing to overwrite an existing key or certificate file", str(path)
            )


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` and write `data`; raise FileExistsError if it exists (symlinks included)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask may only have narrowed it; make it exact
        handle.write(data)


def read_file(path: Path, what: str) -> bytes:
    """Read a whole file; a missing one raises FileNotFoundError naming the path and what it should hold."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} is missing", str(path)) from None


def load_private_key(path: Path, kind: type[_Key], what: str) -> _Key:
    """Read a PEM private key of type `kind`; raise InvalidKeyFile if it is malformed or of another type."""
    data = read_file(path, what)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidKeyFile(f"{what} at {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, kind):
        raise InvalidKeyFile(f"{what} at {path} holds a {type(key).__name__}, expected {kind.__name__}")
    return key
