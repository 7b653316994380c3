"""The model builder's part of a deployed data space: one federated valuation job, start to end.

Agree with each node's training offer (gRPC, mTLS), register the agreements at the coordinator, submit the
job and wait for it (HTTPS, mTLS); the job's final status goes to stdout as JSON, progress to stderr, and the
exit status is 0 only if the job succeeded. `ipspace agree`, `ipspace job submit` and `ipspace job wait` are
the same steps one by one, but registering an agreement at the coordinator has no command yet, hence this
script. The compose file's `builder` service runs it; tests/deploy/test_namespaces.py runs it from another
host of a namespace network, so it is exercised by the tests here.

    python deploy/compose/builder.py --coordinator https://coordinator:8443 \
        --identity /space/builder/identity --node node-us:50051 --node node-eu:50051
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from contracts.agreements import Agreement
from contracts.client import NodeClient
from contracts.job_grants import TrainingSettings
from coordinator.job_spec import new_job_id
from crypto import Identity
from ipspace.cli_identity import read_token
from ipspace.coordinator_client import CoordinatorClient

FINAL_STATES = {"succeeded", "failed", "cancelled", "interrupted"}
SECAGG_MIN_NODES = 3  # Flower's SecAgg+ needs more than two shares
POLL_S = 1.0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coordinator", required=True, help="the job API's URL, https://host:port")
    parser.add_argument("--identity", required=True, type=Path, help="the builder's identity directory")
    parser.add_argument("--node", action="append", required=True, help="a node's host:port (repeatable)")
    parser.add_argument("--offer", default="families-valuation", help="the training offer's id at each node")
    parser.add_argument("--dataset", default="lens_families")
    parser.add_argument("--purpose", default="valuation-research")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=4.0, help="the most the job may spend at each node")
    parser.add_argument("--local-steps", type=int, default=20, help="DP-SGD steps per node and round")
    parser.add_argument("--batch-size", type=int, default=256, help="expected DP-SGD batch size")
    parser.add_argument(
        "--secagg",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"aggregate with SecAgg+ (default: only with {SECAGG_MIN_NODES} nodes or more)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the job")
    return parser.parse_args(argv)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _agree(address: str, identity: Identity, token: str, offer_id: str, purpose: str) -> Agreement:
    """The node's countersigned agreement; raises RuntimeError with the node's reason if it does not agree."""
    with NodeClient(address, identity, token) as node:
        status = node.request_agreement(node.offer(offer_id), purpose)
    if status.state != "approved" or status.agreement is None:
        raise RuntimeError(f"{address} did not agree to {offer_id!r} ({status.state}): {status.reason}")
    _say(f"agreed with {status.agreement.terms.provider_org} at {address}: {status.agreement.agreement_id}")
    return status.agreement


def run(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    identity, token = Identity.load(options.identity), read_token(options.identity)
    secagg = len(options.node) >= SECAGG_MIN_NODES if options.secagg is None else options.secagg
    agreements = [
        _agree(address, identity, token, options.offer, options.purpose) for address in options.node
    ]
    with CoordinatorClient(options.coordinator, options.identity, token) as coordinator:
        for agreement in agreements:
            coordinator.register_agreement(agreement)
        spec = {
            "task": "valuation",
            "dataset": options.dataset,
            "purpose": options.purpose,
            "agreements": [agreement.agreement_id for agreement in agreements],
            "rounds": options.rounds,
            "epsilon": options.epsilon,
            "model": TrainingSettings(
                local_steps=options.local_steps, batch_size=options.batch_size
            ).model_dump(mode="json"),
            "secagg": secagg,
        }
        job = coordinator.submit(spec, new_job_id())
        _say(f"submitted {job['job_id']}: {options.rounds} rounds, {len(agreements)} nodes, secagg={secagg}")
        deadline, reported = time.monotonic() + options.timeout, 0
        while job["state"] not in FINAL_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job['job_id']} still {job['state']} after {options.timeout:.0f} s")
            time.sleep(POLL_S)
            job = coordinator.status(job["job_id"])
            for report in job["rounds"][reported:]:
                _say(f"round {report['round']}: epsilon by node {report['epsilon_by_node']}")
            reported = len(job["rounds"])
    _say(f"{job['job_id']} {job['state']}" + (f": {job['reason']}" if job["reason"] else ""))
    print(json.dumps(job, indent=2))
    return 0 if job["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(run())
