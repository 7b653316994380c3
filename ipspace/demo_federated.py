"""The demo's federated part: a model builder trains the valuation model across the three nodes.

The builder agrees each node's training offer (a privacy budget of epsilon 8 at delta 1e-5, a SecAgg+ cohort
of at least 2, model export allowed), registers the agreements with the coordinator, signs one job grant per
agreement and submits the job: SecAgg+ FedAvg over node-run DP-SGD, each node spending at most the job's
epsilon. The demo follows the rounds, downloads the model, and scores it on the global held-out split beside
a centralized baseline fitted on the pooled training rows. (The demo runs every node on one machine, so it can
pool the rows for that comparison; no party of the job ever does.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.job_grants import TrainingSettings
from contracts.offers import Action, Constraints, Offer
from crypto import Identity
from ipspace.cli_identity import read_token
from ipspace.cli_job import follow
from ipspace.coordinator_client import CoordinatorClient
from ipspace.sample_data import LENS_FAMILIES
from models.valuation.baseline import ridge_predictions
from models.valuation.features import feature_matrix
from models.valuation.quality import r_squared, spearman
from models.valuation.split import split_rows
from models.valuation.target import cohort_stats, normalised_targets
from node.partition import read_rows

DATASET = "lens_families"
PURPOSE = "valuation-research"
EPSILON_BUDGET = 8.0
JOB_EPSILON = 8.0
DELTA = 1e-5
ROUNDS = 5
# bench/valuation.py's settings for a job of few rounds (its "short job" line: 5 x 60 steps).
SETTINGS = TrainingSettings(local_steps=60, batch_size=256, learning_rate=0.1, max_grad_norm=5.0)
JOB_TIMEOUT_S = 600.0


def training_offer(org: str) -> Offer:
    return Offer(
        offer_id="families-valuation",
        provider_org=org,
        dataset=DATASET,
        # VALUATE: the provider consents that the model trained on its rows answers encrypted valuations.
        actions=(Action.TRAIN, Action.VALUATE),
        constraints=Constraints(
            purposes=(PURPOSE,), epsilon=EPSILON_BUDGET, delta=DELTA, min_cohort=2, model_export=True
        ),
        description="federated valuation training with DP-SGD at the node, under SecAgg+ only; the model may "
        "answer encrypted valuations (the coordinator's default query budget)",
    )


@dataclass(frozen=True)
class JobOutcome:
    job: dict
    federated: tuple[float, float]  # held-out (Spearman, R2) of the downloaded model
    centralized_ridge: tuple[float, float]
    model_file: Path  # the downloaded model


def run_valuation_job(
    builder_dir: Path,
    addresses: dict[str, str],
    api_url: str,
    workdir: Path,
    console: Console,
    *,
    rounds: int = ROUNDS,
) -> JobOutcome:
    builder = Identity.load(builder_dir)
    token = read_token(builder_dir)
    agreements: list[Agreement] = []
    for name, address in addresses.items():
        with NodeClient(address, builder, token) as client:
            status = client.request_agreement(client.offer("families-valuation"), PURPOSE)
        if status.state != "approved" or status.agreement is None:
            raise RuntimeError(f"{name} did not agree to train: {status.reason}")
        agreements.append(status.agreement)
    with CoordinatorClient(api_url, builder_dir, token) as coordinator:
        for agreement in agreements:
            coordinator.register_agreement(agreement)
        spec = {
            "task": "valuation",
            "dataset": DATASET,
            "purpose": PURPOSE,
            "agreements": [agreement.agreement_id for agreement in agreements],
            "rounds": rounds,
            "epsilon": JOB_EPSILON,
            "model": SETTINGS.model_dump(mode="json"),
            "secagg": True,
        }
        from coordinator.job_spec import new_job_id

        job_id = coordinator.submit(spec, new_job_id())["job_id"]
        console.print(
            f"  job {job_id}: {rounds} rounds, SecAgg+ over 3 nodes, DP-SGD at each node within epsilon "
            f"{JOB_EPSILON:g} (delta {DELTA:g})"
        )
        job = follow(coordinator, job_id, timeout_s=JOB_TIMEOUT_S)
        if job["state"] != "succeeded":
            raise RuntimeError(f"the job ended {job['state']}: {job['reason']}")
        model_file = workdir / f"{job_id}.npz"
        model_file.write_bytes(coordinator.model(job_id))
    with np.load(model_file, allow_pickle=False) as archive:
        weights = [archive[f"arr_{index}"] for index in range(len(archive.files))]
    federated, ridge = _held_out_quality(weights)
    return JobOutcome(job=job, federated=federated, centralized_ridge=ridge, model_file=model_file)


def _held_out_quality(weights: list[np.ndarray]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(Spearman, R2) on the global held-out split, of the federated model and of centralized ridge."""
    from models.valuation.network import model_from_weights

    _header, rows = read_rows(LENS_FAMILIES)
    train, held_out = split_rows(rows)
    stats = cohort_stats(train)  # the pooled training cohorts: the yardstick for both models
    year = SETTINGS.reference_year
    train_x, held_x = (
        feature_matrix(train, reference_year=year),
        feature_matrix(held_out, reference_year=year),
    )
    train_y, held_y = normalised_targets(train, stats), normalised_targets(held_out, stats)
    import torch

    model = model_from_weights(weights)
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(held_x.astype(np.float32))).squeeze(-1).numpy()
    ridge = ridge_predictions(train_x, train_y, held_x)
    return (spearman(predicted, held_y), r_squared(predicted, held_y)), (
        spearman(ridge, held_y),
        r_squared(ridge, held_y),
    )
