"""The coordinator's settings: who it is (its identity directory), where it keeps state, which nodes it knows.

Read from one JSON file (``coordinator.json``) that the operator edits; every path the coordinator writes is
derived from ``data_dir`` so two coordinators never share state by accident.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, Field, ValidationError, model_validator

from contracts.client import NodeClient
from contracts.fields import FrozenModel, describe_validation_error
from crypto import Identity, Role
from crypto.errors import CryptoError
from crypto.principal import check_host, check_label

SETTINGS_FILE = "coordinator.json"
TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret


class SettingsError(Exception):
    """The settings, or the identity they name, cannot be used; the message says which and why."""


def _host(value: str) -> str:
    check_host(value)
    return value


def _address(value: str) -> str:
    host, separator, port = value.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {value!r} must be host:port")
    check_host(host.strip("[]"))
    return value


Label = Annotated[str, AfterValidator(lambda value: check_label("name", value))]


class NodeEndpoint(FrozenModel):
    """A node whose catalog the coordinator federates and to which it forwards match queries; ``server_name``
    overrides the TLS name checked."""

    name: Label
    address: Annotated[str, AfterValidator(_address)]
    server_name: Label | None = None
    org: Label | None = None  # the provider org it serves; unset, match queries ask the node's offers

    def client(self, identity: Identity, token: str, *, timeout_s: float) -> NodeClient:
        """A client of this node under the coordinator's identity (role coordinator) and token."""
        return NodeClient(self.address, identity, token, server_name=self.server_name, timeout_s=timeout_s)


class CoordinatorSettings(FrozenModel):
    identity_dir: Path
    data_dir: Path
    host: Annotated[str, AfterValidator(_host)] = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    nodes: tuple[NodeEndpoint, ...] = ()
    node_timeout_s: float = Field(default=5.0, gt=0, le=120)
    audit_sync_interval_s: float = Field(
        default=60.0, ge=0, le=86_400, description="seconds between syncs of the audit index (0: on demand)"
    )
    token_file: Path | None = Field(default=None, description="defaults to <identity_dir>/token")

    @model_validator(mode="after")
    def _distinct_nodes(self) -> Self:
        names = [node.name for node in self.nodes]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"node names must be distinct; {', '.join(repeated)} appears twice")
        return self

    @property
    def database(self) -> Path:
        return self.data_dir / "coordinator.db"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def own_log_file(self) -> Path:
        """The coordinator's own signed audit log (`coordinator.own_log`)."""
        return self.data_dir / "audit.db"

    @property
    def token_path(self) -> Path:
        return self.token_file if self.token_file is not None else self.identity_dir / TOKEN_FILE

    def load_identity(self) -> Identity:
        """The coordinator's identity; raises SettingsError if it is unusable or not a coordinator's."""
        try:
            identity = Identity.load(self.identity_dir)
        except (FileNotFoundError, CryptoError) as error:
            raise SettingsError(
                f"the coordinator's identity in {self.identity_dir} is unusable: {error}"
            ) from None
        if identity.role != Role.COORDINATOR:
            raise SettingsError(
                f"the identity in {self.identity_dir} holds the role {identity.role.value!r}; "
                "the coordinator needs one issued with the role 'coordinator'"
            )
        return identity

    def read_token(self) -> str:
        """The coordinator's own access token (re-read on every use, so a renewed file takes effect)."""
        try:
            token = self.token_path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(
                f"cannot read the coordinator's token from {self.token_path}: {error}"
            ) from None
        if not token:
            raise SettingsError(f"{self.token_path} is empty: issue a token with 'ipspace identity token'")
        return token

    @classmethod
    def load(cls, path: Path) -> CoordinatorSettings:
        """Read and validate a settings file; raises SettingsError naming the file and the problem."""
        try:
            return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
        except OSError as error:
            raise SettingsError(f"{path} cannot be read: {error.strerror or error}") from None
        except json.JSONDecodeError as error:
            raise SettingsError(f"{path} is not valid JSON: {error}") from None
        except ValidationError as error:
            raise SettingsError(f"{path}: {describe_validation_error(error)}") from None

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
