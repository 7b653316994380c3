"""The demo's encrypted match: a real SBIR technology need against the three nodes' patent titles.

The consumer agrees each node's match offer, registers the agreements with the coordinator, embeds and
encrypts the need on its own side, and sends it through the coordinator; every node scores all its titles
under encryption, and only the consumer decrypts and ranks. It then reveals the title of the best match under
the scouting agreement it already holds with that node. The need is a real SBIR topic (data/README.md); the
projection is the shipped matching head (trained federated with DP, `SHIPPED_MATCHING_HEAD`), and the titles'
similarity to a need is a weak signal, not a judgement of relevance.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.offers import Action, Constraints, Offer
from crypto import Identity
from ipspace.cli_identity import read_token
from ipspace.cli_match import ranked_table
from ipspace.coordinator_client import CoordinatorClient
from ipspace.sample_data import DATA_DIR, SHIPPED_MATCHING_HEAD

SBIR_TOPICS = DATA_DIR / "sbir_topics_sample.csv.gz"
NEED_TOPIC = "SBIR-T01084"  # Army: launch, charge and recovery of small unmanned aerial systems
PURPOSE = "technology-scouting"
SHOWN = 5


def match_offer(org: str) -> Offer:
    return Offer(
        offer_id="families-matching",
        provider_org=org,
        dataset="lens_families",
        actions=(Action.MATCH,),
        constraints=Constraints(purposes=(PURPOSE,)),  # the node's default query budget applies
        description="encrypted matching of a need against every family title; 20 queries a day, 40 in all",
    )


def sbir_need(topic_id: str = NEED_TOPIC) -> tuple[str, str]:
    """(title, title + description) of a shipped SBIR topic."""
    with gzip.open(SBIR_TOPICS, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["topic_id"] == topic_id:
                return row["topic_name"], f"{row['topic_name']}. {row['description']}"
    raise LookupError(f"no SBIR topic {topic_id} in {SBIR_TOPICS}")


@dataclass(frozen=True)
class MatchOutcome:
    need_title: str
    best_title: str
    scored: int


def run_encrypted_match(
    consumer_dir: Path,
    api_url: str,
    addresses: dict[str, str],
    reveal_agreements: dict[str, Agreement],
    console: Console,
) -> MatchOutcome:
    """Agree, register, match through the coordinator, reveal the best; prints as it goes."""
    from ipspace.match_query import consumer_keys, match_via_coordinator
    from models.matching.embeddings import TextEmbedder
    from models.matching.projection import Projection

    scout = Identity.load(consumer_dir)
    token = read_token(consumer_dir)
    agreements = []
    for address in addresses.values():
        with NodeClient(address, scout, token) as client:
            status = client.request_agreement(client.offer("families-matching"), PURPOSE)
        if status.state != "approved" or status.agreement is None:
            raise RuntimeError(f"the match offer at {address} was not agreed: {status.reason}")
        agreements.append(status.agreement)
    title, text = sbir_need()
    projection = Projection.load(SHIPPED_MATCHING_HEAD)
    keys = consumer_keys(projection)
    need = TextEmbedder().embed_one(text)
    with CoordinatorClient(api_url, consumer_dir, token) as client:
        for agreement in agreements:
            client.register_agreement(agreement)
        answer = match_via_coordinator(
            client, scout, keys=keys, projection=projection, need=need, agreements=agreements
        )
    for provider, reason in answer.refusals.items():
        console.print(f"  {provider}: refused: {reason}")
    scored = sum(len(scores.record_ids) for scores in answer.answers.values())
    console.print(
        f"  need {NEED_TOPIC} (real SBIR topic): {title!r}; encrypted under the consumer's key, "
        f"{scored:,} titles scored at {len(answer.answers)} nodes, decrypted and ranked by the consumer only"
    )
    best = answer.ranked[0]
    node_of_provider = {a.terms.provider_org: name for name, a in reveal_agreements.items()}
    node = node_of_provider[best.provider_org]
    with NodeClient(addresses[node], scout, token) as client:
        rows, _ = client.reveal(reveal_agreements[node], [best.record_id], ["title"])
    best_title = str(rows[0]["title"]) if rows else "(not revealed)"
    console.print(
        ranked_table(
            "Encrypted match (scores decrypted by the consumer; titles weak signals)",
            answer.ranked[:SHOWN],
            {best.record_id: best_title},
        )
    )
    console.print(f"  revealed the best match under the scouting agreement: {best.record_id} {best_title!r}")
    return MatchOutcome(title, best_title, scored)
