"""Train and Evaluate over a real node: the grant, the caller, the cohort and the privacy budget decide.

A node of its own (module scope) with 600 real Lens rows and four offers; every call goes over mTLS through
the gate, and the tests read the node's audit entries and privacy ledger from its files.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest

from contracts.agreements import Agreement
from contracts.client import NodeClient, NodeRefused
from contracts.job_grants import JobGrant, TrainingSettings, sign_job_grant
from contracts.offers import Action, Constraints, Offer
from contracts.revocations import revoke
from crypto import Identity, Role
from ipspace.cli_identity import read_token
from ipspace.local_space import LocalDataSpace
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from models.valuation.network import get_weights, new_model
from models.valuation.wire import weights_from_bytes, weights_to_bytes
from node.partition import Partition, read_rows, write_partitions
from node.server import NodeServer
from policies.privacy_accountant import PrivacySpend, spent_epsilon
from policies.spend_record import NOISE_UNITS, PRIVACY_NOISE, PRIVACY_SAMPLING, PRIVACY_STEPS

ORG = "office-t"
PURPOSE = "valuation"
SETTINGS = TrainingSettings(local_steps=4, batch_size=32)


def _offer(offer_id: str, actions: tuple[Action, ...], **constraints: object) -> Offer:
    return Offer(
        offer_id=offer_id,
        provider_org=ORG,
        dataset="families",
        actions=actions,
        constraints=Constraints(purposes=(PURPOSE,), **constraints),
    )


OFFERS = [
    _offer("train-dp", (Action.TRAIN,), epsilon=3.0, delta=1e-5, min_cohort=3),
    _offer("train-tight", (Action.TRAIN,), epsilon=0.5, delta=1e-5),
    _offer("train-open", (Action.TRAIN,)),
    _offer("reveal-only", (Action.REVEAL,), reveal_fields=("title",)),
]


@dataclass
class TrainingSpace:
    local: LocalDataSpace
    node_dir: Path
    address: str
    members: dict[str, Path]

    def client(self, member: str) -> NodeClient:
        directory = self.members[member]
        return NodeClient(self.address, Identity.load(directory), read_token(directory))

    def agreement(self, offer_id: str, member: str = "builder") -> Agreement:
        with self.client(member) as client:
            status = client.request_agreement(client.offer(offer_id), PURPOSE)
        assert status.state == "approved", status
        return status.agreement

    def grant(
        self, agreement: Agreement, job_id: str, *, rounds: int = 3, epsilon: float | None = 2.0
    ) -> str:
        identity = Identity.load(self.members["builder"])
        grant = sign_job_grant(
            identity, agreement, job_id=job_id, rounds=rounds, epsilon=epsilon, settings=SETTINGS
        )
        return grant.model_dump_json()

    def entries(self) -> list[dict]:
        uri = (self.node_dir / "node.db").resolve().as_uri() + "?mode=ro"
        with sqlite3.connect(uri, uri=True) as connection:
            return [json.loads(row[0]) for row in connection.execute("SELECT leaf FROM entries ORDER BY idx")]

    def ledger_epsilon(self, agreement_id: str) -> float | None:
        uri = (self.node_dir / "node.db").resolve().as_uri() + "?mode=ro"
        with sqlite3.connect(uri, uri=True) as connection:
            row = connection.execute(
                "SELECT epsilon_spent FROM privacy_ledgers WHERE agreement_id = ?", (agreement_id,)
            ).fetchone()
        return row[0] if row else None


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainingSpace]:
    root = tmp_path_factory.mktemp("training")
    local = LocalDataSpace(root)
    local.create_ca()
    header, rows = read_rows(LENS_FAMILIES)
    csv_path = write_partitions([Partition("sample", ("US",), tuple(rows[:600]))], root / "data", header)[
        "sample"
    ]
    node_dir = local.init_node(
        "node-t",
        ORG,
        offers=OFFERS,
        datasets={"families": (csv_path, LENS_ID_FIELD, "Lens patent families on drones", LENS_SOURCE)},
    )
    members = {
        "builder": local.issue("builder", "acme", Role.BUILDER),
        "outsider": local.issue("outsider", "globex", Role.BUILDER),
        "runner": node_dir / "identity",  # the node's own identity, as its Flower runner holds it
    }
    server = NodeServer(node_dir)
    port = server.start()
    try:
        yield TrainingSpace(local, node_dir, f"127.0.0.1:{port}", members)
    finally:
        server.stop()


def _weights(seed: int = 0) -> bytes:
    return weights_to_bytes(get_weights(new_model(seed)))


def _refusal(call) -> NodeRefused:
    with pytest.raises(NodeRefused) as caught:
        call()
    return caught.value


def test_a_round_returns_a_noised_update_and_charges_the_ledger_with_its_entry(space: TrainingSpace) -> None:
    agreement = space.agreement("train-dp")
    grant = space.grant(agreement, "job-happy")
    with space.client("runner") as runner:
        first = runner.train(grant, _weights(), round_number=1, cohort_size=3)
        second = runner.train(grant, _weights(), round_number=2, cohort_size=3)
    delta = weights_from_bytes(first.weights_delta)
    assert any(np.abs(array).sum() > 0 for array in delta)
    assert first.num_examples > 400  # about 80% of 600 rows train, the rest are held out
    assert first.noise_multiplier > 0 and first.delta == 1e-5 and first.epsilon_budget == 3.0
    # The node calibrated its noise so that the job's three rounds fit the job's epsilon of 2.
    assert 0 < first.epsilon_spent < second.epsilon_spent <= 2.0
    assert space.ledger_epsilon(agreement.agreement_id) == pytest.approx(second.epsilon_spent)

    # The entries state each spend exactly; recomputing from them gives the ledger's epsilon.
    train_entries = [
        entry
        for entry in space.entries()
        if entry["method"].endswith("/Train") and entry["agreement_id"] == agreement.agreement_id
    ]
    assert [entry["decision"] for entry in train_entries] == ["allow", "allow"]
    assert {entry["target"] for entry in train_entries} == {"job-happy"}  # the signed grant's job id
    spends = [
        PrivacySpend(
            entry["charges"][PRIVACY_NOISE] / NOISE_UNITS,
            1 / entry["charges"][PRIVACY_SAMPLING],
            entry["charges"][PRIVACY_STEPS],
        )
        for entry in train_entries
    ]
    assert spent_epsilon(spends, 1e-5) == pytest.approx(second.epsilon_spent, rel=1e-9)


def test_evaluate_returns_aggregates_over_the_held_out_rows_only(space: TrainingSpace) -> None:
    agreement = space.agreement("train-dp")
    grant = space.grant(agreement, "job-evaluate")
    with space.client("runner") as runner:
        reply = runner.evaluate(grant, _weights())
        trained = runner.train(grant, _weights(), round_number=1, cohort_size=3)
    assert 60 < reply.count < 180 and reply.count + trained.num_examples == 600
    assert reply.sum_squared_error > 0
    assert reply.sum_target_squared >= reply.sum_target**2 / reply.count  # a variance is never negative
    assert -1 <= reply.spearman <= 1


def test_only_the_nodes_own_runner_may_train(space: TrainingSpace) -> None:
    agreement = space.agreement("train-dp")
    grant = space.grant(agreement, "job-direct")
    with space.client("builder") as builder:
        refused = _refusal(lambda: builder.train(grant, _weights(), round_number=1, cohort_size=3))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "this node's own runner" in refused.reason


def test_a_grant_signed_by_another_org_or_altered_after_signing_is_refused(space: TrainingSpace) -> None:
    agreement = space.agreement("train-dp")
    honest = JobGrant.model_validate_json(space.grant(agreement, "job-forged"))
    widened = honest.model_copy(update={"body": honest.body.model_copy(update={"epsilon": 3.0})})
    outsider = Identity.load(space.members["outsider"])
    # The outsider cannot sign for acme's side of the agreement at all, so it forges the signature block.
    forged = honest.model_copy(
        update={
            "signature": honest.signature.model_copy(
                update={"certificate_pem": outsider.signing_cert_pem.decode()}
            )
        }
    )
    with space.client("runner") as runner:
        for grant, expected in ((widened, "does not match"), (forged, "")):
            refused = _refusal(
                lambda grant=grant: runner.train(
                    grant.model_dump_json(), _weights(), round_number=1, cohort_size=3
                )
            )
            assert refused.status == grpc.StatusCode.PERMISSION_DENIED
            assert "job grant does not hold" in refused.reason and expected in refused.reason
    assert space.ledger_epsilon(agreement.agreement_id) is None  # nothing was charged


def test_a_cohort_below_the_agreements_minimum_is_refused_before_training(space: TrainingSpace) -> None:
    agreement = space.agreement("train-dp")
    grant = space.grant(agreement, "job-small-cohort")
    with space.client("runner") as runner:
        refused = _refusal(lambda: runner.train(grant, _weights(), round_number=1, cohort_size=2))
    assert refused.status == grpc.StatusCode.FAILED_PRECONDITION
    assert "at least 3 nodes" in refused.reason and "has 2" in refused.reason
    assert space.ledger_epsilon(agreement.agreement_id) is None


def test_past_the_budget_the_node_answers_resource_exhausted_with_what_remains(space: TrainingSpace) -> None:
    agreement = space.agreement("train-tight")
    with space.client("runner") as runner:
        spent = runner.train(
            space.grant(agreement, "job-tight-1", rounds=1, epsilon=0.4),
            _weights(),
            round_number=1,
            cohort_size=1,
        ).epsilon_spent
        assert spent <= 0.4
        second = space.grant(agreement, "job-tight-2", rounds=1, epsilon=0.4)
        refused = _refusal(lambda: runner.train(second, _weights(), round_number=1, cohort_size=1))
    assert refused.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "remaining" in refused.reason and "0.5" in refused.reason
    assert space.ledger_epsilon(agreement.agreement_id) == pytest.approx(spent)
    denial = space.entries()[-1]
    assert denial["decision"] == "deny" and denial["status"] == "RESOURCE_EXHAUSTED" and not denial["charges"]


def test_a_budgeted_agreement_refuses_a_job_without_differential_privacy(space: TrainingSpace) -> None:
    agreement = space.agreement("train-dp")
    grant = space.grant(agreement, "job-no-dp", epsilon=None)
    with space.client("runner") as runner:
        refused = _refusal(lambda: runner.train(grant, _weights(), round_number=1, cohort_size=3))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "only with differential privacy" in refused.reason


def test_an_agreement_without_a_budget_trains_without_noise(space: TrainingSpace) -> None:
    agreement = space.agreement("train-open")
    grant = space.grant(agreement, "job-open", epsilon=None)
    with space.client("runner") as runner:
        reply = runner.train(grant, _weights(), round_number=1, cohort_size=1)
    assert reply.noise_multiplier == 0 and reply.epsilon_spent == float("inf") and reply.epsilon_budget == 0


def test_an_agreement_without_the_train_action_or_revoked_is_refused(space: TrainingSpace) -> None:
    reveal_only = space.agreement("reveal-only")
    with space.client("runner") as runner:
        refused = _refusal(
            lambda: runner.train(
                space.grant(reveal_only, "job-reveal"), _weights(), round_number=1, cohort_size=3
            )
        )
        assert refused.status == grpc.StatusCode.PERMISSION_DENIED
        assert "does not permit 'train'" in refused.reason

        agreement = space.agreement("train-dp")
        builder = Identity.load(space.members["builder"])
        with space.client("builder") as client:
            client.revoke(revoke(agreement.agreement_id, builder, "done").model_dump_json().encode())
        refused = _refusal(
            lambda: runner.train(
                space.grant(agreement, "job-revoked"), _weights(), round_number=1, cohort_size=3
            )
        )
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED and "revoked" in refused.reason


@pytest.mark.parametrize(
    ("weights", "round_number", "expected"),
    [
        (b"\x00" * 12, 1, "weights are 12 bytes"),
        (np.full(5, np.nan, dtype="<f4").tobytes(), 1, "weights are 20 bytes"),
        (None, 4, "round 4 is outside the job's rounds 1..3"),
    ],
)
def test_malformed_training_calls_are_invalid_argument_and_recorded(
    space: TrainingSpace, weights: bytes | None, round_number: int, expected: str
) -> None:
    agreement = space.agreement("train-dp")
    grant = space.grant(agreement, "job-malformed")
    before = len(space.entries())
    with space.client("runner") as runner:
        refused = _refusal(
            lambda: runner.train(grant, weights or _weights(), round_number=round_number, cohort_size=3)
        )
    assert refused.status == grpc.StatusCode.INVALID_ARGUMENT and expected in refused.reason
    after = space.entries()
    assert len(after) == before + 1 and after[-1]["decision"] == "deny"


def test_nan_weights_of_the_right_size_are_refused(space: TrainingSpace) -> None:
    agreement = space.agreement("train-dp")
    grant = space.grant(agreement, "job-nan")
    good = _weights()
    poisoned = np.frombuffer(good, dtype="<f4").copy()
    poisoned[7] = np.nan
    with space.client("runner") as runner:
        refused = _refusal(lambda: runner.train(grant, poisoned.tobytes(), round_number=1, cohort_size=3))
    assert refused.status == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in refused.reason


def test_an_expired_grant_is_refused(space: TrainingSpace) -> None:
    agreement = space.agreement("train-dp")
    builder = Identity.load(space.members["builder"])
    stale = sign_job_grant(
        builder,
        agreement,
        job_id="job-stale",
        rounds=1,
        epsilon=1.0,
        lifetime=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    with space.client("runner") as runner:
        refused = _refusal(
            lambda: runner.train(stale.model_dump_json(), _weights(), round_number=1, cohort_size=3)
        )
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED and "expired" in refused.reason
