"""The data space a benchmark runs against: a CA, one consumer, one provider node holding real Lens rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts.offers import Action, Constraints, Offer
from crypto import Role
from ipspace.local_space import LocalDataSpace
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from node.partition import Partition, read_rows, write_partitions

NODE_NAME = "bench-node"
PROVIDER_ORG = "office-bench"
CONSUMER = "bench-consumer"
CONSUMER_ORG = "acme"
DATASET = "families"
JURISDICTION = "EP"


@dataclass(frozen=True)
class BenchSpace:
    root: Path
    node_dir: Path
    consumer_dir: Path  # identity files plus `token`
    provider_dir: Path  # the node's own identity: the audit log's signer
    ca_cert_pem: bytes
    row_count: int


def build_space(root: Path) -> BenchSpace:
    """A fresh space under ``root``: the node holds the EP partition of the Lens drone families."""
    local = LocalDataSpace(root)
    local.create_ca()
    header, rows = read_rows(LENS_FAMILIES)
    sample = [row for row in rows if row["jurisdiction"] == JURISDICTION]
    if not sample:
        raise RuntimeError(f"{LENS_FAMILIES} holds no {JURISDICTION} rows to serve")
    csv_path = write_partitions([Partition("sample", (JURISDICTION,), tuple(sample))], root / "data", header)[
        "sample"
    ]
    offer = Offer(
        offer_id="families-research",
        provider_org=PROVIDER_ORG,
        dataset=DATASET,
        actions=(Action.REVEAL,),
        constraints=Constraints(purposes=("research",), reveal_fields=("title",)),
        description="reveal titles for research",
    )
    node_dir = local.init_node(
        NODE_NAME,
        PROVIDER_ORG,
        offers=[offer],
        datasets={DATASET: (csv_path, LENS_ID_FIELD, "EP patent families on drones", LENS_SOURCE)},
    )
    consumer_dir = local.issue(CONSUMER, CONSUMER_ORG, Role.CONSUMER)
    return BenchSpace(
        root=root,
        node_dir=node_dir,
        consumer_dir=consumer_dir,
        provider_dir=node_dir / "identity",
        ca_cert_pem=local.ca.cert_pem,
        row_count=len(sample),
    )
