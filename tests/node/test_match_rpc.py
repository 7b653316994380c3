"""Match over a real node: scores only the consumer decrypts, the agreement's query budget, bad input.

A node of its own (module scope) holding 300 real Lens families whose titles were embedded at import with
the real all-MiniLM-L6-v2; every call goes over mTLS through the gate, and the tests read the node's audit
entries from its database file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest

from contracts.agreements import Agreement
from contracts.client import NodeClient, NodeRefused
from contracts.offers import Action, Constraints, Offer
from contracts.query_grants import sign_query_grant
from crypto import Identity, Role
from crypto.ckks import VALUATION_PARAMETERS, CkksParameters, ConsumerKeys
from ipspace.cli_identity import read_token
from ipspace.local_space import LocalDataSpace
from ipspace.match_query import (
    MatchQuery,
    NodeScores,
    consumer_keys,
    encrypt_need,
    match_node,
    parameters_message,
    send_query,
)
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from models.matching.embeddings import TextEmbedder
from models.matching.encrypted_scores import encrypt_query
from models.matching.projection import Projection
from node.partition import Partition, read_rows, write_partitions
from node.server import NodeServer
from node.store import DatasetStore
from policies.matching import DEFAULT_QUERIES_PER_DAY, DEFAULT_QUERIES_TOTAL

ORG = "office-m"
PURPOSE = "technology-scouting"
NEED = "a small unmanned aircraft that inspects power lines and bridges with a camera"
ROWS = 300


def _offer(offer_id: str, dataset: str, actions: tuple[Action, ...], **constraints: object) -> Offer:
    return Offer(
        offer_id=offer_id,
        provider_org=ORG,
        dataset=dataset,
        actions=actions,
        constraints=Constraints(purposes=(PURPOSE,), reveal_fields=("title",), **constraints),
    )


OFFERS = [
    _offer("match", "families", (Action.MATCH,)),
    _offer("match-tight", "families", (Action.MATCH,), match_queries_per_day=2, match_queries_total=3),
    _offer("match-noisy", "families", (Action.MATCH,), match_score_noise=0.05),
    _offer("reveal-only", "families", (Action.REVEAL,)),
    _offer("match-plain", "plain", (Action.MATCH,)),
    _offer(
        "match-unlimited", "families", (Action.MATCH,), match_queries_per_day=1000, match_queries_total=1000
    ),
]


@dataclass
class MatchSpace:
    node_dir: Path
    address: str
    members: dict[str, Path]
    projection: Projection
    keys: ConsumerKeys
    need: np.ndarray

    def client(self, member: str = "scout") -> NodeClient:
        directory = self.members[member]
        return NodeClient(self.address, Identity.load(directory), read_token(directory))

    def agreement(self, offer_id: str, member: str = "scout") -> Agreement:
        with self.client(member) as client:
            status = client.request_agreement(client.offer(offer_id), PURPOSE)
        assert status.state == "approved", status
        return status.agreement

    def match(self, agreement: Agreement, member: str = "scout") -> NodeScores:
        with self.client(member) as client:
            identity = Identity.load(self.members[member])
            return match_node(
                client,
                agreement,
                consumer=identity,
                keys=self.keys,
                projection=self.projection,
                need=self.need,
            )

    def raw_match(self, agreement: Agreement, **changes: object):
        """A query with some parts replaced, under a grant the scout signs over exactly what is sent."""
        query = replace(encrypt_need(self.keys, self.projection, self.need), **changes)
        with self.client() as client:
            return send_query(client, agreement, query, Identity.load(self.members["scout"]))

    def plaintext_scores(self) -> tuple[tuple[str, ...], np.ndarray]:
        embeddings = DatasetStore.for_node(self.node_dir).embeddings("families")
        projected = self.projection.apply(embeddings.vectors)
        return embeddings.record_ids, projected @ self.projection.apply(self.need[None, :])[0]

    def entries(self, method: str) -> list[dict]:
        uri = (self.node_dir / "node.db").resolve().as_uri() + "?mode=ro"
        with sqlite3.connect(uri, uri=True) as connection:
            leaves = [
                json.loads(row[0]) for row in connection.execute("SELECT leaf FROM entries ORDER BY idx")
            ]
        return [leaf for leaf in leaves if leaf["method"].endswith(method)]


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatchSpace]:
    root = tmp_path_factory.mktemp("matching")
    local = LocalDataSpace(root)
    local.create_ca()
    header, rows = read_rows(LENS_FAMILIES)
    csv_path = write_partitions([Partition("sample", ("US",), tuple(rows[:ROWS]))], root / "data", header)[
        "sample"
    ]
    source = (csv_path, LENS_ID_FIELD, "Lens patent families on drones", LENS_SOURCE)
    node_dir = local.init_node(
        "node-m",
        ORG,
        offers=OFFERS,
        datasets={"families": source, "plain": source},
        embed={"families": ("title",)},
    )
    members = {
        "scout": local.issue("scout", "acme", Role.CONSUMER),
        "outsider": local.issue("outsider", "globex", Role.CONSUMER),
        "coordinator": local.issue("coordinator", "ipspace-coordinator", Role.COORDINATOR),
    }
    projection = Projection.initial(seed=7)
    need = TextEmbedder().embed_one(NEED)
    server = NodeServer(node_dir)
    port = server.start()
    try:
        yield MatchSpace(node_dir, f"127.0.0.1:{port}", members, projection, consumer_keys(projection), need)
    finally:
        server.stop()


def _refusal(call) -> NodeRefused:
    with pytest.raises(NodeRefused) as caught:
        call()
    return caught.value


def test_a_match_scores_every_record_under_encryption_as_plaintext_would(space: MatchSpace) -> None:
    agreement = space.agreement("match")
    answer = space.match(agreement)

    record_ids, expected = space.plaintext_scores()
    assert answer.record_ids == record_ids and len(record_ids) == ROWS  # every Lens title is non-empty
    np.testing.assert_allclose(answer.scores, expected, atol=1e-3)
    top = list(np.argsort(-expected)[:10])
    assert list(np.argsort(-answer.scores)[:10]) == top
    assert answer.score_noise == 0.0
    assert (answer.queries_left_today, answer.queries_left_total) == (
        DEFAULT_QUERIES_PER_DAY - 1,
        DEFAULT_QUERIES_TOTAL - 1,
    )
    entry = space.entries("/Match")[-1]
    assert entry["decision"] == "allow" and entry["status"] == "OK"
    assert entry["agreement_id"] == agreement.agreement_id
    assert entry["charges"] == {"match.queries": 1}


def test_the_node_holds_nothing_that_decrypts_its_answer(space: MatchSpace) -> None:
    answer = space.raw_match(space.agreement("match"))
    other = ConsumerKeys.generate(CkksParameters(), (1, 16))  # anyone else, the node included
    from models.matching.encrypted_scores import decrypt_scores

    wrong = decrypt_scores(other, list(answer.score_blocks), len(answer.record_ids))
    _, expected = space.plaintext_scores()
    assert np.abs(wrong - expected).max() > 1.0  # noise, not scores


def test_past_the_day_s_queries_the_node_answers_resource_exhausted_and_records_it(space: MatchSpace) -> None:
    agreement = space.agreement("match-tight")
    first = space.match(agreement)
    second = space.match(agreement)
    assert (first.queries_left_today, second.queries_left_today) == (1, 0)
    assert second.queries_left_total == 1

    refused = _refusal(lambda: space.match(agreement))
    assert refused.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "allows 2 match queries per UTC day" in refused.reason and "1 remain in total" in refused.reason
    entry = space.entries("/Match")[-1]
    assert (entry["decision"], entry["status"]) == ("deny", "RESOURCE_EXHAUSTED")


def test_an_agreement_that_obliges_noise_gets_noisy_scores_and_is_told_so(space: MatchSpace) -> None:
    answer = space.match(space.agreement("match-noisy"))
    _, expected = space.plaintext_scores()
    spread = float(np.std(answer.scores - expected))
    assert answer.score_noise == 0.05
    assert 0.035 < spread < 0.065


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ciphertext": b"\x00" * 1000}, "ciphertext"),
        ({"projection": b"\x01\x02\x03"}, "projection"),
        ({"parameters": None}, "does not compute with"),
        ({"parameters": "valuation"}, "does not compute with"),
    ],
)
def test_bad_input_is_refused_with_a_reason_recorded_and_not_charged(
    space: MatchSpace, change: dict, reason: str
) -> None:
    agreement = space.agreement("match")
    if change.get("parameters", 0) is None:  # a set no node computes with
        change = {"parameters": CkksParameters(coeff_modulus_bits=(60, 40, 40, 60))}
    elif change.get("parameters") == "valuation":  # allowed, but for the valuation kernel only
        change = {"parameters": VALUATION_PARAMETERS}
    before = space.match(agreement).queries_left_total
    refused = _refusal(lambda: space.raw_match(agreement, **change))
    assert refused.status == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in refused.reason.lower() or reason in refused.reason, refused.reason
    entry = space.entries("/Match")[-1]
    assert entry["status"] == "INVALID_ARGUMENT"
    assert space.match(agreement).queries_left_total == before - 1  # the refused query cost nothing


def test_a_query_without_the_rotation_keys_the_kernel_needs_is_refused_naming_the_step(
    space: MatchSpace,
) -> None:
    agreement = space.agreement("match")
    keys = ConsumerKeys.generate(CkksParameters(), (1,))
    refused = _refusal(lambda: space.raw_match(agreement, evaluation_keys=keys.evaluation_keys()))
    assert refused.status == grpc.StatusCode.INVALID_ARGUMENT
    assert "16" in refused.reason


def test_matching_needs_an_agreement_that_covers_it(space: MatchSpace) -> None:
    reveal_only = space.agreement("reveal-only")
    refused = _refusal(lambda: space.match(reveal_only))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED and "match" in refused.reason


def _sent_as(space: MatchSpace, sender: str, agreement: Agreement, grant_json: str, query: MatchQuery):
    with space.client(sender) as client:
        return client.match(
            agreement,
            parameters=parameters_message(query.parameters),
            evaluation_keys=query.evaluation_keys,
            query=query.ciphertext,
            projection=query.projection,
            query_grant_json=grant_json,
        )


def test_only_the_signer_or_the_coordinator_may_send_a_signed_query(space: MatchSpace) -> None:
    theirs = space.agreement("match", member="outsider")
    query = encrypt_need(space.keys, space.projection, space.need)
    grant = sign_query_grant(Identity.load(space.members["outsider"]), theirs, query.digest)
    refused = _refusal(lambda: _sent_as(space, "scout", theirs, grant.model_dump_json(), query))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "only the signer or the coordinator" in refused.reason

    answer = _sent_as(space, "coordinator", theirs, grant.model_dump_json(), query)  # forwarded as signed
    assert len(answer.record_ids) == ROWS


def test_a_query_grant_answers_once_and_only_the_query_it_signed(space: MatchSpace) -> None:
    agreement = space.agreement("match")
    query = encrypt_need(space.keys, space.projection, space.need)
    grant = sign_query_grant(Identity.load(space.members["scout"]), agreement, query.digest).model_dump_json()
    _sent_as(space, "scout", agreement, grant, query)

    replayed = _refusal(lambda: _sent_as(space, "coordinator", agreement, grant, query))
    assert replayed.status == grpc.StatusCode.PERMISSION_DENIED and "already used" in replayed.reason
    other = replace(query, projection=Projection.initial(seed=8).to_bytes())
    fresh = sign_query_grant(Identity.load(space.members["scout"]), agreement, query.digest).model_dump_json()
    swapped = _refusal(lambda: _sent_as(space, "coordinator", agreement, fresh, other))
    assert swapped.status == grpc.StatusCode.PERMISSION_DENIED
    assert "signed for another query" in swapped.reason


def test_a_dataset_imported_without_embeddings_cannot_be_matched(space: MatchSpace) -> None:
    refused = _refusal(lambda: space.match(space.agreement("match-plain")))
    assert refused.status == grpc.StatusCode.FAILED_PRECONDITION
    assert "without embeddings" in refused.reason


# --- the reconstruction attack (ARCHITECTURE.md: d queries solve a linear system) ------------------------


def _scores_for(space: MatchSpace, agreement: Agreement, direction: np.ndarray) -> np.ndarray:
    """The attacker's raw query: a unit direction of its own choice in the projected space."""
    from models.matching.encrypted_scores import decrypt_scores

    answer = space.raw_match(agreement, ciphertext=encrypt_query(space.keys, direction))
    return decrypt_scores(space.keys, list(answer.score_blocks), len(answer.record_ids))


def _cosines(recovered: np.ndarray, truth: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(recovered, axis=1) * np.linalg.norm(truth, axis=1)
    return np.einsum("ij,ij->i", recovered, truth) / np.maximum(norms, 1e-12)


def _projected_records(space: MatchSpace) -> np.ndarray:
    embeddings = DatasetStore.for_node(space.node_dir).embeddings("families")
    return space.projection.apply(embeddings.vectors)


def test_without_a_query_budget_repeated_queries_recover_every_patent_s_embedding(space: MatchSpace) -> None:
    agreement = space.agreement("match-unlimited")
    dimension = space.projection.dimension
    # One query per axis of the projected space: each answer is one coordinate of every patent's vector.
    recovered = np.stack([_scores_for(space, agreement, axis) for axis in np.eye(dimension)], axis=1)

    cosines = _cosines(recovered, _projected_records(space))
    assert cosines.min() >= 0.99, cosines.min()


def test_with_the_default_budget_the_node_refuses_before_the_attack_succeeds(space: MatchSpace) -> None:
    # The strongest attacker we know: it spends its queries on the directions along which public patent
    # titles of the same field vary most (other real Lens families, embedded and projected as the node does).
    _, rows = read_rows(LENS_FAMILIES)
    public = [row["title"] for row in rows[3000:3400] if row["title"].strip()]
    prior = space.projection.apply(TextEmbedder().embed(public))
    directions = np.linalg.svd(prior, full_matrices=False)[2]
    agreement = space.agreement("match")  # the offer sets no limits: the node's defaults hold

    answers = []
    refusal = None
    for direction in directions:
        try:
            answers.append(_scores_for(space, agreement, direction))
        except NodeRefused as refused:
            refusal = refused
            break
    assert refusal is not None and refusal.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(answers) == DEFAULT_QUERIES_PER_DAY < DEFAULT_QUERIES_TOTAL < space.projection.dimension
    # What the answers give: each patent's vector within the span of the directions asked.
    recovered = np.stack(answers, axis=1) @ directions[: len(answers)]
    cosines = _cosines(recovered, _projected_records(space))
    assert cosines.max() < 0.99, cosines.max()


def test_an_expired_query_grant_is_refused_with_its_expiry(space: MatchSpace) -> None:
    agreement = space.agreement("match")
    query = encrypt_need(space.keys, space.projection, space.need)
    scout = Identity.load(space.members["scout"])
    stale = sign_query_grant(scout, agreement, query.digest, now=datetime.now(UTC) - timedelta(minutes=10))
    refused = _refusal(lambda: _sent_as(space, "scout", agreement, stale.model_dump_json(), query))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED and "expired" in refused.reason
