"""ServerApp entry point; the job logic is coordinator code (coordinator/flower/server_app.py)."""

from coordinator.flower.server_app import app

__all__ = ["app"]
