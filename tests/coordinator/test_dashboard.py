"""The coordinator's dashboard, end to end in headless Chromium (Debian's, driven by Playwright).

A real data space (CA, two provider nodes over mTLS, one more node that is tampered with while it serves)
and a real coordinator over mTLS with the dashboard installed. The browser presents the member's client
certificate (Playwright's ``client_certificates``) and signs in with the member's token, as a person would:
a regulator sees every log verified, a denial with its reason, a tampered node turn red at its first bad
entry and an alert; a builder sees its job's training curve; a wrong token shows the API's refusal. A
screenshot of each step is kept in ``$IPSPACE_TEST_ARTEFACTS`` (default: test-artefacts/dashboard/ in the
repository).

Without Chromium (/usr/bin/chromium, or ``$IPSPACE_CHROMIUM``) or the playwright package the browser tests are
skipped with the reason, unless ``IPSPACE_REQUIRE_BROWSER=1`` (CI sets it): then they fail.
"""

from __future__ import annotations

import importlib
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from contracts.client import NodeClient, NodeRefused
from coordinator.dashboard import DASHBOARD_PATH
from coordinator.job_spec import JobState
from coordinator.jobs import JobStore
from node.head_pusher import HeadPusher
from node.server import NodeServer
from tests.coordinator._forged_logs import catalog_entry, forged_log
from tests.coordinator._tampered_node import call_node, edit_entry, first_entry_by, tampered_coordinator
from tests.coordinator.conftest import Coordinator, Space, register, submission

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("IPSPACE_CHROMIUM") or "/usr/bin/chromium")  # Debian's package
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root in a container, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000
LOSSES = [0.92, 0.61, 0.47]  # the rounds the "ServerApp" reports for the builder's job
ROUNDS_PLANNED = 5


def _artefacts() -> Path:
    base = os.environ.get("IPSPACE_TEST_ARTEFACTS")
    directory = Path(base) / "dashboard" if base else REPO / "test-artefacts" / "dashboard"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _playwright() -> ModuleType:
    """playwright.sync_api, or skip (fail when IPSPACE_REQUIRE_BROWSER=1) saying what is missing."""
    missing = []
    module = None
    try:
        module = importlib.import_module("playwright.sync_api")
    except ImportError:
        missing.append("the playwright package (pip install playwright==1.65.2)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing or module is None:
        reason = "the dashboard's browser test needs " + " and ".join(missing)
        if os.environ.get("IPSPACE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return module


@pytest.fixture(scope="module")
def dashboard(
    space: Space, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Coordinator, NodeServer, str]]:
    """One coordinator with the dashboard for the module, knowing a node the regulator's test tampers with."""
    directory = tmp_path_factory.mktemp("dashboard")
    with tampered_coordinator(space, directory) as handle:
        yield handle


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = _playwright()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        sync_api.expect.set_options(timeout=WAIT_MS)
        try:
            yield chromium
        finally:
            chromium.close()


class Session:
    """One member's browser context: their client certificate for the coordinator's origin, a page, and a
    record of script errors and CSP violations."""

    def __init__(self, browser: Any, coordinator: Coordinator, member: str) -> None:
        identity = coordinator.space.members[member]
        self.coordinator = coordinator
        self.context = browser.new_context(
            client_certificates=[
                {
                    "origin": coordinator.base_url,
                    "certPath": str(identity / "tls.crt"),
                    "keyPath": str(identity / "tls.key"),
                }
            ],
            # Chromium does not trust the data space's private CA (the member's own clients trust it from
            # their identity directory), so the coordinator's certificate is taken unchecked here; the
            # coordinator still checks the browser's client certificate against the CA.
            ignore_https_errors=True,
            viewport={"width": 1400, "height": 900},
        )
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.problems.append(message.text)

    def open(self) -> Any:
        response = self.page.goto(f"{self.coordinator.base_url}{DASHBOARD_PATH}")
        assert response is not None and response.ok, response
        return response

    def sign_in(self, *, token: str | None = None, token_file: Path | None = None) -> None:
        self.open()
        if token is not None:
            self.page.get_by_label("Token", exact=True).fill(token)
        if token_file is not None:
            self.page.get_by_label("or read it from your token file").set_input_files(str(token_file))
        self.page.get_by_role("button", name="Sign in").click()

    def shot(self, name: str, locator: Any = None) -> Path:
        path = _artefacts() / f"{name}.png"
        (locator or self.page).screenshot(path=str(path), **({} if locator else {"full_page": True}))
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.problems, self.problems


@pytest.fixture
def session(browser: Any, dashboard: tuple[Coordinator, NodeServer, str]) -> Iterator[Any]:
    """Opens sessions with ``session(member)``; each is closed (and checked for script errors) at the end."""
    opened: list[Session] = []

    def open_session(member: str) -> Session:
        opened.append(Session(browser, dashboard[0], member))
        return opened[-1]

    yield open_session
    for item in opened:
        item.close()


# --- without a browser -------------------------------------------------------------------------------------


def test_the_page_needs_no_token_but_the_tls_handshake_still_needs_a_certificate(
    dashboard: tuple[Coordinator, NodeServer, str],
) -> None:
    coordinator = dashboard[0]
    with coordinator.client("carl", token="not-sent") as client:
        page = client.get(f"{DASHBOARD_PATH}/", headers={"Authorization": ""})
        redirect = client.get(DASHBOARD_PATH, headers={"Authorization": ""})
        me = client.get("/me", headers={"Authorization": ""})
    assert page.status_code == 200 and "<title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith(f"{DASHBOARD_PATH}/")
    assert me.status_code == 401 and "no token" in me.json()["detail"]  # the data still needs the token
    context = ssl.create_default_context(cafile=coordinator.space.members["carl"] / "ca.crt")
    stranger = httpx.Client(base_url=coordinator.base_url, verify=context, timeout=10)
    with stranger, pytest.raises(httpx.TransportError):
        stranger.get(f"{DASHBOARD_PATH}/")


def test_me_names_the_caller(dashboard: tuple[Coordinator, NodeServer, str]) -> None:
    with dashboard[0].client("bea") as bea:
        assert bea.get("/me").json() == {"name": "bea", "org": "acme", "role": "builder"}


# --- in the browser ----------------------------------------------------------------------------------------


def test_a_regulator_sees_the_logs_a_denial_a_tampered_node_and_an_alert(
    session: Any, dashboard: tuple[Coordinator, NodeServer, str], tmp_path: Path
) -> None:
    expect = _playwright().expect
    coordinator, node, tampered = dashboard
    space = coordinator.space
    _use_agreements(coordinator)
    call_node(space, node, 3)
    rita = session("rita")
    rita.sign_in(token=space.token("rita"))
    page = rita.page
    expect(page.get_by_test_id("who")).to_have_text("rita · ip-authority · regulator")

    # 1. Every log verified.
    _verify_now(page)
    logs = ["node-us", "node-eu", tampered, "coordinator"]
    for log in logs:
        row = page.get_by_test_id(f"log-row-{log}")
        expect(row).to_have_attribute("data-state", "verified")
        expect(row.get_by_test_id("log-state")).to_have_text("✓ Verified")
    expect(page.get_by_test_id("log-table").locator("tbody tr")).to_have_count(len(logs))
    expect(page.locator("#sync-note")).to_contain_text(f"{len(logs)} of {len(logs)} logs verified")
    rita.shot("01-regulator-every-log-verified")

    # 2. A denial at a real node, found in the timeline with its reason after "Verify now".
    match = space.agreement("carl", "node-us", "match")
    with _at_node(space, "carl", "node-us") as carl, pytest.raises(NodeRefused):
        carl.reveal(match, space.record_ids[:1], ["title"])  # a match agreement reveals nothing
    _verify_now(page)
    expect(page.get_by_test_id("log-row-node-us")).to_have_attribute("data-state", "verified")
    page.get_by_label("Decision").select_option("deny")
    page.get_by_label("Org", exact=True).fill("acme")
    page.get_by_label("Log", exact=True).select_option("node-us")
    page.get_by_role("button", name="Apply filters").click()
    [denial] = _api(coordinator, "/audit/entries", log="node-us", decision="deny", org="acme", limit=1)[
        "entries"
    ]
    row = page.locator(f'[data-testid="entry-deny"][data-log="node-us"][data-index="{denial["index"]}"]')
    expect(row.get_by_test_id("decision")).to_have_text("✗ denied")
    expect(row.get_by_test_id("reason")).to_have_text(denial["reason"])
    assert "reveal" in denial["reason"]
    expect(page.get_by_test_id("timeline").locator("tbody tr[data-testid='entry-allow']")).to_have_count(0)
    rita.shot("02-regulator-denial-with-its-reason")

    # 3. The extra node's provider edits an entry while it serves: its row turns red at that entry.
    verified = {item["log"]: item for item in _api(coordinator, "/audit/status")}[tampered]["verified_size"]
    call_node(space, node, 4)
    edited = first_entry_by(node, "carl", from_index=verified + 1)  # not indexed yet
    edit_entry(node, edited)
    _verify_now(page)
    row = page.get_by_test_id(f"log-row-{tampered}")
    expect(row).to_have_attribute("data-state", "failed")
    expect(row.get_by_test_id("log-state")).to_have_text("✗ Failed")
    expect(row.get_by_test_id("first-bad-index")).to_have_text(f"#{edited}")
    assert row.evaluate("element => getComputedStyle(element).backgroundColor") == "rgb(255, 235, 233)"
    expect(page.get_by_test_id("log-row-node-us")).to_have_attribute("data-state", "verified")
    rita.shot("03-regulator-tampered-node-failed")

    # 4. node-eu shows the coordinator two different logs of one size: an alert, on "Refresh".
    _push_equivocating_heads(coordinator, tmp_path)
    page.get_by_role("button", name="Refresh").click()
    [alert] = _api(coordinator, "/audit/alerts")
    alert_row = page.get_by_test_id(f"alert-{alert['alert_id']}")
    expect(alert_row).to_contain_text("node-eu")
    expect(alert_row).to_contain_text("equivocation")
    expect(alert_row).to_contain_text(alert["detail"])
    expect(page.get_by_test_id("log-row-node-eu")).to_contain_text("⚠ 1")
    rita.shot("04-regulator-alert", page.locator("section", has=page.get_by_test_id("alerts")))
    rita.shot("04-regulator-alert-full-page")

    # 5. Budget use per agreement, as bars against the limits.
    # The counts come from node-us's whole log, which other tests of this session may have added to.
    usage = {item["agreement_id"]: item for item in _api(coordinator, "/audit/usage")}
    reveal = usage[space.agreement("carl", "node-us", "reveal").agreement_id]
    assert reveal["reveal_records"] >= 3
    limit = reveal["reveal_records_limit"]
    used = f"of {limit}" if limit else "records · no limit"  # the conftest's reveal offers set no limit
    bars = f"revealed records: {reveal['reveal_records']} {used}"
    card = page.get_by_test_id(f"usage-{reveal['agreement_id']}").locator("svg[role='img']")
    expect(card).to_have_attribute("aria-label", _contains(bars))
    denied = usage[match.agreement_id]["denied"]
    assert denied >= 1
    expect(page.get_by_test_id(f"usage-{match.agreement_id}")).to_contain_text(f"{denied} denied")
    rita.shot("05-regulator-budget-use", page.locator("section", has=page.get_by_test_id("usage")))


def test_a_builder_sees_its_jobs_progress_and_training_curve(
    session: Any, dashboard: tuple[Coordinator, NodeServer, str]
) -> None:
    expect = _playwright().expect
    coordinator = dashboard[0]
    job_id = _job_with_rounds(coordinator)
    bea = session("bea")
    bea.sign_in(token_file=coordinator.space.members["bea"] / "token")  # picked from disk, not pasted
    page = bea.page
    expect(page.get_by_test_id("who")).to_have_text("bea · acme · builder")
    expect(page.get_by_test_id(f"job-row-{job_id}")).to_contain_text(f"{len(LOSSES)} / {ROUNDS_PLANNED}")
    expect(page.get_by_test_id("job-state")).to_have_text("running")
    expect(page.get_by_test_id("job-progress")).to_have_text(f"{len(LOSSES)} of {ROUNDS_PLANNED} rounds done")
    curve = page.get_by_test_id("curve").locator("svg[role='img']")
    expect(curve).to_have_attribute("aria-label", _contains("train_loss by round: 1: 0.9200, 2: 0.6100"))
    expect(curve.locator("circle.point")).to_have_count(len(LOSSES))
    heights = [float(point.get_attribute("cy")) for point in curve.locator("circle.point").all()]
    assert heights == sorted(heights)  # the loss falls, so each point sits lower on the screen than the next
    expect(page.get_by_test_id("epsilon")).to_contain_text("office-us")
    bea.shot("06-builder-training-curve")


def test_someone_elses_token_or_a_garbled_one_shows_the_apis_refusal(
    session: Any, dashboard: tuple[Coordinator, NodeServer, str]
) -> None:
    expect = _playwright().expect
    coordinator = dashboard[0]
    space = coordinator.space
    rita = session("rita")  # rita's certificate ...
    for token, name in ((space.token("bea"), "07-refused-another-members-token"), ("not-a-token", None)):
        rita.sign_in(token=token)  # ... and a token that is not hers
        with coordinator.client("rita", token=token) as client:
            refusal = client.get("/me")
        assert refusal.status_code == 401
        expect(rita.page.get_by_test_id("login-error")).to_have_text(
            f"The coordinator refused this token: {refusal.json()['detail']}"
        )
        expect(rita.page.locator("#regulator-view")).to_be_hidden()
        assert rita.page.evaluate("() => window.sessionStorage.length") == 0  # a refused token is not kept
        if name:
            rita.shot(name)
    carl = session("carl")
    carl.sign_in(token=space.token("carl"))
    expect(carl.page.get_by_test_id("no-view")).to_contain_text("holds the role consumer")


# --- what the tests do to the data space -------------------------------------------------------------------


def _verify_now(page: Any) -> None:
    """Click "Verify now" and wait until the page shows everything as of that check."""
    button = page.get_by_test_id("verify-now")
    button.click()
    _playwright().expect(button).to_have_text("Verify now")  # "Verifying…" until then
    _playwright().expect(button).to_be_enabled()


def _api(coordinator: Coordinator, path: str, **params: object) -> Any:
    with coordinator.client("rita") as rita:
        answer = rita.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _at_node(space: Space, member: str, node: str) -> NodeClient:
    return NodeClient(space.node_addresses[node], space.identity(member), space.token(member))


def _use_agreements(coordinator: Coordinator) -> None:
    """carl registers a match and a reveal agreement with node-us, and reveals three records by the second."""
    space = coordinator.space
    agreements = [space.agreement("carl", "node-us", offer) for offer in ("match", "reveal")]
    with coordinator.client("carl") as carl:
        for agreement in agreements:
            assert register(carl, agreement).status_code in (200, 201)
    with _at_node(space, "carl", "node-us") as carl:
        carl.reveal(agreements[1], space.record_ids[:3], ["title"])


def _push_equivocating_heads(coordinator: Coordinator, directory: Path) -> None:
    """node-eu signs, with its real key, a log of another content but of the size of its latest kept head, and
    pushes that head: two roots for one size."""
    [kept] = [item for item in _api(coordinator, "/audit/heads") if item["node"] == "node-eu"]
    size = kept["latest"]["head"]["tree_size"]
    identity = coordinator.space.identity("node-eu")
    entries = [catalog_entry(n, "node-eu") for n in range(size)]
    with forged_log(directory / "other.db", identity, entries) as log:
        pusher = HeadPusher(log, coordinator.base_url, coordinator.space.members["node-eu"], interval_s=3600)
        outcome = pusher.push_now()
    assert (outcome.status, outcome.verdict) == (409, "equivocation"), outcome


def _job_with_rounds(coordinator: Coordinator) -> str:
    """A job bea submits through the API, then the rounds a ServerApp would record (written to its store)."""
    space = coordinator.space
    agreements = [space.agreement("bea", node) for node in ("node-us", "node-eu")]
    body = submission(space, agreements, rounds=ROUNDS_PLANNED)
    with coordinator.client("bea") as bea:
        for agreement in agreements:
            assert register(bea, agreement).status_code in (200, 201)
        created = bea.post("/jobs", json=body)
    assert created.status_code == 201, created.text
    store = JobStore(coordinator.settings.database, coordinator.settings.models_dir)
    store.set_state(body["job_id"], JobState.RUNNING)
    for number, loss in enumerate(LOSSES, start=1):
        metrics = {"train_loss": loss, "nodes": 2.0, "examples": 240.0}
        store.record_round(
            body["job_id"], number, metrics, {"office-us": 0.3 * number, "office-eu": 0.25 * number}
        )
    return body["job_id"]


def _contains(text: str) -> re.Pattern[str]:
    return re.compile(re.escape(text))
