"""Every REST operation of the coordinator, fuzzed from its own OpenAPI schema over real mTLS (schemathesis
4), and the cross-role leaks checked request by request.

The schema is read from the running coordinator's /openapi.json, so an operation added later is fuzzed
without a change here. Each case goes to the socket once as every role: builders of two orgs, a consumer, a
regulator, a provider node, and three callers that must not get in (no token, a malformed one, one bound to
another certificate). The counts are printed (run with ``-s``) and written as JSON: to the test's tmp dir, or
to $IPSPACE_TEST_ARTEFACTS when it is set (CI sets it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from contracts.agreements import Agreement
from coordinator.job_spec import JobState
from coordinator.jobs import JobStore
from crypto import Role
from ipspace.cli_identity import TOKEN_FILE
from tests.coordinator import _fuzz
from tests.coordinator.conftest import Coordinator, register, submission

MAX_EXAMPLES = 25  # cases per operation, each sent as every caller
MIN_EXAMPLES = 5  # fewer for an operation that takes input means the time budget was too short to mean much
TIME_BUDGET_S = 90.0  # for the whole fuzz: each operation gets an even share of what is left when it starts
REPORT_NAME = "schema_fuzz.json"
WEIGHTS = [np.full((2, 2), 0.25, dtype=np.float32), np.array([1.0, -1.0], dtype=np.float32)]


@dataclass(frozen=True)
class World:
    """The module's coordinator with jobs and agreements of two orgs, and its published schema."""

    coordinator: Coordinator
    document: dict
    jobs: dict[str, list[str]]  # org -> its job ids
    agreements: dict[str, list[Agreement]]  # org -> the agreements it registered

    def client(self, member: str, **options: str) -> httpx.Client:
        return self.coordinator.client(member, **options)

    def known_values(self) -> dict[str, list[str]]:
        """Real ids for the fuzz to put in place of made-up ones: jobs and agreements of every org, nodes."""
        agreement_ids = [agreement.agreement_id for group in self.agreements.values() for agreement in group]
        return {
            "job_id": [job_id for ids in self.jobs.values() for job_id in ids],
            "agreements": agreement_ids,
            "grants": agreement_ids,
            "node": [node.name for node in self.coordinator.settings.nodes],
        }

    def secrets(self) -> _fuzz.Secrets:
        readers: dict[str, frozenset[str]] = {}
        for org, job_ids in self.jobs.items():
            readers.update({job_id: frozenset({org}) for job_id in job_ids})
        for agreements in self.agreements.values():
            for agreement in agreements:
                parties = frozenset({agreement.terms.consumer_org, agreement.terms.provider_org})
                readers[agreement.agreement_id] = parties
        settings = self.coordinator.settings
        return _fuzz.Secrets(readers, (str(settings.data_dir), str(self.coordinator.space.root)))


def _registered(coordinator: Coordinator, member: str, node: str, offer_id: str) -> Agreement:
    agreement = coordinator.space.agreement(member, node, offer_id)
    with coordinator.client(member) as client:
        assert register(client, agreement).status_code in (200, 201)
    return agreement


def _submitted(coordinator: Coordinator, member: str, agreement: Agreement) -> str:
    body = submission(coordinator.space, [agreement])
    with coordinator.client(member) as client:
        response = client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return body["job_id"]


def _finished(coordinator: Coordinator, job_id: str) -> str:
    """Play the ServerApp's side: the job ran and saved its model."""
    store = JobStore(coordinator.settings.database, coordinator.settings.models_dir)
    store.set_state(job_id, JobState.RUNNING)
    store.save_model(job_id, WEIGHTS)
    store.set_state(job_id, JobState.SUCCEEDED)
    return job_id


@pytest.fixture(scope="module")
def world(shared_coordinator: Coordinator) -> World:
    coordinator = shared_coordinator
    acme_training = _registered(coordinator, "bea", "node-us", "train")  # node-us allows model export
    acme_matching = _registered(coordinator, "carl", "node-us", "match")
    globex_training = _registered(coordinator, "gil", "node-us", "train")
    jobs = {
        "acme": [
            _finished(coordinator, _submitted(coordinator, "bea", acme_training)),
            _submitted(coordinator, "bea", acme_training),
        ],
        "globex": [_submitted(coordinator, "gil", globex_training)],
    }
    with coordinator.client("bea") as client:
        document = client.get("/openapi.json").raise_for_status().json()
    agreements = {"acme": [acme_training, acme_matching], "globex": [globex_training]}
    return World(coordinator, document, jobs, agreements)


def _callers(coordinator: Coordinator) -> list[_fuzz.Caller]:
    space = coordinator.space

    def member(label: str, name: str, role: Role) -> _fuzz.Caller:
        principal = space.identity(name).principal()
        assert principal.role == role, (name, principal)
        return _fuzz.Caller(
            label,
            space.members[name],
            f"Bearer {space.token(name)}",
            org=principal.org,
            role=role,
            authorization_in_shell=f"Bearer $(cat {space.members[name] / TOKEN_FILE})",
        )

    borrowed = space.members["gil"] / TOKEN_FILE
    return [
        member("builder-acme", "bea", Role.BUILDER),
        member("builder-globex", "gil", Role.BUILDER),
        member("consumer-acme", "carl", Role.CONSUMER),
        member("regulator", "rita", Role.REGULATOR),
        member("provider", "node-us", Role.PROVIDER),
        _fuzz.Caller("no-token", space.members["bea"], None),
        _fuzz.Caller(
            "junk-token", space.members["bea"], "Bearer not-a-token", authorization_in_shell="Bearer x"
        ),
        # gil's valid token over bea's certificate: bound to another certificate (RFC 8705).
        _fuzz.Caller(
            "borrowed-token",
            space.members["bea"],
            f"Bearer {space.token('gil')}",
            authorization_in_shell=f"Bearer $(cat {borrowed})",
        ),
    ]


@pytest.fixture
def sessions(world: World) -> Iterator[list[_fuzz.CallerSession]]:
    opened = [_fuzz.CallerSession(caller) for caller in _callers(world.coordinator)]
    try:
        yield opened
    finally:
        for session in opened:  # the server's graceful shutdown waits for kept-alive connections
            session.close()


def _report_path(tmp_path: Path) -> Path:
    if os.environ.get("IPSPACE_TEST_ARTEFACTS"):
        folder = Path(os.environ["IPSPACE_TEST_ARTEFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        return folder / REPORT_NAME
    return tmp_path / REPORT_NAME


def test_every_operation_answers_every_role_without_a_5xx_an_undeclared_status_or_a_leak(
    world: World, sessions: list[_fuzz.CallerSession], tmp_path: Path
) -> None:
    schema = _fuzz.load_schema(world.document)
    # Reads first: they finish well inside their share of the time, and what they leave goes to the writes.
    operations = sorted(_fuzz.operations(schema), key=lambda op: (op.method.upper() != "GET", op.path))
    tally = _fuzz.Tally()
    fuzzer = _fuzz.Fuzzer(
        world.coordinator.base_url,
        sessions,
        world.secrets(),
        tally,
        known_values=world.known_values(),
        max_examples=MAX_EXAMPLES,
    )
    started = time.monotonic()
    for done, operation in enumerate(operations):
        left = TIME_BUDGET_S - (time.monotonic() - started)
        fuzzer.fuzz(operation, seconds=left / (len(operations) - done))
    tally.seconds = time.monotonic() - started

    report = tally.report()
    path = _report_path(tmp_path)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{tally.table([session.caller.label for session in sessions])}")
    print(
        f"{report['cases']} cases, {report['requests']} requests in {report['seconds']} s; "
        f"failures by check: {report['failures_by_check']}; "
        f"report: {path}"
    )

    fuzzed = {label for label, _ in tally.cases}
    assert fuzzed == {operation.label for operation in operations}
    for operation in operations:
        for session in sessions:
            assert tally.cases[(operation.label, session.caller.label)] >= 1, (operation.label, session)
        takes_input = operation.body or operation.path_parameters or operation.query
        if takes_input:
            assert tally.generated_for(operation.label) >= MIN_EXAMPLES, (operation.label, report)
    failures = report["findings"]
    assert not failures, (
        f"{report['failures_by_check']}; the first of each:\n{json.dumps(failures, indent=2)}"
    )


# --- cross-role leaks, checked deterministically ----------------------------------------------------------


def _not_found_detail(client: httpx.Client, method: str, path: str, **body: object) -> str:
    response = client.request(method, path, **body)
    assert response.status_code == 404, (method, path, response.text)
    return response.json()["detail"]


VALUATION_QUERY = {"parameter_set": "ckks-valuation-n16384-v1", "evaluation_keys": "", "features": ""}
JOB_PATHS = [
    ("GET", "/jobs/{job_id}", {}),
    ("GET", "/jobs/{job_id}/model", {}),
    ("GET", "/jobs/{job_id}/valuation", {}),
    ("POST", "/jobs/{job_id}/cancel", {}),
    ("POST", "/jobs/{job_id}/valuations", {"json": VALUATION_QUERY}),
]


def test_a_builder_of_another_org_finds_no_trace_of_a_job(world: World) -> None:
    job_id = _submitted(world.coordinator, "bea", world.agreements["acme"][0])
    missing = "job-0000000000000000"
    with world.client("gil") as gil:
        for method, template, body in JOB_PATHS:
            detail = _not_found_detail(gil, method, template.format(job_id=job_id), **body)
            unknown = _not_found_detail(gil, method, template.format(job_id=missing), **body)
            assert detail.replace(job_id, missing) == unknown, (method, template)
        listed = gil.get("/jobs").json()
    assert job_id not in {job["job_id"] for job in listed}
    assert {job["org"] for job in listed} == {"globex"}
    with world.client("bea") as bea:
        job = bea.get(f"/jobs/{job_id}").json()
    assert (job["state"], job["cancel_requested"]) == ("queued", False)  # gil's cancel changed nothing


def test_a_consumer_reads_no_job_and_a_builder_only_its_orgs(world: World) -> None:
    with world.client("carl") as carl:
        assert carl.get("/jobs").status_code == 403
        assert carl.get(f"/jobs/{world.jobs['acme'][0]}").status_code == 403
    with world.client("bea") as bea:
        listed = {job["job_id"]: job["org"] for job in bea.get("/jobs").json()}
    assert set(world.jobs["acme"]) <= set(listed) and set(listed.values()) == {"acme"}


@pytest.mark.parametrize(("member", "org"), [("bea", "acme"), ("carl", "acme"), ("gil", "globex")])
def test_a_member_lists_only_the_agreements_its_org_is_a_party_of(
    world: World, member: str, org: str
) -> None:
    with world.client(member) as client:
        listed = client.get("/agreements").json()
    parties = [
        {entry["agreement"]["terms"]["consumer_org"], entry["agreement"]["terms"]["provider_org"]}
        for entry in listed
    ]
    assert parties and all(org in pair for pair in parties)
    ids = {entry["agreement_id"] for entry in listed}
    assert {agreement.agreement_id for agreement in world.agreements[org]} <= ids
    others = {
        agreement.agreement_id
        for other, agreements in world.agreements.items()
        if other != org
        for agreement in agreements
    }
    assert not ids & others


def test_a_regulator_reads_every_job_but_downloads_no_model_and_values_nothing(world: World) -> None:
    every_job = [job_id for ids in world.jobs.values() for job_id in ids]
    done = world.jobs["acme"][0]
    with world.client("rita") as rita:
        listed = {job["job_id"] for job in rita.get("/jobs").json()}
        statuses = {job_id: rita.get(f"/jobs/{job_id}") for job_id in every_job}
        model = rita.get(f"/jobs/{done}/model")
        terms = rita.get(f"/jobs/{done}/valuation")
    assert set(every_job) <= listed
    assert {job_id: response.status_code for job_id, response in statuses.items()} == dict.fromkeys(
        every_job, 200
    )
    assert statuses[done].json()["state"] == "succeeded"
    assert (model.status_code, terms.status_code) == (403, 403)
    with world.client("bea") as bea:
        assert bea.get(f"/jobs/{done}/model").status_code == 200  # the model exists: rita's 403 is her role


def test_only_a_regulator_reads_audit_data(world: World, sessions: list[_fuzz.CallerSession]) -> None:
    """Every operation under /audit/ in the schema, sent as each role with its simplest valid request:
    builders and consumers get 403 from each; a provider gets 403 from each read (GET) and no 2xx from the
    others (it may hand in its own signed head, which this request is not); a regulator reads them all."""
    schema = _fuzz.load_schema(world.document)
    audit = [op for op in _fuzz.operations(schema) if op.path.startswith(_fuzz.AUDIT_PREFIX)]
    if not audit:
        pytest.skip("the coordinator's schema has no operation under /audit/ yet: no audit data to guard")
    by_label = {session.caller.label: session for session in sessions}
    base_url = world.coordinator.base_url
    regulator_reads = {}
    for operation in audit:
        case = _fuzz.simplest_case(operation)
        is_read = operation.method.upper() == "GET"
        for label in ("builder-acme", "builder-globex", "consumer-acme"):
            response = by_label[label].send(case, base_url)
            assert response.status_code == 403, (operation.label, label, response.text_lossy())
        provider = by_label["provider"].send(case, base_url)
        if not is_read:
            assert not 200 <= provider.status_code < 300, (operation.label, provider.text_lossy())
            continue
        assert provider.status_code == 403, (operation.label, provider.text_lossy())
        response = by_label["regulator"].send(case, base_url)
        assert response.status_code not in (401, 403) and response.status_code < 500, (
            operation.label,
            response.text_lossy(),
        )
        regulator_reads[operation.label] = response.status_code
    print(f"\nthe regulator's answers to the simplest read of each audit operation: {regulator_reads}")
    if regulator_reads:
        assert 200 in regulator_reads.values(), regulator_reads


def test_a_caller_without_a_token_gets_401_even_for_a_body_that_is_not_json(world: World) -> None:
    """Regression for the fuzz's first finding: FastAPI parsed the body before any dependency ran, so a body
    that is not JSON was answered (422) before the caller was refused. Fixed by
    `coordinator.auth.AuthenticateFirst`."""
    posted = [
        path
        for path, item in world.document["paths"].items()
        for method, operation in item.items()
        if method == "post" and "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert posted
    with world.client("bea", token="not-a-token") as client:
        answers = {
            (path, body): client.post(
                path.replace("{job_id}", "job-1"), content=body, headers={"content-type": "application/json"}
            ).status_code
            for path in posted
            for body in (b"\x00", b"\xff")  # not JSON; not UTF-8
        }
    assert set(answers.values()) == {401}, answers
