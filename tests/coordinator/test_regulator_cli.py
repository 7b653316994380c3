"""The regulator's commands, run as a regulator would against a real coordinator and real nodes: the index's
status, entries and usage, the heads with a comparison made at the node itself, and the whole data space
exported and verified in one command each, exit codes included."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from contracts.client import NodeClient
from ipspace.cli import app as cli_app
from ipspace.exit_codes import ExitCode
from node.head_pusher import HeadPusher
from tests.coordinator._forged_logs import catalog_entry, forged_log
from tests.coordinator.conftest import Coordinator

WIDE = {"COLUMNS": "200"}  # rich wraps tables to the terminal; a wide one keeps each row on one line


def _ipspace(coordinator: Coordinator, *args: str) -> tuple[int, str]:
    rita = str(coordinator.space.members["rita"])
    result = CliRunner().invoke(
        cli_app, [*args, "--coordinator", coordinator.base_url, "--identity", rita], env=WIDE
    )
    return result.exit_code, result.output


def test_status_entries_and_usage_show_the_verified_index(coordinator: Coordinator) -> None:
    space = coordinator.space
    with NodeClient(space.node_addresses["node-us"], space.identity("carl"), space.token("carl")) as carl:
        carl.list_datasets()
    code, shown = _ipspace(coordinator, "audit", "status", "--sync")
    # node-down never answers: it is unreachable, which is not a verification failure.
    assert code == 0, shown
    assert "node-us" in shown and "verified" in shown and "unreachable" in shown
    code, shown = _ipspace(coordinator, "audit", "entries", "--log", "node-us", "--org", "acme")
    assert code == 0 and "carl (acme, consumer)" in shown and "ListDatasets" in shown
    code, shown = _ipspace(coordinator, "audit", "usage")
    assert code == 0 and "use of each agreement" in shown


def test_heads_compare_at_the_node_and_exit_1_once_an_alert_is_raised(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    space = coordinator.space
    address = space.node_addresses["node-us"]
    code, shown = _ipspace(coordinator, "audit", "heads", "--collect", "--compare", f"node-us={address}")
    assert code == 0, shown
    assert "consistent" in shown or "known" in shown
    # node-us now shows the coordinator a second log of the size it last kept: two roots for one size.
    size = int(_kept_size(coordinator, "node-us"))
    entries = [catalog_entry(n, "node-us", variant="-forged") for n in range(size)]
    with forged_log(tmp_path / "forged.db", space.identity("node-us"), entries) as forged:
        pusher = HeadPusher(forged, coordinator.base_url, space.members["node-us"], interval_s=3600)
        assert pusher.push_now().verdict == "equivocation"
    code, shown = _ipspace(coordinator, "audit", "heads")
    assert code == ExitCode.VERIFICATION_FAILED
    assert "ALERT #1" in shown and "equivocation" in shown


def test_the_whole_data_space_is_exported_and_verified_in_one_command_each(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    space = coordinator.space
    _ipspace(coordinator, "audit", "heads", "--collect")
    out = tmp_path / "space"
    nodes = [
        f"--node=node-us={space.node_addresses['node-us']}",
        f"--node=node-eu={space.node_addresses['node-eu']}",
    ]
    code, shown = _ipspace(coordinator, "audit", "export-space", str(out), *nodes)
    assert code == 0, shown
    ca = str(space.members["rita"] / "ca.crt")
    verified = CliRunner().invoke(cli_app, ["audit", "verify", str(out), "--ca", ca], env=WIDE)
    assert verified.exit_code == 0, verified.output
    assert "the data space verifies" in verified.output
    # Edit one of node-eu's exported entries: the verdict names node-eu and the entry.
    entries = out / "nodes" / "node-eu" / "entries.jsonl"
    lines = entries.read_bytes().splitlines()
    assert b'"decision":"allow"' in lines[0]
    lines[0] = lines[0].replace(b'"decision":"allow"', b'"decision":"deny"')
    entries.write_bytes(b"".join(line + b"\n" for line in lines))
    failed = CliRunner().invoke(cli_app, ["audit", "verify", str(out), "--ca", ca], env=WIDE)
    assert failed.exit_code == ExitCode.VERIFICATION_FAILED
    assert "FAILED node node-eu at entry 0" in failed.output
    assert "does not verify: node-eu" in failed.output


def _kept_size(coordinator: Coordinator, node: str) -> int:
    with coordinator.client("rita") as rita:
        return rita.get(f"/audit/heads/{node}").json()[-1]["head"]["tree_size"]
