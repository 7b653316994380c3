"""Wire the dashboard into the coordinator app: the page at ``/dashboard/`` and ``GET /me``.

How a member signs in: TLS has already checked the client certificate (``coordinator.server``), so only a
member of the data space reaches the page at all. The page asks for the member's token (pasted, or read from
the token file the member picks), keeps it in the tab's sessionStorage only, and sends it as
``Authorization: Bearer`` on every API call; the API checks it against the connection's certificate exactly as
for any other client (``coordinator.auth``). ``GET /me`` tells the page who that is, so it shows the
regulator's or the builder's view; everything else it shows comes from the routes those roles may already
call.

The page itself is mounted as a sub-application, outside FastAPI's routes: the app's global
``authenticated_caller`` dependency does not apply to it (it holds no data), and it is not in the OpenAPI
schema. ``GET /me`` is an ordinary route, under that dependency like every other.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict

from coordinator.auth import Caller
from coordinator.dashboard.site import dashboard_site
from coordinator.job_routes import Problem

DASHBOARD_PATH = "/dashboard"


class MeView(BaseModel):
    """Who the caller is, as its certificate and token say."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    org: str
    role: str


me_router = APIRouter(tags=["identity"])


@me_router.get(
    "/me",
    response_model=MeView,
    responses={401: {"model": Problem, "description": "no valid token bound to the client certificate"}},
)
def who_am_i(caller: Caller) -> MeView:
    """The caller's name, org and role (any member; not recorded, it reveals nothing the caller lacks)."""
    return MeView(name=caller.name, org=caller.org, role=caller.role.value)


def install_dashboard(app: FastAPI) -> None:
    """Add ``GET /me`` and mount the dashboard's page at ``/dashboard/`` (``/dashboard`` redirects there)."""
    app.include_router(me_router)
    app.mount(DASHBOARD_PATH, dashboard_site(), name="dashboard")
