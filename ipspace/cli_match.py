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
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.agreements import Agreement
from contracts.offers import Action
from crypto import Identity
from ipspace.cli_consumer import AGREEMENTS_DIR
from ipspace.cli_identity import read_token
from ipspace.coordinator_client import CoordinatorClient
from ipspace.match_reveal import NOT_REVEALED, reveal_titles
from ipspace.sample_data import SHIPPED_MATCHING_HEAD
from models.matching.embeddings import EMBEDDING_DIM
from models.matching.expansion import SHIPPED_VOCABULARY, RelatedTerms, Vocabulary, related_terms

if TYPE_CHECKING:
    from crypto.ckks import ConsumerKeys
    from ipspace.match_query import RankedRecord
    from models.matching.projection import Projection

console = Console()
KEYS_DIR = "ckks"
MAX_REVEAL = 100
MAX_EXPAND_ADD = 8  # the default first level holds 8 terms


def match(
    need: str = typer.Argument(..., help="the technology need, in plain words"),
    coordinator: str = typer.Option(..., envvar="IPSPACE_COORDINATOR", help="the coordinator's URL"),
    identity: Path = typer.Option(..., envvar="IPSPACE_IDENTITY", help="your identity directory"),
    top: int = typer.Option(10, min=1, max=1000, help="how many of the best matches to print"),
    projection_file: Path = typer.Option(
        None,
        "--projection",
        help="the matching head: a matching job's model (.npz from 'ipspace job model') or its bytes "
        "form; default: the shipped head (data/matching_head_dp8.bin, trained federated with DP)",
    ),
    reveal: int = typer.Option(
        0,
        min=0,
        max=MAX_REVEAL,
        help="reveal the titles of the best N matches, at each node, under your reveal agreement with it "
        "(counted against its limits and recorded in the node's audit log; default: none)",
    ),
    nodes: list[str] = typer.Option(
        [], "--node", help="NAME=HOST:PORT of a node to reveal at (NAME: the node or its provider org)"
    ),
    expand: bool = typer.Option(
        False, "--expand", help="print related patent terms for the need, found on this machine"
    ),
    expand_add: int = typer.Option(
        0, "--expand-add", min=0, max=MAX_EXPAND_ADD, help="add the K nearest related terms to the need"
    ),
    vocabulary_file: Path = typer.Option(
        SHIPPED_VOCABULARY, "--vocabulary", help="the phrase vocabulary --expand looks in"
    ),
) -> None:
    """Rank the patents of every node you hold a registered match agreement with against NEED, encrypted.

    Prints the best matches (node, patent, title where revealed, score) and each node's refusal or remaining
    query budget. With --expand, related terms for NEED are printed first, found on this machine before
    anything is encrypted; --expand-add K also appends the K nearest ones to NEED before it is embedded.
    """
    from ipspace.match_query import match_via_coordinator
    from models.matching.embeddings import MODEL_ID, TextEmbedder
    from models.matching.projection import Projection

    if reveal > top:
        raise typer.BadParameter(f"--reveal {reveal} asks for more titles than --top {top} prints")
    addresses = node_addresses(nodes)
    member = Identity.load(identity)
    vocabulary = None
    if expand or expand_add:
        vocabulary = Vocabulary.load(vocabulary_file)
        vocabulary.require(MODEL_ID, EMBEDDING_DIM)  # before the model loads or the coordinator is asked
    projection = Projection.load(projection_file or SHIPPED_MATCHING_HEAD)
    described = (
        f"projection {projection.digest[:12]}… ({projection.dimension} dimensions)"
        if projection_file is not None
        else "the shipped matching head (trained federated with DP, epsilon 8)"
    )
    token = read_token(identity)
    with CoordinatorClient(coordinator, identity, token) as client:
        now = datetime.now(UTC)
        registered = client.agreements()
        agreements = [
            agreement
            for agreement in registered
            if Action.MATCH in agreement.terms.actions
            and agreement.terms.consumer_org == member.org
            and (agreement.terms.expires_at is None or agreement.terms.expires_at > now)
        ]
        if not agreements:
            raise ValueError(
                f"org {member.org!r} has no match agreement registered with the coordinator: agree a match "
                "offer ('ipspace agree') and register it ('ipspace job register')"
            )
        embedder = TextEmbedder()
        need_vector = embedder.embed_one(need)
        if vocabulary is not None:
            terms = related_terms(need_vector, vocabulary, model_id=MODEL_ID, need_text=need)
            _print_related(terms, len(vocabulary))
            if expand_add:
                need = ", ".join([need, *(term.phrase for term in terms.first_level[:expand_add])])
                need_vector = embedder.embed_one(need)
                console.print(f"need as matched: {need}", markup=False)
        keys = _keys(identity, projection)
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
    titles: dict[str, str] = {}
    if reveal:
        titles = _reveal(answer.ranked[:reveal], registered, agreements, member, token, identity, addresses)
    console.print(ranked_table(f"Best matches for: {need}", answer.ranked[:top], titles))


def ranked_table(title: str, ranked: list, titles: dict[str, str] | None = None) -> Table:
    """Rank, node, patent (record id), its title where `titles` is given ("(not revealed)" where it lacks
    the record), score. Texts are shown as written (no rich markup is read in a title)."""
    table = Table(title=escape(title))
    for column in ("rank", "node", "patent", *(("title",) if titles is not None else ()), "score"):
        # Only a title wraps: an id cut across lines could not be read back or searched for.
        justify = "right" if column in ("rank", "score") else "left"
        table.add_column(column, justify=justify, no_wrap=column != "title")
    for rank, record in enumerate(ranked, start=1):
        title_cell = (escape(titles.get(record.record_id, NOT_REVEALED)),) if titles is not None else ()
        node = escape(record.node or record.provider_org)
        table.add_row(str(rank), node, escape(record.record_id), *title_cell, f"{record.score:.3f}")
    return table


def node_addresses(specs: list[str]) -> dict[str, str]:
    """``--node NAME=HOST:PORT`` options as {name: address}; a malformed one is a usage error."""
    addresses = {}
    for spec in specs:
        name, separator, address = spec.partition("=")
        host, colon, port = address.rpartition(":")
        if not separator or not name or not colon or not host or not port.isdigit():
            raise typer.BadParameter(f"--node {spec!r} must be NAME=HOST:PORT")
        if name in addresses:
            raise typer.BadParameter(f"--node names {name!r} twice")
        addresses[name] = address
    return addresses


def _print_related(terms: RelatedTerms, vocabulary_size: int) -> None:
    """Both levels, for a person to read; nothing is sent anywhere."""
    console.print(
        f"related terms (nearest of {vocabulary_size:,} public patent phrases, found on this machine; "
        "nothing sent):"
    )
    first = ", ".join(f"{term.phrase} ({term.score:.2f})" for term in terms.first_level)
    console.print(f"  first level:  {first or '(none)'}", markup=False)
    second = ", ".join(f"{term.phrase} (via {term.via})" for term in terms.second_level)
    console.print(f"  second level: {second or '(none)'}", markup=False)


def _reveal(
    chosen: list[RankedRecord],
    registered: list[Agreement],
    match_agreements: list[Agreement],
    member: Identity,
    token: str,
    identity_dir: Path,
    addresses: dict[str, str],
) -> dict[str, str]:
    """Titles of `chosen`, revealed at their nodes under the agreements registered with the coordinator or
    saved in the identity directory ('ipspace agree'); prints each node's refusal."""
    revealed = reveal_titles(
        chosen,
        [*registered, *_saved_agreements(identity_dir)],
        consumer=member,
        token=token,
        addresses=addresses,
        datasets={agreement.terms.provider_org: agreement.terms.dataset for agreement in match_agreements},
    )
    console.print(
        f"revealed {revealed.revealed} of {len(chosen)} titles, each at its own node, not via the coordinator"
    )
    for provider, reason in revealed.refusals.items():
        console.print(f"  {provider}: reveal refused: {reason}")
    return revealed.titles


def _saved_agreements(identity_dir: Path) -> list[Agreement]:
    """The agreements 'ipspace agree' saved; a file that does not parse is named and skipped."""
    saved = []
    for path in sorted((identity_dir / AGREEMENTS_DIR).glob("*.json")):
        try:
            saved.append(Agreement.model_validate_json(path.read_text()))
        except ValidationError:
            console.print(f"  skipped {path}: not an agreement")
    return saved


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
