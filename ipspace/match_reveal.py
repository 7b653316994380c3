"""The reveal of the matches a consumer picks: their titles, asked of each record's own node.

After an encrypted match the consumer knows which records scored best, and nobody else does. To read their
titles it asks each node directly over mTLS, never through the coordinator, under its reveal agreement with
that node's provider: an agreement whose actions include `reveal` and whose fields include `title`. The node
decides each request, counts it against the agreement's limits and records it in its audit log. A reveal
tells the node which of its records the consumer picked, so it is only made for the matches asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from contracts.agreements import Agreement
from contracts.client import NodeClient, NodeRefused
from contracts.offers import Action
from crypto import Identity

if TYPE_CHECKING:
    from ipspace.match_query import RankedRecord


TITLE_FIELD = "title"
NO_REVEAL_AGREEMENT = "(no reveal agreement)"
NOT_REVEALED = "(not revealed)"
NOT_AT_NODE = "(no such record at the node)"
_PLACEHOLDERS = frozenset({NO_REVEAL_AGREEMENT, NOT_REVEALED, NOT_AT_NODE})


@dataclass(frozen=True)
class RevealedTitles:
    """Per record id: its title, or a placeholder saying why there is none; per provider org: the node's
    refusal ("STATUS: reason") or the reason it was not asked."""

    titles: dict[str, str]
    refusals: dict[str, str]
    revealed: int  # titles the nodes returned


def reveal_agreement(
    agreements: Iterable[Agreement], consumer: Identity, provider_org: str, dataset: str, *, now: datetime
) -> Agreement | None:
    """The consumer's unexpired agreement with `provider_org` that reveals `title` from `dataset`, its own
    (made out to the consumer by name) before its org's; None if there is none."""
    usable = [
        agreement
        for agreement in agreements
        if Action.REVEAL in agreement.terms.actions
        and TITLE_FIELD in agreement.terms.constraints.reveal_fields
        and agreement.terms.consumer_org == consumer.org
        and agreement.terms.provider_org == provider_org
        and agreement.terms.dataset == dataset
        and (agreement.terms.expires_at is None or agreement.terms.expires_at > now)
    ]
    usable.sort(key=lambda held: (held.terms.consumer_name != consumer.name, held.agreement_id))
    return usable[0] if usable else None


def reveal_titles(
    chosen: Sequence[RankedRecord],
    agreements: Iterable[Agreement],
    *,
    consumer: Identity,
    token: str,
    addresses: dict[str, str],
    datasets: dict[str, str],
    now: datetime | None = None,
) -> RevealedTitles:
    """The titles of `chosen`, asked of each record's node directly (never through the coordinator), under the
    consumer's reveal agreement with that node's provider for the dataset that was matched.

    `addresses` maps a node's name (as the coordinator calls it) or its provider org to host:port;
    `datasets` maps a provider org to the dataset its match agreement covers. One request per node, split to
    the agreement's records-per-request limit; a refusal stops that node's requests and is reported, not
    raised, so the other nodes' titles still come back. Each reveal is decided, counted against the
    agreement's limits and recorded in the node's audit log by the node.
    """
    moment = now or datetime.now(UTC)
    held = list(agreements)
    titles: dict[str, str] = {}
    refusals: dict[str, str] = {}
    by_provider: dict[str, list[RankedRecord]] = {}
    for record in chosen:
        by_provider.setdefault(record.provider_org, []).append(record)
    for provider, records in by_provider.items():
        ids = [record.record_id for record in records]
        agreement = reveal_agreement(held, consumer, provider, datasets.get(provider, ""), now=moment)
        address = addresses.get(records[0].node) or addresses.get(provider)
        if agreement is None:
            titles.update(dict.fromkeys(ids, NO_REVEAL_AGREEMENT))
            continue
        if address is None:
            titles.update(dict.fromkeys(ids, NOT_REVEALED))
            refusals[provider] = f"not asked: no address for node {records[0].node!r} (--node NAME=HOST:PORT)"
            continue
        with NodeClient(address, consumer, token) as client:
            titles.update(_reveal_at_node(client, agreement, ids, refusals, provider))
    revealed = sum(1 for record in chosen if titles.get(record.record_id) not in _PLACEHOLDERS)
    return RevealedTitles(titles, refusals, revealed)


def _reveal_at_node(
    client: NodeClient, agreement: Agreement, ids: list[str], refusals: dict[str, str], provider: str
) -> dict[str, str]:
    per_request = agreement.terms.constraints.reveal_max_records_per_request or len(ids)
    titles = dict.fromkeys(ids, NOT_REVEALED)
    for start in range(0, len(ids), per_request):
        try:
            rows, missing = client.reveal(agreement, ids[start : start + per_request], [TITLE_FIELD])
        except NodeRefused as refused:
            refusals[provider] = f"{refused.status.name}: {refused.reason}"
            break
        absent = set(missing)
        found = [record_id for record_id in ids[start : start + per_request] if record_id not in absent]
        # The node answers the found records in the order asked, each with only the revealed fields.
        for record_id, row in zip(found, rows, strict=True):
            titles[record_id] = str(row.get(TITLE_FIELD, NOT_REVEALED))
        titles.update(dict.fromkeys(missing, NOT_AT_NODE))
    return titles
