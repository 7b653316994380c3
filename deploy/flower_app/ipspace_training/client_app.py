"""ClientApp entry point: a thin proxy to the node's own Train/Evaluate RPCs (node/flower_client.py)."""

from node.flower_client import app

__all__ = ["app"]
