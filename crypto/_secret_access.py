"""The token that must be passed to export secret key material (the Tink habit).

Every place that reads private key bytes out of a key handle passes `TOKEN`, so one grep for
`_secret_access` finds all of them. The module is private on purpose: importing it is the explicit act.
"""

from __future__ import annotations

from typing import Final


class SecretKeyAccess:
    """Proof that the caller means to handle secret key material. Use the singleton `TOKEN`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SecretKeyAccess.TOKEN"


TOKEN: Final = SecretKeyAccess()


def require_access(access: object) -> None:
    """Raise TypeError unless `access` is the secret-access token."""
    if not isinstance(access, SecretKeyAccess):
        raise TypeError("exporting secret key material needs crypto._secret_access.TOKEN")
