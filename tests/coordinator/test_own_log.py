"""The coordinator's own signed log: every state-changing call lands in it, allowed or refused; a regulator
exports it over REST (``ipspace audit export --coordinator``) and the offline verifier checks it like a
node's; tampering is caught; a call that cannot be recorded fails.

Real coordinator over mTLS (tests/coordinator/conftest.py), real nodes behind it, the real CLI command run
in-process.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit import AuditCorrupted, BundleInvalid, SignedTreeHead, leaf_hash, verify_bundle, verify_consistency
from contracts.agreements import Agreement
from coordinator.api import AUDIT_UNAVAILABLE, create_app
from coordinator.job_spec import JobState
from coordinator.jobs import JobStore
from coordinator.own_log_routes import LOG_UNAVAILABLE, MAX_ENTRIES_PER_PAGE
from ipspace.cli import app as cli_app
from tests.coordinator.conftest import (
    DATASET,
    PURPOSE,
    Coordinator,
    FakeRunner,
    Space,
    coordinator_settings,
    register,
    serve,
    submission,
)

LOG_ROUTES = (
    "/audit/log/head",
    "/audit/log/entries?start=0&end=0",
    "/audit/log/consistency?first=1&second=1",
)
UNKNOWN_AGREEMENT = "sha256:" + "0" * 64


def _match_body(agreement_id: str) -> dict:
    """A well-formed match query (its ciphertexts are placeholders: it is refused before any node sees it)."""
    return {
        "parameters": {"poly_modulus_degree": 8192, "coeff_modulus_bits": [60, 40, 60], "scale_bits": 40},
        "evaluation_keys": "AAAA",
        "query": "AAAA",
        "projection": "AAAA",
        "grants": {agreement_id: "{}"},
    }


def _export(coordinator: Coordinator, out: Path, *, heads: Path | None = None) -> str:
    """Run ``ipspace audit export --coordinator`` as the regulator; returns what it printed."""
    args = ["audit", "export", str(out), "--coordinator", coordinator.base_url]
    args += ["--identity", str(coordinator.space.members["rita"])]
    if heads is not None:
        args += ["--heads", str(heads)]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _ca(space: Space) -> bytes:
    return space.identity("rita").ca_cert_pem


def test_every_state_changing_call_is_recorded_allowed_or_refused(coordinator: Coordinator) -> None:
    space = coordinator.space
    agreement = space.agreement("bea", "node-us")
    other = space.agreement("bea", "node-eu")
    half_signed = Agreement(terms=agreement.terms, signatures=agreement.signatures[:1])
    body = submission(space, [agreement, other])
    job_id = body["job_id"]
    with coordinator.client("bea") as bea, coordinator.client("gil") as gil:
        assert register(bea, agreement).status_code == 201
        assert register(bea, agreement).status_code == 200
        assert register(bea, other).status_code == 201
        assert register(gil, agreement).status_code == 403  # not a party
        assert register(bea, half_signed).status_code == 400
        assert bea.post("/agreements", json={"terms": {}}).status_code == 422
        assert bea.post("/jobs", json=body).status_code == 201
        assert bea.post(f"/jobs/{job_id}/cancel").status_code == 202
        assert bea.get("/jobs/no-such-job/model").status_code == 404
    with coordinator.client("carl") as carl:
        assert carl.post("/queries/match", json=_match_body(UNKNOWN_AGREEMENT)).status_code == 400
        assert carl.post(f"/jobs/{job_id}/cancel").status_code == 403
    with coordinator.client("rita") as rita:
        assert register(rita, agreement).status_code == 403  # a regulator registers nothing
        assert rita.post(f"/jobs/{job_id}/valuations", json={}).status_code == 403

    events = coordinator.events()
    assert [event["index"] for event in events] == list(range(len(events)))
    assert {event["node"] for event in events} == {"coordinator"}
    rows = [(e["action"], e["target"], e["decision"], e["status"], e["outcome"]) for e in events]
    joined = ",".join(sorted([agreement.agreement_id, other.agreement_id]))
    assert rows == [
        ("agreement.register", agreement.agreement_id, "allow", 201, "ok"),
        ("agreement.register", agreement.agreement_id, "allow", 200, "ok"),
        ("agreement.register", other.agreement_id, "allow", 201, "ok"),
        ("agreement.register", agreement.agreement_id, "deny", 403, "refused"),
        ("agreement.register", agreement.agreement_id, "deny", 400, "refused"),
        ("agreement.register", "/agreements", "deny", 422, "refused"),  # the body was not read
        ("job.submit", job_id, "allow", 201, "ok"),
        ("job.cancel", job_id, "allow", 202, "ok"),
        ("model.download", "no-such-job", "deny", 404, "refused"),
        ("query.match", UNKNOWN_AGREEMENT, "deny", 400, "refused"),
        ("job.cancel", f"/jobs/{job_id}/cancel", "deny", 403, "refused"),
        ("agreement.register", "/agreements", "deny", 403, "refused"),
        ("query.valuate", f"/jobs/{job_id}/valuations", "deny", 403, "refused"),
    ]
    registered, again, _, not_party, half, _, submitted, cancelled, _, match, by_consumer, by_regulator, _ = (
        events
    )
    assert (registered["reason"], again["reason"]) == ("registered", "already registered")
    assert (registered["dataset"], registered["purpose"]) == (DATASET, PURPOSE)
    assert registered["agreement_id"] == agreement.agreement_id
    assert not_party["actor"] == {"name": "gil", "org": "globex", "role": "builder"}
    assert "consumer" in half["reason"] and "provider" in half["reason"]
    # A job over several agreements records them all, sorted and joined by ",".
    assert (submitted["agreement_id"], submitted["dataset"], submitted["purpose"]) == (
        joined,
        DATASET,
        PURPOSE,
    )
    assert cancelled["agreement_id"] == joined and cancelled["reason"] == "cancelled"
    assert match["agreement_id"] == UNKNOWN_AGREEMENT and "is not registered" in match["reason"]
    assert "open to the roles builder" in by_consumer["reason"] and by_consumer["role"] == "consumer"
    assert by_regulator["actor"] == {"name": "rita", "org": "ip-authority", "role": "regulator"}


class FailingRunner(FakeRunner):
    def start(self, job_id: str) -> None:
        raise RuntimeError(f"no SuperLink for {job_id} (secret internals)")


def test_a_failure_is_recorded_as_an_error_with_its_exception_type_only(space: Space, tmp_path: Path) -> None:
    failing = serve(space, coordinator_settings(space, tmp_path / "coordinator"), FailingRunner())
    try:
        agreement = space.agreement("bea", "node-us")
        body = submission(space, [agreement])
        with failing.client("bea") as client:
            assert register(client, agreement).status_code == 201
            assert client.post("/jobs", json=body).status_code == 500
    finally:
        failing.server.stop()
    [event] = failing.events(body["job_id"])
    assert (event["decision"], event["status"], event["reason"], event["outcome"]) == (
        "deny",
        500,
        "RuntimeError",
        "error",
    )


def test_the_regulator_exports_the_log_and_it_verifies_like_a_node_s(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    space = coordinator.space
    agreement = space.agreement("bea", "node-us")
    with coordinator.client("bea") as client:
        assert register(client, agreement).status_code == 201
        assert client.post("/jobs", json=submission(space, [agreement])).status_code == 201
    heads = tmp_path / "rita-heads.json"
    printed = _export(coordinator, tmp_path / "first", heads=heads)
    assert "exported 2 entries of coordinator" in printed

    summary = verify_bundle(tmp_path / "first", _ca(space))
    assert (summary.node, summary.org, summary.entries) == ("coordinator", "ipspace-ops", 2)
    leaves = (tmp_path / "first" / "entries.jsonl").read_bytes().splitlines()
    assert [json.loads(leaf)["method"] for leaf in leaves] == ["agreement.register", "job.submit"]
    assert len(coordinator.events()) == 2  # reading the log does not grow it

    verified = CliRunner().invoke(
        cli_app, ["audit", "verify", str(tmp_path / "first"), "--ca", str(space.members["rita"] / "ca.crt")]
    )
    assert verified.exit_code == 0 and "OK coordinator (ipspace-ops): 2 entries" in verified.output

    # Later: more calls, a second export with the head kept from the first, linked by a consistency proof.
    with coordinator.client("bea") as client:
        assert register(client, space.agreement("bea", "node-eu")).status_code == 201
    _export(coordinator, tmp_path / "second", heads=heads)
    kept = [SignedTreeHead.from_dict(item) for item in json.loads(heads.read_text())]
    assert [head.tree_size for head in kept] == [2, 3]
    links = json.loads((tmp_path / "second" / "consistency.json").read_text())
    assert [(link["first"], link["second"]) for link in links] == [(2, 3)]
    summary = verify_bundle(tmp_path / "second", _ca(space), known_heads=kept[:1])
    assert (summary.entries, summary.heads) == (3, 2)

    with coordinator.client("rita") as client:
        proof = client.get("/audit/log/consistency", params={"first": 2, "second": 3}).json()["proof"]
        latest = SignedTreeHead.from_dict(client.get("/audit/log/head").json())
    assert latest == kept[1]
    verify_consistency(2, 3, kept[0].root, kept[1].root, [bytes.fromhex(value) for value in proof])


def test_an_entry_edited_while_the_coordinator_is_down_is_caught(space: Space, tmp_path: Path) -> None:
    settings = coordinator_settings(space, tmp_path / "coordinator", with_down_node=False)
    first = serve(space, settings, FakeRunner())
    try:
        with first.client("carl") as client:
            for _ in range(3):
                assert client.post("/jobs", json={}).status_code == 403
        _export(first, tmp_path / "bundle")
    finally:
        first.server.stop()  # a clean stop signs a closing head over all three entries

    # The edited entry's leaf and recorded hash both rewritten: only the signed root still knows.
    with closing(sqlite3.connect(settings.own_log_file)) as db:
        leaf = db.execute("SELECT leaf FROM entries WHERE idx = 1").fetchone()[0]
        forged = bytes(leaf).replace(b'"decision":"deny"', b'"decision":"allow"')
        assert forged != leaf
        db.execute("DROP TRIGGER entries_refuse_update")
        db.execute("UPDATE entries SET leaf = ?, leaf_hash = ? WHERE idx = 1", (forged, leaf_hash(forged)))
        db.commit()
    with pytest.raises(AuditCorrupted, match="no longer hash to the root signed at size 3"):
        create_app(settings, FakeRunner())

    # The same edit in an exported bundle is named by the offline verifier.
    entries = tmp_path / "bundle" / "entries.jsonl"
    lines = entries.read_bytes().splitlines()
    lines[1] = lines[1].replace(b'"decision":"deny"', b'"decision":"allow"')
    shutil.copytree(tmp_path / "bundle", tmp_path / "tampered")
    (tmp_path / "tampered" / "entries.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(BundleInvalid) as invalid:
        verify_bundle(tmp_path / "tampered", _ca(space))
    assert invalid.value.first_bad_index == 1


@pytest.mark.parametrize("member", ["bea", "gil", "carl", "node-us", "coordinator"])
def test_only_a_regulator_reads_the_log(shared_coordinator: Coordinator, member: str) -> None:
    with shared_coordinator.client(member) as client:
        for path in LOG_ROUTES:
            response = client.get(path)
            assert response.status_code == 403, (path, response.text)
            assert "open to the roles regulator" in response.json()["detail"]
    with shared_coordinator.client("rita") as client:
        assert [client.get(path).status_code for path in LOG_ROUTES[:2]] == [200, 200]


BAD_RANGES = [
    ("entries", {"start": 2, "end": 1}, "is not a range"),
    ("entries", {"start": -1, "end": 1}, "is not a range"),
    ("entries", {"start": 0, "end": 2}, "the log holds 1 entries; asked up to end=2"),
    ("entries", {"start": 0, "end": MAX_ENTRIES_PER_PAGE + 1}, f"at most {MAX_ENTRIES_PER_PAGE} entries"),
    ("entries", {"start": 10**30, "end": 10**30}, "the log holds 1 entries"),
    ("consistency", {"first": 0, "second": 1}, "needs 0 < first <= second <= 1"),
    ("consistency", {"first": 2, "second": 1}, "got first=2, second=1"),
    ("consistency", {"first": 1, "second": 2}, "needs 0 < first <= second <= 1"),
]


def test_a_range_outside_the_log_is_400_with_the_reason(coordinator: Coordinator) -> None:
    with coordinator.client("carl") as client:
        assert client.post("/jobs", json={}).status_code == 403  # now the log holds one entry
    with coordinator.client("rita") as client:
        for path, params, expected in BAD_RANGES:
            response = client.get(f"/audit/log/{path}", params=params)
            assert response.status_code == 400, (path, params, response.text)
            assert expected in response.json()["detail"], (path, params, response.text)
        assert client.get("/audit/log/entries", params={"start": "x", "end": 1}).status_code == 422
        page = client.get("/audit/log/entries", params={"start": 0, "end": 1}).json()
    assert (page["start"], page["end"], page["tree_size"], len(page["leaves"])) == (0, 1, 1, 1)
    assert json.loads(page["leaves"][0])["method"] == "job.submit"


def test_a_call_that_cannot_be_recorded_fails_and_its_job_is_withdrawn(coordinator: Coordinator) -> None:
    space = coordinator.space
    agreement = space.agreement("bea", "node-us")
    with coordinator.client("bea") as client:
        assert register(client, agreement).status_code == 201
    recorded = len(coordinator.events())
    coordinator.app.state.own_log.close()  # every append now fails, as on a full or lost disk

    body = submission(space, [agreement])
    with coordinator.client("bea") as bea, coordinator.client("carl") as carl:
        submitted = bea.post("/jobs", json=body)
        refused = carl.post("/jobs", json=body)  # a refusal that can not be recorded is not answered either
        malformed = bea.post("/jobs", json={**body, "rounds": 0})
    for response in (submitted, refused, malformed):
        assert response.status_code == 503 and response.json() == {"detail": AUDIT_UNAVAILABLE}
    job = JobStore(coordinator.settings.database, coordinator.settings.models_dir).get(body["job_id"])
    assert job.state == JobState.CANCELLED and "audit log could not record it" in job.reason
    assert coordinator.runner.cancelled == [body["job_id"]]
    with coordinator.client("rita") as client:
        for path, params in (("head", {"fresh": "true"}), ("entries", {"start": 0, "end": 1})):
            response = client.get(f"/audit/log/{path}", params=params)
            assert response.status_code == 503 and response.json() == {"detail": LOG_UNAVAILABLE}
    assert len(coordinator.events()) == recorded
