"""Train and Evaluate of the matching head over a real node: real phrase pairs, real MiniLM vectors.

A node of its own (module scope) holds a slice of one provider's share of the human-rated phrase pairs
(`sample_data.write_phrase_pair_share`), embedded at import with all-MiniLM-L6-v2 anchor by anchor and target
by target, and the Lens families (which cannot train the head). Every call goes over mTLS through the gate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from contracts.agreements import Agreement
from contracts.client import NodeClient, NodeRefused
from contracts.job_grants import TrainingSettings, sign_job_grant
from contracts.offers import Action, Constraints, Offer
from crypto import Identity, Role
from ipspace.cli_identity import read_token
from ipspace.local_space import LocalDataSpace
from ipspace.sample_data import (
    LENS_FAMILIES,
    LENS_ID_FIELD,
    LENS_SOURCE,
    PHRASE_PAIRS_SOURCE,
    write_phrase_pair_share,
)
from models.matching.projection import SCORE_OFFSET, Projection, weights_from_bytes
from models.valuation.quality import ErrorSums
from models.valuation.wire import initial_weights as valuation_initial_weights
from models.valuation.wire import weights_to_bytes as valuation_bytes
from node.config import NodeConfig
from node.partition import Partition, read_rows, write_partitions
from node.server import NodeServer
from node.store import DatasetStore

ORG = "office-m"
PURPOSE = "matching-research"
SETTINGS = TrainingSettings(local_steps=3, batch_size=32, learning_rate=1.0, max_grad_norm=1.0)
TRAIN_PAIRS, VALID_PAIRS = 120, 40


def _offer(offer_id: str, dataset: str, **constraints: object) -> Offer:
    return Offer(
        offer_id=offer_id,
        provider_org=ORG,
        dataset=dataset,
        actions=(Action.TRAIN,),
        constraints=Constraints(purposes=(PURPOSE,), **constraints),
    )


OFFERS = [
    _offer("pairs-dp", "pairs", epsilon=8.0, delta=1e-5),
    _offer("families-open", "families"),
    _offer("other-model-open", "pairs_other_model"),
]


class OtherModel:
    """Stands in for an embedding model other than the consumers' (its vectors are seeded noise): what the
    node must refuse to train the head on is the model's identity, not its output."""

    model_id = "example/other-model@1"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.random.default_rng(len(texts)).standard_normal((len(texts), 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@dataclass
class MatchingTrainingSpace:
    node_dir: Path
    address: str
    members: dict[str, Path]

    def client(self, member: str) -> NodeClient:
        directory = self.members[member]
        return NodeClient(self.address, Identity.load(directory), read_token(directory))

    def agreement(self, offer_id: str) -> Agreement:
        with self.client("builder") as client:
            status = client.request_agreement(client.offer(offer_id), PURPOSE)
        assert status.state == "approved", status
        return status.agreement

    def grant(self, agreement: Agreement, job_id: str, *, task: str = "matching") -> str:
        grant = sign_job_grant(
            Identity.load(self.members["builder"]),
            agreement,
            job_id=job_id,
            rounds=2,
            epsilon=4.0 if agreement.terms.constraints.epsilon else None,
            task=task,  # type: ignore[arg-type]
            settings=SETTINGS,
        )
        return grant.model_dump_json()


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatchingTrainingSpace]:
    root = tmp_path_factory.mktemp("matching-training")
    local = LocalDataSpace(root)
    local.create_ca()
    # The first TRAIN_PAIRS train and VALID_PAIRS valid pairs of provider share 1 (CPC sections B and F).
    pairs = root / "pairs.csv"
    assert write_phrase_pair_share(pairs, 1, limits=(TRAIN_PAIRS, VALID_PAIRS)) == ("B", "F")
    header, rows = read_rows(LENS_FAMILIES)
    families = write_partitions([Partition("sample", ("US",), tuple(rows[:100]))], root / "data", header)
    node_dir = local.init_node(
        "node-m",
        ORG,
        offers=OFFERS,
        datasets={
            "pairs": (pairs, "id", "rated phrase pairs, CPC sections B and F", PHRASE_PAIRS_SOURCE),
            "families": (families["sample"], LENS_ID_FIELD, "Lens patent families", LENS_SOURCE),
        },
        embed_each={"pairs": ("anchor", "target")},
    )
    DatasetStore.for_node(node_dir).import_csv(
        "pairs_other_model",
        pairs,
        id_field="id",
        description="the same pairs, embedded by another model",
        source=PHRASE_PAIRS_SOURCE,
        embed_each=("anchor", "target"),
        embedder=OtherModel(),
    )
    config = NodeConfig.load(node_dir)
    replace(config, datasets=[*config.datasets, "pairs_other_model"]).save(node_dir)
    members = {
        "builder": local.issue("builder", "acme", Role.BUILDER),
        "runner": node_dir / "identity",  # the node's own identity, as its Flower runner holds it
    }
    server = NodeServer(node_dir)
    port = server.start()
    try:
        yield MatchingTrainingSpace(node_dir, f"127.0.0.1:{port}", members)
    finally:
        server.stop()


def _head(seed: int = 0) -> Projection:
    return Projection.initial(seed)


def _refusal(call) -> NodeRefused:
    with pytest.raises(NodeRefused) as caught:
        call()
    return caught.value


def test_a_matching_round_returns_a_noised_head_update_within_the_jobs_epsilon(
    space: MatchingTrainingSpace,
) -> None:
    grant = space.grant(space.agreement("pairs-dp"), "job-match-round")
    with space.client("runner") as runner:
        reply = runner.train(grant, _head().to_bytes(), round_number=1, cohort_size=1)
    delta = weights_from_bytes(reply.weights_delta)
    assert delta[0].shape == (128, 384) and np.abs(delta[0]).sum() > 0
    assert reply.num_examples == TRAIN_PAIRS
    assert reply.noise_multiplier > 0 and 0 < reply.epsilon_spent <= 4.0 and reply.epsilon_budget == 8.0
    assert np.isfinite(reply.train_loss) and reply.train_loss > 0


def test_evaluate_sums_give_the_pearson_of_the_held_out_pairs_as_the_consumer_computes_it(
    space: MatchingTrainingSpace,
) -> None:
    grant = space.grant(space.agreement("pairs-dp"), "job-match-evaluate")
    head = _head(3)
    with space.client("runner") as runner:
        reply = runner.evaluate(grant, head.to_bytes())
    sums = ErrorSums(
        count=reply.count,
        sum_squared_error=reply.sum_squared_error,
        sum_target=reply.sum_target,
        sum_target_squared=reply.sum_target_squared,
        sum_prediction=reply.sum_prediction,
        sum_prediction_squared=reply.sum_prediction_squared,
        sum_product=reply.sum_product,
    )
    # The same figure from the stored vectors, projected with numpy as a consumer projects its need.
    store = DatasetStore.for_node(space.node_dir)
    anchors, targets = store.embeddings("pairs", ("anchor",)), store.embeddings("pairs", ("target",))
    rows = [row for row in store.rows("pairs") if row["split"] == "valid"]
    anchor_at = {record_id: index for index, record_id in enumerate(anchors.record_ids)}
    target_at = {record_id: index for index, record_id in enumerate(targets.record_ids)}
    projected_anchors = head.apply(anchors.vectors[[anchor_at[row["id"]] for row in rows]])
    projected_targets = head.apply(targets.vectors[[target_at[row["id"]] for row in rows]])
    cosines = np.sum(projected_anchors * projected_targets, axis=1).astype(np.float64)
    scores = np.array([float(row["score"]) for row in rows])
    assert reply.count == VALID_PAIRS
    assert sums.pearson() == pytest.approx(np.corrcoef(cosines, scores)[0, 1], abs=1e-5)
    assert sums.mse() == pytest.approx(np.mean((cosines - SCORE_OFFSET - scores) ** 2), abs=1e-5)
    assert -1 <= reply.spearman <= 1


def test_a_matching_job_on_a_dataset_without_phrase_pairs_is_a_failed_precondition(
    space: MatchingTrainingSpace,
) -> None:
    grant = space.grant(space.agreement("families-open"), "job-match-families")
    with space.client("runner") as runner:
        refused = _refusal(lambda: runner.train(grant, _head().to_bytes(), round_number=1, cohort_size=1))
    assert refused.status == grpc.StatusCode.FAILED_PRECONDITION
    assert "rated phrase pairs" in refused.reason and "'anchor'" in refused.reason


def test_pairs_embedded_by_another_model_do_not_train_the_head(space: MatchingTrainingSpace) -> None:
    grant = space.grant(space.agreement("other-model-open"), "job-match-other-model")
    with space.client("runner") as runner:
        refused = _refusal(lambda: runner.train(grant, _head().to_bytes(), round_number=1, cohort_size=1))
    assert refused.status == grpc.StatusCode.FAILED_PRECONDITION
    assert "example/other-model@1" in refused.reason and "all-MiniLM-L6-v2" in refused.reason


def test_valuation_weights_sent_for_a_matching_job_are_invalid_argument(space: MatchingTrainingSpace) -> None:
    grant = space.grant(space.agreement("pairs-dp"), "job-match-wrong-weights")
    wrong = valuation_bytes(valuation_initial_weights(0))
    with space.client("runner") as runner:
        refused = _refusal(lambda: runner.train(grant, wrong, round_number=1, cohort_size=1))
    assert refused.status == grpc.StatusCode.INVALID_ARGUMENT
    assert "projection head" in refused.reason


def test_a_valuation_job_on_the_phrase_pairs_is_a_failed_precondition(space: MatchingTrainingSpace) -> None:
    grant = space.grant(space.agreement("pairs-dp"), "job-valuate-pairs", task="valuation")
    with space.client("runner") as runner:
        refused = _refusal(
            lambda: runner.train(
                grant, valuation_bytes(valuation_initial_weights(0)), round_number=1, cohort_size=1
            )
        )
    assert refused.status == grpc.StatusCode.FAILED_PRECONDITION
    assert "lens_id" in refused.reason
