"""Eight clients, two hundred calls each, at once: every call has its entry, and the log still verifies."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from audit import verify_bundle
from ipspace.audit_export import export_node_log
from tests.node.conftest import Space

CLIENTS = 8
CALLS = 200


def test_concurrent_calls_are_each_recorded_and_the_log_verifies(space: Space, tmp_path: Path) -> None:
    agreement = space.agreement(
        "builder"
    )  # the builder's own agreement, so no other test's budget is touched
    before = len(space.entries())

    def client_run(number: int) -> tuple[int, int]:
        allowed = denied = 0
        member = "builder" if number % 2 else "regulator"
        with space.client(member) as client:
            for call in range(CALLS):
                if member == "builder" and call % 4 == 0:
                    # a reveal of a field the offer does not list: a denial, which must be recorded as well
                    try:
                        client.reveal(agreement, space.record_ids[:1], ["inventors"])
                    except Exception:  # noqa: BLE001 - counted, and checked against the log below
                        denied += 1
                    continue
                client.list_datasets()
                allowed += 1
        return allowed, denied

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(client_run, range(CLIENTS)))
    allowed = sum(a for a, _ in outcomes)
    denied = sum(d for _, d in outcomes)
    assert allowed + denied == CLIENTS * CALLS

    entries = space.entries()[before:]
    assert len(entries) == CLIENTS * CALLS
    assert sum(e["decision"] == "allow" for e in entries) == allowed
    assert sum(e["decision"] == "deny" for e in entries) == denied
    indexes = [e["index"] for e in entries]
    assert indexes == list(range(before, before + CLIENTS * CALLS))

    with space.client("regulator") as regulator:
        export_node_log(regulator, tmp_path / "bundle", ca_cert_pem=space.local.ca.cert_pem)
    summary = verify_bundle(tmp_path / "bundle", space.local.ca.cert_pem)
    assert summary.entries >= before + CLIENTS * CALLS
