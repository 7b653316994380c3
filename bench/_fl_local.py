"""What a round's local compute costs, measured alone: the yardstick the round time is divided by.

Three figures per node, each the median of a few runs on a quiet federation (no job running):
- the DP step alone: `local_dp_step` on the node's own training rows with the job's settings, in this process;
- a Train call on a warm mTLS channel, as the node's own runner: gate (authenticate, decide), the step,
  the audit append, one round trip;
- a Train call made as the ClientApp proxy makes it (`node.flower_proxy.train`: load the identity, open a new
  mTLS channel, call): what one message's node call costs from inside a fresh process.
The first call at each node is a warm-up, reported apart and kept out of the medians: it imports torch and
Opacus into the node and prepares its rows, which a deployed node does once, not per round.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import BenchFailed
from bench._fl_space import SETTINGS, FlSpace
from contracts.agreements import Agreement
from contracts.client import NodeRefused
from contracts.job_grants import sign_job_grant
from coordinator.job_spec import new_job_id
from crypto import Identity
from models.valuation.wire import initial_weights, weights_to_bytes
from node import flower_proxy
from node.partition import Partition

CALL_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LocalCompute:
    repeats: int
    dp_step_s: dict[str, float]  # org -> median seconds
    train_call_s: dict[str, float]
    proxy_call_s: dict[str, float]
    warmup_call_s: dict[str, float]  # the first call at each node (torch import, data preparation)

    @property
    def step_s(self) -> float:
        """The DP step of a typical node (the median node: the three hold similar rows, and one node's
        median can still catch another session's burst of load)."""
        return statistics.median(self.dp_step_s.values())

    @property
    def call_s(self) -> float:
        """The Train call on a warm channel at a typical node."""
        return statistics.median(self.train_call_s.values())


def measure(space: FlSpace, agreements: list[Agreement], repeats: int) -> LocalCompute:
    """Time the DP step and the node's Train call `repeats` times at every node, one node at a time, after
    a warm-up call at every node (all at once: each imports torch, which takes seconds)."""
    builder = Identity.load(space.builder_dir)
    by_org = {agreement.terms.provider_org: agreement for agreement in agreements}
    weights = initial_weights(0)
    calls: dict[str, tuple[flower_proxy.ProxySettings, str, str]] = {}
    for org, node in space.nodes.items():
        grant = sign_job_grant(
            builder, by_org[org], job_id=new_job_id(), rounds=2 * repeats + 1, epsilon=None, settings=SETTINGS
        ).model_dump_json()
        settings = flower_proxy.ProxySettings(node.server.address, node.identity_dir)
        calls[org] = (settings, grant, json.dumps({org: grant}))  # the ServerApp sends grants keyed by org
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        warmups = {
            org: pool.submit(_proxy_call, settings, grants_json, weights, 1)
            for org, (settings, _, grants_json) in calls.items()
        }
        warmup = {org: future.result() for org, future in warmups.items()}
    dp_step, train_call, proxy_call = {}, {}, {}
    for org, (settings, grant, grants_json) in calls.items():
        proxy_call[org] = statistics.median(
            _proxy_call(settings, grants_json, weights, number) for number in range(2, repeats + 2)
        )
        rounds = range(repeats + 2, 2 * repeats + 2)
        train_call[org] = statistics.median(
            _warm_channel_calls(settings.node_address, settings.identity_dir, grant, weights, rounds)
        )
        dp_step[org] = statistics.median(_dp_steps(space.partitions[org], weights, repeats))
    return LocalCompute(repeats, dp_step, train_call, proxy_call, warmup)


def _proxy_call(
    settings: flower_proxy.ProxySettings, grants_json: str, weights: list[np.ndarray], round_number: int
) -> float:
    began = time.perf_counter()
    try:
        flower_proxy.train(
            settings, grants_json, weights, task="valuation", round_number=round_number, cohort_size=1
        )
    except NodeRefused as refused:
        raise BenchFailed(f"a calibration Train call was refused: {refused}") from None
    return time.perf_counter() - began


def _warm_channel_calls(
    address: str, identity_dir: Path, grant: str, weights: list[np.ndarray], rounds: range
) -> list[float]:
    times = []
    with flower_proxy.ProxySettings(address, identity_dir).client() as node:
        node.wait_until_ready(CALL_TIMEOUT_S)
        for number in rounds:
            encoded = weights_to_bytes(weights)  # as the proxy encodes them, outside the timed call
            began = time.perf_counter()
            try:
                node.train(grant, encoded, round_number=number, cohort_size=1)
            except NodeRefused as refused:
                raise BenchFailed(f"a calibration Train call failed: {refused}") from None
            times.append(time.perf_counter() - began)
    return times


def _dp_steps(partition: Partition, weights: list[np.ndarray], repeats: int) -> list[float]:
    from node.training.data import prepare
    from node.training.dp_step import DPConfig, local_dp_step

    data = prepare(partition.rows, reference_year=SETTINGS.reference_year)
    config = DPConfig(
        noise_multiplier=0.0,  # the plain jobs' noise; the DP jobs' noise costs the same per step
        max_grad_norm=SETTINGS.max_grad_norm,
        learning_rate=SETTINGS.learning_rate,
        batch_size=SETTINGS.batch_size,
        steps=SETTINGS.local_steps,
    )
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Opacus warns on every step
        local_dp_step(weights, data.train_features, data.train_targets, config=config)  # warm-up
        for _ in range(repeats):
            began = time.perf_counter()
            local_dp_step(weights, data.train_features, data.train_targets, config=config)
            times.append(time.perf_counter() - began)
    return times
