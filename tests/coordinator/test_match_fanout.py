"""POST /queries/match: the coordinator forwards one encrypted query to each agreement's node and returns
the nodes' encrypted answers; it holds no key that decrypts them, and the nodes judge the consumer's grants.

Real nodes (tests/coordinator/conftest.py: two, with titles embedded at import by the real MiniLM) and the
real coordinator over HTTPS with client certificates.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from contracts.query_grants import sign_query_grant
from ipspace.match_query import (
    consumer_keys,
    coordinator_request,
    encrypt_need,
    read_coordinator_answer,
)
from models.matching.embeddings import TextEmbedder
from models.matching.projection import Projection
from node.store import DatasetStore
from tests.coordinator.conftest import DATASET, Coordinator, Space

NEED = "a drone that sprays crops and maps the fields it flies over"


@pytest.fixture(scope="module")
def projection() -> Projection:
    return Projection.initial(seed=3)


def _register(coordinator: Coordinator, member: str, nodes: tuple[str, ...]) -> list:
    agreements = [coordinator.space.agreement(member, node, "match") for node in nodes]
    with coordinator.client(member) as client:
        for agreement in agreements:
            response = client.post("/agreements", json=agreement.model_dump(mode="json"))
            assert response.status_code in (200, 201), response.text
    return agreements


def _plaintext_scores(space: Space, node: str, projection: Projection, need: np.ndarray) -> np.ndarray:
    node_dir = space.members[node].parent
    embeddings = DatasetStore.for_node(node_dir).embeddings(DATASET)
    return projection.apply(embeddings.vectors) @ projection.apply(need[None, :])[0]


def test_one_query_reaches_every_agreed_node_and_only_the_consumer_reads_the_answers(
    coordinator: Coordinator, projection: Projection
) -> None:
    space = coordinator.space
    agreements = _register(coordinator, "carl", ("node-us", "node-eu"))
    keys = consumer_keys(projection)
    need = TextEmbedder().embed_one(NEED)
    query = encrypt_need(keys, projection, need)
    carl = space.identity("carl")
    grants = {a.agreement_id: sign_query_grant(carl, a, query.digest).model_dump_json() for a in agreements}

    with coordinator.client("carl") as client:
        response = client.post("/queries/match", json=coordinator_request(query, grants), timeout=120)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["provider_org"] for result in results] == ["office-us", "office-eu"]
    for result, node in zip(results, ("node-us", "node-eu"), strict=True):
        assert result["error"] is None and result["node"] == node
        answer = read_coordinator_answer(keys, result)
        expected = _plaintext_scores(space, node, projection, need)
        np.testing.assert_allclose(answer.scores, expected, atol=1e-3)
        assert list(np.argsort(-answer.scores)[:10]) == list(np.argsort(-expected)[:10])
    [event] = coordinator.events(",".join(sorted(grants)))
    assert (event["action"], event["outcome"]) == ("query.match", "ok")

    # The same request again: each node refuses the used grants itself, and says so.
    with coordinator.client("carl") as client:
        replayed = client.post("/queries/match", json=coordinator_request(query, grants), timeout=120).json()
    assert {result["error"]["status"] for result in replayed["results"]} == {"PERMISSION_DENIED"}
    assert all("already used" in result["error"]["reason"] for result in replayed["results"])


def test_a_query_naming_an_agreement_the_coordinator_cannot_route_is_refused_before_any_node(
    coordinator: Coordinator, projection: Projection
) -> None:
    space = coordinator.space
    unregistered = space.agreement("carl", "node-us", "reveal")  # a real agreement, never registered here
    keys = consumer_keys(projection)
    query = encrypt_need(keys, projection, TextEmbedder().embed_one(NEED))
    grants = {unregistered.agreement_id: "{}"}
    with coordinator.client("carl") as client:
        response = client.post("/queries/match", json=coordinator_request(query, grants))
    assert response.status_code == 400
    assert "is not registered with the coordinator" in response.json()["detail"]


def test_a_regulator_sends_no_match_queries(coordinator: Coordinator, projection: Projection) -> None:
    keys = consumer_keys(projection)
    query = encrypt_need(keys, projection, TextEmbedder().embed_one(NEED))
    with coordinator.client("rita") as client:
        body = coordinator_request(query, {"sha256:" + "0" * 64: "{}"})
        response = client.post("/queries/match", json=body)
    assert response.status_code == 403


def test_ipspace_match_ranks_every_node_s_patents_for_a_need_as_plaintext_would(
    coordinator: Coordinator, projection: Projection
) -> None:
    space = coordinator.space
    _register(coordinator, "carl", ("node-us", "node-eu"))
    projection_file = space.root / "head.bin"
    projection_file.write_bytes(projection.to_bytes())
    result = subprocess.run(
        [
            sys.executable, "-m", "ipspace", "match", NEED,
            "--coordinator", coordinator.base_url,
            "--identity", str(space.members["carl"]),
            "--top", "5",
            "--projection", str(projection_file),
        ],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    need = TextEmbedder().embed_one(NEED)
    pooled = {
        record_id: score
        for node in ("node-us", "node-eu")
        for record_id, score in zip(
            DatasetStore.for_node(space.members[node].parent).embeddings(DATASET).record_ids,
            _plaintext_scores(space, node, projection, need),
            strict=True,
        )
    }
    best = sorted(pooled, key=pooled.get, reverse=True)[:5]
    printed = [line for line in result.stdout.splitlines() if any(record in line for record in best)]
    assert len(printed) == 5, result.stdout  # the five best of both nodes, found under encryption
    assert "records scored" in result.stdout and "queries left today" in result.stdout
    assert (space.members["carl"] / "ckks" / "128" / "ckks-secret.key").stat().st_mode & 0o077 == 0
