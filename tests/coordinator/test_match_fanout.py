"""POST /queries/match: the coordinator forwards one encrypted query to each agreement's node and returns
the nodes' encrypted answers; it holds no key that decrypts them, and the nodes judge the consumer's grants.

Real nodes (tests/coordinator/conftest.py: two, with titles embedded at import by the real MiniLM) and the
real coordinator over HTTPS with client certificates.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from contracts.query_grants import sign_query_grant
from ipspace.match_query import (
    RankedRecord,
    consumer_keys,
    coordinator_request,
    encrypt_need,
    read_coordinator_answer,
)
from ipspace.match_reveal import NO_REVEAL_AGREEMENT, NOT_REVEALED, reveal_titles
from models.matching.embeddings import TextEmbedder
from models.matching.projection import Projection
from node.store import DatasetStore
from tests.coordinator.conftest import DATASET, Coordinator, Space

NEED = "a drone that sprays crops and maps the fields it flies over"
NODES = ("node-us", "node-eu")


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


def _run_match(
    coordinator: Coordinator, projection: Projection, *options: str
) -> subprocess.CompletedProcess:
    space = coordinator.space
    projection_file = space.root / "head.bin"
    projection_file.write_bytes(projection.to_bytes())
    return subprocess.run(
        [
            sys.executable, "-m", "ipspace", "match", NEED,
            "--coordinator", coordinator.base_url,
            "--identity", str(space.members["carl"]),
            "--projection", str(projection_file),
            *options,
        ],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip


def _plaintext_ranking(space: Space, projection: Projection) -> list[tuple[str, str]]:
    """(node, record id) of every record of both nodes, best first, as plaintext scoring ranks them."""
    need = TextEmbedder().embed_one(NEED)
    scored = [
        (float(score), node, record_id)
        for node in ("node-us", "node-eu")
        for record_id, score in zip(
            DatasetStore.for_node(space.members[node].parent).embeddings(DATASET).record_ids,
            _plaintext_scores(space, node, projection, need),
            strict=True,
        )
    ]
    return [(node, record_id) for _, node, record_id in sorted(scored, key=lambda item: -item[0])]


def _audit_entries(space: Space, node: str, method: str) -> list[dict]:
    uri = (space.members[node].parent / "node.db").resolve().as_uri() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        leaves = [json.loads(row[0]) for row in connection.execute("SELECT leaf FROM entries ORDER BY idx")]
    return [leaf for leaf in leaves if leaf["method"].endswith(method)]


def test_ipspace_match_reveals_the_best_titles_at_each_node_under_its_reveal_agreement(
    coordinator: Coordinator, projection: Projection
) -> None:
    space = coordinator.space
    _register(coordinator, "carl", ("node-us", "node-eu"))
    reveal_us = space.agreement("carl", "node-us", "reveal")  # node-eu: carl holds no reveal agreement
    with coordinator.client("carl") as client:
        assert client.post("/agreements", json=reveal_us.model_dump(mode="json")).status_code in (200, 201)
    ranking = _plaintext_ranking(space, projection)
    # Reveal down to the first record of the node ranked lower, so both nodes' rows are among those revealed.
    count = max(next(rank for rank, (at, _) in enumerate(ranking, 1) if at == node) for node in NODES)
    assert count <= 20, "the plaintext ranking puts one node's records far below the other's"
    chosen = ranking[:count]
    before = _audit_entries(space, "node-us", "Reveal")

    result = _run_match(
        coordinator, projection,
        "--top", str(count), "--reveal", str(count),
        "--node", f"node-us={space.node_addresses['node-us']}",
        "--node", f"office-eu={space.node_addresses['node-eu']}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    us_ids = [record_id for node, record_id in chosen if node == "node-us"]
    store = DatasetStore.for_node(space.members["node-us"].parent)
    titles = {
        row[store.info(DATASET).id_field]: row["title"]
        for row in store.fetch(DATASET, us_ids, ["title"]).rows
    }
    lines = result.stdout.splitlines()
    for node, record_id in chosen:
        [line] = [line for line in lines if record_id in line]
        expected = titles[record_id] if node == "node-us" else NO_REVEAL_AGREEMENT
        assert expected[:40] in line, result.stdout  # a long title wraps onto the next lines
    assert f"revealed {len(us_ids)} of {count} titles" in result.stdout

    # node-us decided, counted and logged the one reveal; the coordinator saw no reveal at all.
    [entry] = _audit_entries(space, "node-us", "Reveal")[len(before) :]
    assert (entry["decision"], entry["agreement_id"], entry["actor"]) == (
        "allow",
        reveal_us.agreement_id,
        "carl",
    )
    assert entry["charges"] == {"reveal.records": len(us_ids)}
    actions = [event["action"] for event in coordinator.events()]
    assert "query.match" in actions and not any("reveal" in action for action in actions), actions


def test_a_node_s_refusal_is_reported_and_the_other_node_s_titles_still_come_back(space: Space) -> None:
    carl = space.identity("carl")
    agreements = [space.agreement("carl", node, "reveal") for node in NODES]
    us_id, eu_id = (
        DatasetStore.for_node(space.members[n].parent).embeddings(DATASET).record_ids[0] for n in NODES
    )
    chosen = [
        RankedRecord(0.9, "office-us", "node-us", us_id),
        RankedRecord(0.8, "office-eu", "node-eu", eu_id),
    ]
    # node-eu's address points at node-us, which holds no such agreement and refuses it.
    addresses = {"node-us": space.node_addresses["node-us"], "node-eu": space.node_addresses["node-us"]}
    revealed = reveal_titles(
        chosen,
        agreements,
        consumer=carl,
        token=space.token("carl"),
        addresses=addresses,
        datasets={"office-us": DATASET, "office-eu": DATASET},
    )
    assert revealed.titles[eu_id] == NOT_REVEALED and revealed.revealed == 1
    assert revealed.titles[us_id] not in (NOT_REVEALED, NO_REVEAL_AGREEMENT)
    assert list(revealed.refusals) == ["office-eu"]
    assert revealed.refusals["office-eu"].startswith("PERMISSION_DENIED: "), revealed.refusals


def test_ipspace_match_ranks_every_node_s_patents_for_a_need_as_plaintext_would(
    coordinator: Coordinator, projection: Projection
) -> None:
    space = coordinator.space
    _register(coordinator, "carl", ("node-us", "node-eu"))
    result = _run_match(coordinator, projection, "--top", "5", "--expand")
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
    # --expand alone: related terms printed before the query, the need matched as given
    assert result.stdout.index("second level:") < result.stdout.index("encrypted need sent")
    assert "first level:" in result.stdout and "need as matched" not in result.stdout
    assert (space.members["carl"] / "ckks" / "128" / "ckks-secret.key").stat().st_mode & 0o077 == 0
