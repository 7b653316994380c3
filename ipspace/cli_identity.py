"""``ipspace ca`` and ``ipspace identity``: the data-space CA, member identities and their tokens."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import typer
from rich.console import Console

from crypto import CertificateAuthority, Identity
from crypto.principal import parse_role

ca_app = typer.Typer(help="The data-space certificate authority.", no_args_is_help=True)
identity_app = typer.Typer(help="Member identities: certificates, keys and tokens.", no_args_is_help=True)
console = Console()
TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret


@ca_app.command("init")
def ca_init(
    directory: Path = typer.Argument(..., help="directory for ca.crt and ca.key"),
    name: str = typer.Option("IP data space CA", help="the CA's common name"),
) -> None:
    """Create the data-space CA (refuses to overwrite an existing one)."""
    directory.mkdir(parents=True, exist_ok=True)
    CertificateAuthority.create(directory, name)
    console.print(f"CA created in {directory} (keep {directory / 'ca.key'} offline)")


@identity_app.command("issue")
def identity_issue(
    out: Path = typer.Argument(..., help="directory to write the identity into"),
    ca: Path = typer.Option(..., help="the CA directory"),
    name: str = typer.Option(..., help="the member's name (certificate CN)"),
    org: str = typer.Option(..., help="the member's organisation"),
    role: str = typer.Option(..., help="provider | builder | consumer | regulator | coordinator"),
    host: list[str] = typer.Option([], help="DNS name or IP a server is reached at (repeatable)"),
    token_hours: float = typer.Option(12.0, help="lifetime of the access token written beside the identity"),
) -> None:
    """Issue a certificate pair (TLS + signing) and a bound access token for a member."""
    authority = CertificateAuthority.load(ca)
    identity = authority.issue(name, org, parse_role(role), hosts=host)
    out.mkdir(parents=True, exist_ok=True)
    identity.save(out)
    write_token(out, authority.issue_token(identity.principal(), ttl=timedelta(hours=token_hours)))
    console.print(f"{role} {name} of {org} issued in {out}")


@identity_app.command("token")
def identity_token(
    identity_dir: Path = typer.Argument(..., help="the identity directory"),
    ca: Path = typer.Option(..., help="the CA directory"),
    hours: float = typer.Option(12.0, help="token lifetime"),
) -> None:
    """Issue a fresh access token for an identity (tokens are short-lived; certificates are not)."""
    authority = CertificateAuthority.load(ca)
    identity = Identity.load(identity_dir)
    write_token(identity_dir, authority.issue_token(identity.principal(), ttl=timedelta(hours=hours)))
    console.print(f"token for {identity.name} written to {identity_dir / TOKEN_FILE}")


def write_token(directory: Path, token: str) -> None:
    path = directory / TOKEN_FILE
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")


def read_token(directory: Path) -> str:
    path = directory / TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: run 'ipspace identity token' to issue one") from None
