"""Catalog: what the node holds, described by statistics and synthetic mock rows, never by real rows."""

from __future__ import annotations

from google.protobuf.struct_pb2 import Struct

from contracts.offers import Offer, offer_digest
from contracts.v1 import catalog_pb2, catalog_pb2_grpc, negotiation_pb2
from crypto import canonical_json
from node.gate import current_grant
from node.grants import CatalogGrant, require
from node.store import DatasetInfo


def dataset_summary(info: DatasetInfo) -> catalog_pb2.DatasetSummary:
    return catalog_pb2.DatasetSummary(
        name=info.name,
        description=info.description,
        source=info.source,
        row_count=info.row_count,
        fields=list(info.fields),
    )


class CatalogHandler(catalog_pb2_grpc.CatalogServicer):
    def ListDatasets(self, request, context):
        grant = require(current_grant(), CatalogGrant)
        return catalog_pb2.ListDatasetsResponse(
            node=grant.node, datasets=[dataset_summary(d) for d in grant.datasets()]
        )

    def DescribeDataset(self, request, context):
        grant = require(current_grant(), CatalogGrant)
        description = grant.describe()
        statistics = []
        for stats in description.statistics:
            message = catalog_pb2.FieldStatistics(
                name=stats.name,
                type=stats.type,
                non_null=stats.non_null,
                distinct=stats.distinct,
                top_values=[catalog_pb2.ValueCount(value=str(v), count=c) for v, c in stats.top_values],
            )
            for attribute in ("min", "max", "mean", "min_text", "max_text", "mean_length"):
                value = getattr(stats, attribute, None)
                if value is not None:
                    setattr(message, attribute, value)
            statistics.append(message)
        mock_rows = []
        for row in description.mock_rows:
            struct = Struct()
            struct.update({key: value for key, value in row.items()})
            mock_rows.append(struct)
        return catalog_pb2.DatasetDescription(
            summary=dataset_summary(description.info), statistics=statistics, mock_rows=mock_rows
        )


def offer_message(offer: Offer) -> negotiation_pb2.Offer:
    return negotiation_pb2.Offer(
        offer_id=offer.offer_id,
        dataset=offer.dataset,
        offer_json=canonical_json(offer.model_dump(mode="json")),
        offer_digest=offer_digest(offer),
    )
