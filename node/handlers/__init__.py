"""The node's gRPC handlers; each takes its data access from the call's grant (``current_grant``)."""

from node.handlers.audit import AuditHandler
from node.handlers.catalog import CatalogHandler
from node.handlers.matching import MatchingHandler
from node.handlers.negotiation import NegotiationHandler
from node.handlers.reveal import RevealHandler
from node.handlers.training import TrainingHandler

__all__ = [
    "AuditHandler",
    "CatalogHandler",
    "MatchingHandler",
    "NegotiationHandler",
    "RevealHandler",
    "TrainingHandler",
]
