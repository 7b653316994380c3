"""``ipspace match``: a consumer's technology need, matched against every node it holds a match agreement
with, without any node or the coordinator seeing the need or the scores.

On the consumer's machine: the need is embedded (all-MiniLM-L6-v2) and projected; CKKS keys are made once and
kept in the identity directory (`ckks/`, the secret key 0600); the query is encrypted and one query grant per
agreement is signed. The coordinator forwards it; each node scores its records under encryption; the answers
are decrypted and ranked here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from contracts.offers import Action
from crypto import Identity
from ipspace.cli_identity import read_token
from ipspace.coordinator_client import CoordinatorClient

if TYPE_CHECKING:
    from crypto.ckks import ConsumerKeys
    from models.matching.projection import Projection

console = Console()
KEYS_DIR = "ckks"
UNTRAINED_PROJECTION_SEED = 0  # until a federated matching model is given with --projection


def match(
    need: str = typer.Argument(..., help="the technology need, in plain words"),
    coordinator: str = typer.Option(..., envvar="IPSPACE_COORDINATOR", help="the coordinator's URL"),
    identity: Path = typer.Option(..., envvar="IPSPACE_IDENTITY", help="your identity directory"),
    top: int = typer.Option(10, min=1, max=1000, help="how many of the best matches to print"),
    projection_file: Path = typer.Option(
        None, "--projection", help="the matching head's weights (wire format); default: untrained"
    ),
) -> None:
    """Rank the patents of every node you hold a registered match agreement with against NEED, encrypted.

    Prints the best matches (node, record id, score) and each node's refusal or remaining query budget.
    """
    from ipspace.match_query import match_via_coordinator
    from models.matching.embeddings import TextEmbedder
    from models.matching.projection import Projection

    member = Identity.load(identity)
    if projection_file is not None:
        projection = Projection.from_bytes(projection_file.read_bytes())
        described = f"projection {projection.digest[:12]}… ({projection.dimension} dimensions)"
    else:
        projection = Projection.initial(UNTRAINED_PROJECTION_SEED)
        described = "the untrained projection (no matching model given)"
    with CoordinatorClient(coordinator, identity, read_token(identity)) as client:
        now = datetime.now(UTC)
        agreements = [
            agreement
            for agreement in client.agreements()
            if Action.MATCH in agreement.terms.actions
            and agreement.terms.consumer_org == member.org
            and (agreement.terms.expires_at is None or agreement.terms.expires_at > now)
        ]
        if not agreements:
            raise ValueError(
                f"org {member.org!r} has no match agreement registered with the coordinator: agree a match "
                "offer ('ipspace agree') and register it ('ipspace job register')"
            )
        keys = _keys(identity, projection)
        need_vector = TextEmbedder().embed_one(need)
        answer = match_via_coordinator(
            client, member, keys=keys, projection=projection, need=need_vector, agreements=agreements
        )
    console.print(f"encrypted need sent to {len(agreements)} node(s) via the coordinator, with {described}")
    for provider, reason in answer.refusals.items():
        console.print(f"  {provider}: refused: {reason}")
    for provider, scores in answer.answers.items():
        console.print(
            f"  {provider}: {len(scores.record_ids):,} records scored; {scores.queries_left_today} queries "
            f"left today, {scores.queries_left_total} in total"
            + (f"; scores carry noise of std {scores.score_noise:g}" if scores.score_noise else "")
        )
    console.print(ranked_table(f"Best matches for: {need}", answer.ranked[:top]))


def ranked_table(title: str, ranked: list, titles: dict[str, str] | None = None) -> Table:
    """Rank, provider, record (and its title where revealed), score."""
    table = Table(title=title)
    for column in ("rank", "provider", "record", *(("title",) if titles else ()), "score"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for rank, record in enumerate(ranked, start=1):
        title_cell = ((titles or {}).get(record.record_id, "(not revealed)"),) if titles else ()
        table.add_row(str(rank), record.provider_org, record.record_id, *title_cell, f"{record.score:.3f}")
    return table


def _keys(identity_dir: Path, projection: Projection) -> ConsumerKeys:
    """The consumer's CKKS keys from its identity directory, one set per query dimension, made on first use
    with the rotation keys that dimension needs."""
    from crypto.ckks import ConsumerKeys
    from ipspace.match_query import consumer_keys

    directory = identity_dir / KEYS_DIR / str(projection.dimension)
    if directory.exists():
        return ConsumerKeys.load(directory)
    keys = consumer_keys(projection)
    directory.mkdir(parents=True)
    keys.save(directory)
    return keys


def register(app: typer.Typer) -> None:
    app.command("match")(match)
