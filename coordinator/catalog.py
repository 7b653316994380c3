"""The federated catalog: every configured node's datasets and offers, fetched live with the coordinator's
own identity (role coordinator) through the nodes' gates.

It carries exactly what a node's Catalog and Negotiation RPCs answer: dataset summaries, k-anonymous field
statistics, synthetic mock rows, offers. A node that is down or refuses appears with an error entry; the
others are still listed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, ConfigDict, ValidationError

from contracts.client import NodeClient, NodeRefused
from contracts.fields import describe_validation_error
from contracts.offers import Offer, offer_digest
from contracts.v1 import catalog_pb2
from coordinator.settings import NodeEndpoint
from crypto import Identity

MAX_PARALLEL_NODES = 8
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_OPTIONAL_STATISTICS = ("min", "max", "mean", "min_text", "max_text", "mean_length")


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValueCount(_View):
    value: str
    count: int


class FieldStatistics(_View):
    name: str
    type: str
    non_null: int
    distinct: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    min_text: str | None = None
    max_text: str | None = None
    mean_length: float | None = None
    top_values: list[ValueCount] = []


class DatasetEntry(_View):
    name: str
    description: str
    source: str
    row_count: int
    fields: list[str]
    statistics: list[FieldStatistics]
    mock_rows: list[dict[str, Any]]


class OfferEntry(_View):
    offer_digest: str
    offer: Offer


class NodeCatalog(_View):
    node: str
    datasets: list[DatasetEntry] = []
    offers: list[OfferEntry] = []
    error: str | None = None


class FederatedCatalogView(_View):
    nodes: list[NodeCatalog]


class FederatedCatalog:
    """Reads every node's catalog on demand; ``read_token`` is called per fetch (a renewed token is used)."""

    def __init__(
        self,
        nodes: Sequence[NodeEndpoint],
        identity: Identity,
        read_token: Callable[[], str],
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self._nodes = tuple(nodes)
        self._identity = identity
        self._read_token = read_token
        self._timeout_s = timeout_s

    def fetch(self) -> FederatedCatalogView:
        """One entry per configured node, in configuration order. Raises what ``read_token`` raises."""
        if not self._nodes:
            return FederatedCatalogView(nodes=[])
        token = self._read_token()
        with ThreadPoolExecutor(min(MAX_PARALLEL_NODES, len(self._nodes)), "catalog") as pool:
            entries = list(pool.map(lambda endpoint: self._fetch_node(endpoint, token), self._nodes))
        return FederatedCatalogView(nodes=entries)

    def _fetch_node(self, endpoint: NodeEndpoint, token: str) -> NodeCatalog:
        client = endpoint.client(self._identity, token, timeout_s=self._timeout_s)
        with client:
            try:
                listing = client.list_datasets()
                datasets = [_dataset(client, summary.name) for summary in listing.datasets]
                offers = [OfferEntry(offer_digest=offer_digest(o), offer=o) for o in client.offers()]
            except NodeRefused as refused:
                return NodeCatalog(node=endpoint.name, error=_refusal_text(refused))
            except ValidationError as error:
                reason = f"the node sent an offer that is not valid: {describe_validation_error(error)}"
                return NodeCatalog(node=endpoint.name, error=reason)
        return NodeCatalog(node=endpoint.name, datasets=datasets, offers=offers)


def _dataset(client: NodeClient, name: str) -> DatasetEntry:
    request = catalog_pb2.DescribeDatasetRequest(dataset=name)
    description: catalog_pb2.DatasetDescription = client.call(client.catalog.DescribeDataset, request)
    summary = description.summary
    return DatasetEntry(
        name=summary.name,
        description=summary.description,
        source=summary.source,
        row_count=summary.row_count,
        fields=list(summary.fields),
        statistics=[_statistics(stats) for stats in description.statistics],
        mock_rows=[MessageToDict(row) for row in description.mock_rows],
    )


def _statistics(stats: catalog_pb2.FieldStatistics) -> FieldStatistics:
    optional = {name: getattr(stats, name) for name in _OPTIONAL_STATISTICS if stats.HasField(name)}
    return FieldStatistics(
        name=stats.name,
        type=stats.type,
        non_null=stats.non_null,
        distinct=stats.distinct,
        top_values=[ValueCount(value=top.value, count=top.count) for top in stats.top_values],
        **optional,
    )


def _refusal_text(refused: NodeRefused) -> str:
    if refused.status in _UNREACHABLE:
        return f"the node did not answer ({refused.status.name}); it may be down"
    return f"the node refused ({refused.status.name}): {refused.reason}"
