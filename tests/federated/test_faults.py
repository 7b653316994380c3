"""Faults during federated jobs, on a real data space: a node lost mid-round, an agreement revoked mid-job,
the coordinator restarted mid-job.

The rule for a lost or refusing node: the job goes on while the SecAgg+ cohort still meets every agreement's
`min_cohort`, and otherwise fails with a reason that says so. Whatever happened, no job is left "running"
without a run behind it, every node's audit log still verifies offline (exported by a regulator, checked with
only the CA certificate), and every epsilon a node spent is accounted: the ledger in its database is exactly
the RDP history recomputed from the charges of its allowed Train entries.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit import AuditEntry, SignedTreeHead, decode_leaf, verify_bundle
from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.revocations import revoke
from coordinator.flower.control import ControlClient
from coordinator.job_spec import JobRecord, JobState
from crypto import Identity
from ipspace.audit_export import export_node_log
from ipspace.cli_identity import read_token
from policies.privacy_accountant import History, PrivacySpend, charge, history_from_json, spent_epsilon
from policies.spend_record import NOISE_UNITS, PRIVACY_NOISE, PRIVACY_SAMPLING, PRIVACY_STEPS
from tests.federated.conftest import COHORT_OF_ALL, FaultSpace

RECEIVED = b"Receiving: train message"  # a SuperNode's log line for each message of a round
MESSAGE_TIMEOUT_S = 120.0
ROUND_TIMEOUT_S = 240.0
JOB_TIMEOUT_S = 400.0
FAIL_WITHOUT_NODE_S = 30.0  # a round lost for good is known at once: the job has no reason to wait longer
WATCH_BOUND_S = 15.0  # a watched run that ended is noticed within the runner's 0.5 s poll


@dataclass(frozen=True)
class TrainEntry:
    agreement_id: str
    decision: str
    status: str
    reason: str


@dataclass(frozen=True)
class NodeAccount:
    """One node after a fault: its Train entries in log order, and each agreement's epsilon in its ledger."""

    trains: list[TrainEntry]
    epsilon: dict[str, float]  # agreement id -> epsilon spent, as the node's ledger holds it


# --- the checks every fault ends with ---------------------------------------------------------------------


class Regulator:
    """Exports every node's audit log and checks it offline, keeping each node's tree heads from one export to
    the next (as a regulator does): every export must extend all of the node's earlier heads."""

    def __init__(self, space: FaultSpace) -> None:
        self.space = space
        self.identity = Identity.load(space.regulator_dir)
        self.heads: dict[str, list[SignedTreeHead]] = {org: [] for org in space.nodes}

    def audit_and_account(self, out: Path) -> dict[str, NodeAccount]:
        """For every node: its log verifies with only the CA certificate, extends every head kept before and
        holds the entries read here; each agreement's ledger is exactly the history recomputed from the
        charges of its allowed Train entries, and no ledger exists without them. Returns what each spent."""
        ca_cert_pem = self.space.local.ca.cert_pem
        accounts = {}
        for org, address in self.space.addresses.items():
            leaves, ledgers = _node_snapshot(self.space.nodes[org])
            bundle = out / f"audit-{org}"
            token = read_token(self.space.regulator_dir)
            with NodeClient(address, self.identity, token) as client:
                fresh = export_node_log(client, bundle, ca_cert_pem=ca_cert_pem, kept_heads=self.heads[org])
            summary = verify_bundle(bundle, ca_cert_pem, known_heads=self.heads[org])
            assert summary.org == org
            self.heads[org].append(fresh)
            exported = (bundle / "entries.jsonl").read_bytes().splitlines()
            assert exported[: len(leaves)] == leaves, f"{org}: the verified log is not the log read here"
            accounts[org] = _account(org, [decode_leaf(leaf)[1] for leaf in leaves], ledgers)
        return accounts


def _account(
    org: str, entries: list[AuditEntry], ledgers: dict[str, tuple[str, float, float]]
) -> NodeAccount:
    trains = [
        TrainEntry(entry.agreement_id or "", entry.decision, entry.status, entry.reason)
        for entry in entries
        if entry.method.endswith("/Train")
    ]
    recomputed: dict[str, History] = {}
    for entry in entries:
        if entry.method.endswith("/Train") and entry.decision == "allow":
            recomputed[entry.agreement_id] = charge(
                recomputed.get(entry.agreement_id, ()), _spend_of(entry.charges)
            )
    assert set(ledgers) == set(recomputed), f"{org}: ledgers without Train entries, or the reverse"
    epsilon = {}
    for agreement_id, (ledger_json, spent, delta) in ledgers.items():
        assert history_from_json(ledger_json) == recomputed[agreement_id], f"{org}: {agreement_id}"
        assert spent == pytest.approx(spent_epsilon(recomputed[agreement_id], delta), rel=1e-12)
        epsilon[agreement_id] = spent
    return NodeAccount(trains, epsilon)


@pytest.fixture(scope="module")
def regulator(faults: FaultSpace) -> Regulator:
    return Regulator(faults)


def _node_snapshot(node_dir: Path) -> tuple[list[bytes], dict[str, tuple[str, float, float]]]:
    """The node's audit leaves and privacy ledgers, read in one transaction: the ledger is charged in the
    same transaction as the Train entry, so the two agree in one snapshot even while a node still trains."""
    uri = (node_dir / "node.db").resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as db:
        db.execute("BEGIN")
        leaves = [bytes(row[0]) for row in db.execute("SELECT leaf FROM entries ORDER BY idx")]
        ledgers = {
            row[0]: (row[1], row[2], row[3])
            for row in db.execute(
                "SELECT agreement_id, ledger_json, epsilon_spent, delta FROM privacy_ledgers"
            )
        }
        db.execute("COMMIT")
    return leaves, ledgers


def _spend_of(charges: dict[str, int]) -> PrivacySpend:
    """The round's spend, as its entry's integer charges state it (policies/spend_record.py)."""
    return PrivacySpend(
        noise_multiplier=charges[PRIVACY_NOISE] / NOISE_UNITS,
        sample_rate=1 / charges[PRIVACY_SAMPLING],
        steps=charges[PRIVACY_STEPS],
    )


# --- driving a job into a fault ---------------------------------------------------------------------------

# A SecAgg+ round sends each node four messages: setup, share keys, collect masked vectors (where the
# ClientApp asks its node to train), unmask. Losing a node before its key shares went out differs from
# losing it after: only in the second case do the others hold its shares.
SETUP, COLLECT_MASKED_VECTORS = 1, 3


def _log_size(space: FaultSpace, org: str) -> int:
    return space.supernodes[org].log_path.stat().st_size


def _wait_for_message(space: FaultSpace, org: str, log_offset: int, number: int) -> None:
    """Wait until `org`'s SuperNode has received its `number`-th message past `log_offset` in its log."""
    process = space.supernodes[org]
    deadline = time.monotonic() + MESSAGE_TIMEOUT_S
    while time.monotonic() < deadline:
        with process.log_path.open("rb") as log:
            log.seek(log_offset)
            if log.read().count(RECEIVED) >= number:
                return
        assert process.alive(), f"{process.name} died on its own:\n{process.log_tail()}"
        time.sleep(0.05)
    raise AssertionError(f"{process.name} did not receive message {number} within {MESSAGE_TIMEOUT_S} s")


def _crash(space: FaultSpace, org: str) -> None:
    """SIGKILL the SuperNode's process group: no goodbye to the SuperLink, as when its host dies."""
    process = space.supernodes[org]
    os.killpg(process.pid, signal.SIGKILL)
    process.popen.wait(timeout=10)


def _lose_node_at(space: FaultSpace, org: str, log_offset: int, message: int, *, crash: bool = False) -> None:
    """Take `org`'s SuperNode away as it receives `message` of round 1: SIGKILL (`crash`) or SIGTERM, after
    which the SuperNode tells the SuperLink it leaves."""
    _wait_for_message(space, org, log_offset, message)
    if crash:
        _crash(space, org)
    else:
        space.supernodes[org].stop()


def _wait_for_rounds(space: FaultSpace, job_id: str, rounds: int) -> JobRecord:
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        record = space.store.get(job_id)
        if record.rounds_completed >= rounds:
            return record
        assert record.state in (JobState.QUEUED, JobState.RUNNING), (record.state, record.reason)
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not complete {rounds} round(s) within {ROUND_TIMEOUT_S} s")


def _wait_for_refusals(space: FaultSpace, agreements: dict[str, Agreement]) -> None:
    """Wait until each org's node has refused a Train call under its agreement."""
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    waiting = dict(agreements)
    while waiting and time.monotonic() < deadline:
        for org, agreement in list(waiting.items()):
            leaves, _ = _node_snapshot(space.nodes[org])
            entries = (decode_leaf(leaf)[1] for leaf in leaves)
            if any(
                e.method.endswith("/Train")
                and e.agreement_id == agreement.agreement_id
                and e.decision == "deny"
                for e in entries
            ):
                del waiting[org]
        time.sleep(0.5)
    assert not waiting, f"no Train refusal at {sorted(waiting)} within {ROUND_TIMEOUT_S} s"


def _agreement_of(agreements: list[Agreement], org: str) -> Agreement:
    return next(agreement for agreement in agreements if agreement.terms.provider_org == org)


def _trains(account: NodeAccount, agreement: Agreement) -> list[TrainEntry]:
    return [train for train in account.trains if train.agreement_id == agreement.agreement_id]


# --- a node lost mid-round --------------------------------------------------------------------------------


@pytest.mark.slow  # a crashed SuperNode stalls the round until Flower's 2 x 30 s heartbeat limit
def test_a_node_crashed_after_sharing_its_keys_leaves_a_cohort_that_meets_every_minimum(
    faults: FaultSpace, regulator: Regulator, tmp_path: Path
) -> None:
    agreements = faults.agreements("dp")  # min_cohort 2 each
    lost = "office-eu"
    survivors = set(faults.nodes) - {lost}
    offset = _log_size(faults, lost)
    job_id = faults.submit(agreements, rounds=2, epsilon=4.0, secagg=True)
    try:
        # Round 1's cohort is all three; its host dies as it is asked for its masked update.
        _lose_node_at(faults, lost, offset, COLLECT_MASKED_VECTORS, crash=True)
        record = faults.wait(job_id, JOB_TIMEOUT_S)
    finally:
        faults.start_supernode(lost)  # for the tests after this one

    assert record.state == JobState.SUCCEEDED, record.reason
    assert [round_.metrics["nodes"] for round_ in record.rounds] == [2.0, 2.0]
    assert [set(round_.epsilon_by_node) for round_ in record.rounds] == [survivors, survivors]
    accounts = regulator.audit_and_account(tmp_path)
    lost_agreement = _agreement_of(agreements, lost)
    assert _trains(accounts[lost], lost_agreement) == []  # it never trained: nothing spent, nothing listed
    assert lost_agreement.agreement_id not in accounts[lost].epsilon
    for org in survivors:
        agreement = _agreement_of(agreements, org)
        assert [(t.decision, t.status) for t in _trains(accounts[org], agreement)] == [("allow", "OK")] * 2
        assert accounts[org].epsilon[agreement.agreement_id] == pytest.approx(
            record.rounds[-1].epsilon_by_node[org]
        )


def test_a_node_lost_before_sharing_its_keys_leaves_a_round_that_meets_every_minimum(
    faults: FaultSpace, regulator: Regulator, tmp_path: Path
) -> None:
    agreements = faults.agreements("dp")  # min_cohort 2 each
    lost = "office-us"
    survivors = set(faults.nodes) - {lost}
    offset = _log_size(faults, lost)
    job_id = faults.submit(agreements, rounds=1, epsilon=4.0, secagg=True)
    try:
        _lose_node_at(faults, lost, offset, SETUP)
        record = faults.wait(job_id, JOB_TIMEOUT_S)
    finally:
        faults.start_supernode(lost)

    accounts = regulator.audit_and_account(tmp_path)
    for org in survivors:  # they trained, and their nodes charged it: whatever the job says, it is accounted
        agreement = _agreement_of(agreements, org)
        assert [(t.decision, t.status) for t in _trains(accounts[org], agreement)] == [("allow", "OK")]
        assert accounts[org].epsilon[agreement.agreement_id] > 0
    assert record.state == JobState.SUCCEEDED, record.reason
    assert [round_.metrics["nodes"] for round_ in record.rounds] == [2.0]
    assert set(record.rounds[0].epsilon_by_node) == survivors


def test_a_node_lost_after_sharing_its_keys_fails_a_job_whose_agreements_need_all_three(
    faults: FaultSpace, regulator: Regulator, tmp_path: Path
) -> None:
    agreements = faults.agreements("dp3")  # min_cohort 3 each
    lost = "office-apac"
    survivors = set(faults.nodes) - {lost}
    offset = _log_size(faults, lost)
    job_id = faults.submit(agreements, rounds=1, epsilon=4.0, secagg=True)
    try:
        _lose_node_at(faults, lost, offset, COLLECT_MASKED_VECTORS)
        record = faults.wait(job_id, JOB_TIMEOUT_S)
    finally:
        faults.start_supernode(lost)

    assert record.state == JobState.FAILED, (record.state, record.rounds)
    assert f"round 1 aggregated 2 nodes; the job's agreements need at least {COHORT_OF_ALL}" in record.reason
    assert "Node Unavailable" in record.reason  # the lost node, named with Flower's reason
    assert record.rounds == () and faults.store.model_path(record) is None
    accounts = regulator.audit_and_account(tmp_path)
    for org in survivors:  # they trained (three had shared keys): spent, charged and logged, if not reported
        agreement = _agreement_of(agreements, org)
        assert [(t.decision, t.status) for t in _trains(accounts[org], agreement)] == [("allow", "OK")]
        assert accounts[org].epsilon[agreement.agreement_id] > 0


def test_a_node_lost_before_sharing_its_keys_fails_a_job_whose_agreements_need_all_three(
    faults: FaultSpace, regulator: Regulator, tmp_path: Path
) -> None:
    agreements = faults.agreements("dp3")
    lost = "office-apac"
    survivors = set(faults.nodes) - {lost}
    offset = _log_size(faults, lost)
    job_id = faults.submit(agreements, rounds=1, epsilon=4.0, secagg=True)
    try:
        _lose_node_at(faults, lost, offset, SETUP)
        _wait_for_refusals(faults, {org: _agreement_of(agreements, org) for org in survivors})
        # The round is lost now; the job must end while the node is still away, not when it returns.
        record = faults.wait(job_id, FAIL_WITHOUT_NODE_S)
    finally:
        faults.start_supernode(lost)
        faults.wait(job_id, JOB_TIMEOUT_S)  # a stuck job goes on once the node is back: let it end here

    assert record.state == JobState.FAILED, (record.state, record.rounds)
    assert f"cohort of at least {COHORT_OF_ALL} nodes; this round has 2" in record.reason
    assert faults.store.model_path(record) is None
    accounts = regulator.audit_and_account(tmp_path)
    for org in survivors:  # each refused to train in a cohort smaller than its agreement's: nothing spent
        agreement = _agreement_of(agreements, org)
        refusals = _trains(accounts[org], agreement)
        assert [(t.decision, t.status) for t in refusals] == [("deny", "FAILED_PRECONDITION")]
        assert f"cohort of at least {COHORT_OF_ALL} nodes; this round has 2" in refusals[0].reason
        assert agreement.agreement_id not in accounts[org].epsilon


# --- an agreement revoked mid-job -------------------------------------------------------------------------


def test_an_agreement_revoked_mid_job_is_refused_the_next_round_and_the_job_goes_on(
    faults: FaultSpace, regulator: Regulator, tmp_path: Path
) -> None:
    agreements = faults.agreements("dp")  # min_cohort 2: two nodes still make a cohort
    org = "office-us"
    revoked = _agreement_of(agreements, org)
    job_id = faults.submit(agreements, rounds=2, epsilon=4.0, secagg=True)
    after_round_one = _wait_for_rounds(faults, job_id, 1)
    builder = Identity.load(faults.builder_dir)
    revocation = revoke(revoked.agreement_id, builder, "the builder ended the project")
    with NodeClient(faults.addresses[org], builder, read_token(faults.builder_dir)) as client:
        client.revoke(revocation.model_dump_json().encode())
    record = faults.wait(job_id, JOB_TIMEOUT_S)

    assert record.state == JobState.SUCCEEDED, record.reason
    assert [round_.metrics["nodes"] for round_ in record.rounds] == [3.0, 2.0]
    assert set(record.rounds[0].epsilon_by_node) == set(faults.nodes)
    assert set(record.rounds[1].epsilon_by_node) == set(faults.nodes) - {org}
    accounts = regulator.audit_and_account(tmp_path)
    trains = _trains(accounts[org], revoked)
    assert [(t.decision, t.status) for t in trains] == [("allow", "OK"), ("deny", "PERMISSION_DENIED")]
    assert "revoked" in trains[-1].reason
    # What it spent before the revocation is all it spent, and the job reported exactly that.
    assert accounts[org].epsilon[revoked.agreement_id] == pytest.approx(
        after_round_one.rounds[0].epsilon_by_node[org]
    )


# --- the coordinator restarted mid-job --------------------------------------------------------------------


def test_a_restarted_coordinator_keeps_a_job_whose_run_goes_on(
    faults: FaultSpace, regulator: Regulator, tmp_path: Path
) -> None:
    agreements = faults.agreements("dp")
    offset = _log_size(faults, "office-us")
    job_id = faults.submit(agreements, rounds=1, epsilon=4.0, secagg=True)
    _wait_for_message(faults, "office-us", offset, SETUP)  # round 1 is under way
    faults.stop_coordinator()
    interrupted = faults.start_coordinator()  # the SuperLink still runs the job's run
    assert job_id not in {job.job_id for job in interrupted}
    assert faults.store.get(job_id).state == JobState.RUNNING
    record = faults.wait(job_id, JOB_TIMEOUT_S)

    assert record.state == JobState.SUCCEEDED, record.reason
    assert [round_.metrics["nodes"] for round_ in record.rounds] == [3.0]
    accounts = regulator.audit_and_account(tmp_path)
    for org in faults.nodes:
        agreement = _agreement_of(agreements, org)
        assert [(t.decision, t.status) for t in _trains(accounts[org], agreement)] == [("allow", "OK")]
        assert accounts[org].epsilon[agreement.agreement_id] == pytest.approx(
            record.rounds[-1].epsilon_by_node[org]
        )


def test_a_restarted_coordinator_marks_a_job_whose_run_is_gone_interrupted(
    faults: FaultSpace, regulator: Regulator, tmp_path: Path
) -> None:
    agreements = faults.agreements("dp")
    job_id = faults.submit(agreements, rounds=2, epsilon=4.0, secagg=True)
    _wait_for_rounds(faults, job_id, 1)
    faults.stop_coordinator()
    _stop_run(faults, job_id)  # while the coordinator is down, the job's run ends (stopped on the SuperLink)
    interrupted = faults.start_coordinator()

    assert [job.job_id for job in interrupted] == [job_id]
    record = faults.store.get(job_id)
    assert record.state == JobState.INTERRUPTED
    assert record.reason == "the coordinator restarted while the job was running; last completed round 1"
    time.sleep(5)  # the stopped ServerApp cannot move the job on after that
    assert faults.store.get(job_id).state == JobState.INTERRUPTED
    assert faults.store.get(job_id).rounds_completed == 1
    accounts = regulator.audit_and_account(tmp_path)  # a round-2 step a node had begun is charged and logged
    for org in faults.nodes:
        agreement = _agreement_of(agreements, org)
        trains = _trains(accounts[org], agreement)
        assert (trains[0].decision, trains[0].status) == ("allow", "OK")
        reported = record.rounds[0].epsilon_by_node[org]
        assert accounts[org].epsilon[agreement.agreement_id] >= reported * (1 - 1e-12)


def test_a_job_a_restarted_coordinator_kept_is_not_left_running_when_its_run_ends(
    faults: FaultSpace, regulator: Regulator, tmp_path: Path
) -> None:
    agreements = faults.agreements("dp")
    offset = _log_size(faults, "office-us")
    job_id = faults.submit(agreements, rounds=1, epsilon=4.0, secagg=True)
    _wait_for_message(faults, "office-us", offset, SETUP)
    faults.stop_coordinator()
    assert job_id not in {job.job_id for job in faults.start_coordinator()}  # its run is alive: kept
    _stop_run(faults, job_id)  # then the run ends, and its ServerApp with it, before the job does
    deadline = time.monotonic() + WATCH_BOUND_S
    while faults.store.get(job_id).state == JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
    record = faults.store.get(job_id)

    regulator.audit_and_account(tmp_path)
    assert record.state in (JobState.FAILED, JobState.INTERRUPTED), record.state
    assert str(faults.run_id(job_id)) in record.reason


def _stop_run(space: FaultSpace, job_id: str) -> None:
    control = ControlClient(space.superlink_address, space.local.ca.cert_pem)
    try:
        assert control.stop_run(space.run_id(job_id))
    finally:
        control.close()
