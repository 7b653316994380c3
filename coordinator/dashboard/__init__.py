"""The coordinator's dashboard: a static page for regulators and model builders, and ``GET /me``.

``install_dashboard(app)`` mounts the page at ``/dashboard/`` and adds ``GET /me``; see
``coordinator.dashboard.routes`` for how the page authenticates.
"""

from coordinator.dashboard.routes import DASHBOARD_PATH, MeView, install_dashboard

__all__ = ["DASHBOARD_PATH", "MeView", "install_dashboard"]
