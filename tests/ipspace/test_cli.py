"""The ``ipspace`` command line as a person runs it: separate processes, real files, a real node process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.odrl import offer_from_odrl
from contracts.offers import load_offer
from ipspace.exit_codes import ExitCode
from ipspace.sample_data import LENS_FAMILIES
from node.partition import read_rows

IPSPACE = [sys.executable, "-m", "ipspace"]
START_TIMEOUT_S = 30


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*IPSPACE, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"ipspace {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path | str]]:
    """A CA, a provider node made with the CLI, served by ``ipspace node serve``; a consumer, a regulator."""
    root = tmp_path_factory.mktemp("cli")
    run("ca", "init", str(root / "ca"))
    run(
        "identity",
        "issue",
        str(root / "node-id"),
        "--ca",
        str(root / "ca"),
        "--name",
        "node-x",
        "--org",
        "office-x",
        "--role",
        "provider",
        "--host",
        "127.0.0.1",
    )
    for name, org, role in (("carol", "acme", "consumer"), ("rita", "authority", "regulator")):
        run(
            "identity",
            "issue",
            str(root / name),
            "--ca",
            str(root / "ca"),
            "--name",
            name,
            "--org",
            org,
            "--role",
            role,
        )
    run("data", "partition", str(root / "parts"), "--providers", "3")
    node = root / "node"
    run(
        "node",
        "init",
        str(node),
        "--name",
        "node-x",
        "--org",
        "office-x",
        "--identity",
        str(root / "node-id"),
        "--dataset",
        f"families={root / 'parts' / 'provider-eu.csv'}",
        "--id-field",
        "publication_number",
        "--source",
        "Lens.org (see data/README.md)",
    )
    offer = {
        "offer_id": "eu-research",
        "provider_org": "office-x",
        "dataset": "families",
        "actions": ["reveal"],
        "constraints": {
            "purposes": ["research"],
            "reveal_fields": ["title"],
            "reveal_max_records_per_request": 3,
        },
    }
    (node / "offers" / "eu-research.json").write_text(json.dumps(offer))
    manual = {
        **offer,
        "offer_id": "eu-licensing",
        "approval": "manual",
        "constraints": {"purposes": ["licensing"], "reveal_fields": ["title"]},
    }
    (node / "offers" / "eu-licensing.json").write_text(json.dumps(manual))
    with (root / "node.log").open("wb") as log:
        process = subprocess.Popen([*IPSPACE, "node", "serve", str(node)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (node / "node.addr").exists():
            assert process.poll() is None, (root / "node.log").read_text()
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.1)
        yield {
            "root": root,
            "node": node,
            "address": (node / "node.addr").read_text().strip(),
            "pid": process.pid,
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def test_a_consumer_reads_the_catalog_agrees_and_reveals(served) -> None:
    root, address = served["root"], served["address"]
    catalog = run("catalog", "--node", address, "--identity", str(root / "carol"))
    assert "families" in catalog.stdout and "1,473" in catalog.stdout
    agreed = run(
        "agree", "eu-research", "--node", address, "--identity", str(root / "carol"), "--purpose", "research"
    )
    assert "saved to" in agreed.stdout
    saved = next((root / "carol" / "agreements").glob("*.json"))
    _header, rows = read_rows(root / "parts" / "provider-eu.csv")
    known_id = rows[0]["publication_number"]  # publication numbers are public; the consumer knows this one

    def reveal(field: str) -> subprocess.CompletedProcess[str]:
        return run("reveal", "--node", address, "--identity", str(root / "carol"), "--agreement", str(saved),
                   "--ids", known_id, "--fields", field, check=False)  # fmt: skip

    revealed = reveal("title")
    assert revealed.returncode == 0, revealed.stderr
    records = json.loads(revealed.stdout)["records"]
    assert [set(record) for record in records] == [{"publication_number", "title"}]
    assert records[0]["title"] == rows[0]["title"]
    refused = reveal("inventors")
    assert refused.returncode == ExitCode.REFUSED
    assert "PERMISSION_DENIED" in refused.stderr and "inventors" in refused.stderr


def test_offers_export_as_odrl_that_imports_back(served) -> None:
    listed = run("offers", "--node", served["address"], "--identity", str(served["root"] / "carol"), "--odrl")
    policies = json.loads(listed.stdout)
    assert {policy["@type"] for policy in policies} == {"Offer"}
    imported = {offer_from_odrl(policy).offer_id: offer_from_odrl(policy) for policy in policies}
    on_disk = load_offer(served["node"] / "offers" / "eu-research.json")
    assert imported["eu-research"] == on_disk


def test_an_agreement_for_a_purpose_the_offer_does_not_allow_is_a_usage_error(served) -> None:
    result = run(
        "agree",
        "eu-research",
        "--node",
        served["address"],
        "--identity",
        str(served["root"] / "carol"),
        "--purpose",
        "marketing",
        check=False,
    )
    assert result.returncode == ExitCode.USAGE
    assert "marketing" in result.stderr


def test_the_regulator_exports_and_verifies_and_tampering_is_named(served) -> None:
    root, address = served["root"], served["address"]
    bundle = root / "bundle"
    run("audit", "export", str(bundle), "--node", address, "--identity", str(root / "rita"))
    ok = run("audit", "verify", str(bundle), "--ca", str(root / "ca" / "ca.crt"))
    assert "OK" in ok.stdout and "node-x" in ok.stdout

    entries = (bundle / "entries.jsonl").read_bytes().splitlines()
    assert len(entries) >= 4
    for kind, edit, first_bad in (
        ("edited", lambda lines: [*lines[:2], lines[2].replace(b"allow", b"deny "), *lines[3:]], 2),
        ("deleted", lambda lines: lines[:1] + lines[2:], 1),
        ("reordered", lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 1),
        ("inserted", lambda lines: [lines[0], lines[0], *lines[1:]], 1),
    ):
        tampered = root / f"bundle-{kind}"
        shutil.copytree(bundle, tampered)
        (tampered / "entries.jsonl").write_bytes(b"\n".join(edit(entries)) + b"\n")
        result = run("audit", "verify", str(tampered), "--ca", str(root / "ca" / "ca.crt"), check=False)
        assert result.returncode == ExitCode.VERIFICATION_FAILED, (kind, result.stdout)
        assert f"entry {first_bad}" in result.stdout, (kind, result.stdout)


def test_heads_kept_from_an_earlier_export_are_proven_consistent(served) -> None:
    root, address = served["root"], served["address"]
    heads = root / "rita-heads.json"
    run("catalog", "--node", address, "--identity", str(root / "carol"))  # the log holds at least one entry
    for number in (1, 2):
        bundle = root / f"bundle-kept-{number}"
        run(
            "audit",
            "export",
            str(bundle),
            "--node",
            address,
            "--identity",
            str(root / "rita"),
            "--heads",
            str(heads),
        )
        run("audit", "verify", str(bundle), "--ca", str(root / "ca" / "ca.crt"))
    kept = json.loads(heads.read_text())
    assert len(kept) == 2 and kept[0]["tree_size"] < kept[1]["tree_size"]
    links = json.loads((root / "bundle-kept-2" / "consistency.json").read_text())
    assert [(link["first"], link["second"]) for link in links] == [
        (kept[0]["tree_size"], kept[1]["tree_size"])
    ]


def test_a_bundle_is_checked_against_the_ca_given_not_the_one_inside(served, tmp_path: Path) -> None:
    root = served["root"]
    run("ca", "init", str(tmp_path / "other-ca"))
    result = run(
        "audit", "verify", str(root / "bundle"), "--ca", str(tmp_path / "other-ca" / "ca.crt"), check=False
    )
    assert result.returncode == ExitCode.VERIFICATION_FAILED
    assert "INVALID" in result.stdout


def test_the_provider_approves_a_waiting_request_from_the_cli(served) -> None:
    root, node, address = served["root"], served["node"], served["address"]
    assert "no pending requests" in run("node", "requests", str(node)).stdout
    waiting = subprocess.Popen(
        [
            *IPSPACE,
            "agree",
            "eu-licensing",
            "--node",
            address,
            "--identity",
            str(root / "carol"),
            "--purpose",
            "licensing",
            "--wait",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "sha256:" not in (listed := run("node", "requests", str(node)).stdout):
            assert time.monotonic() < deadline, "the request never showed up"
            time.sleep(0.2)
        request_id = next(word for word in listed.split() if word.startswith("sha256:"))
        assert "licensing" in listed and "acme" in listed
        run("node", "approve", str(node), request_id, "--reason", "known licensee")
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(timeout=10)
    assert waiting.returncode == 0, err
    assert "saved to" in out
    missing = run("node", "approve", str(node), "sha256:" + "1" * 64, check=False)
    assert missing.returncode == ExitCode.REFUSED and "NOT_FOUND: no agreement request" in missing.stderr


def test_usage_errors_exit_2_with_a_reason(tmp_path: Path) -> None:
    result = run(
        "identity",
        "issue",
        str(tmp_path / "x"),
        "--ca",
        str(tmp_path / "no-ca"),
        "--name",
        "n",
        "--org",
        "o",
        "--role",
        "wizard",
        check=False,
    )
    assert result.returncode in (ExitCode.USAGE, ExitCode.CONFIGURATION)
    assert result.stderr.strip(), "an error must say why"


@pytest.mark.parametrize(
    "where", [[], ["--node", "127.0.0.1:1", "--coordinator", "https://127.0.0.1:1"]], ids=["neither", "both"]
)
def test_an_export_names_exactly_one_log_to_export(tmp_path: Path, where: list[str]) -> None:
    bundle = tmp_path / "bundle"
    result = run("audit", "export", str(bundle), *where, "--identity", str(tmp_path), check=False)
    assert result.returncode == ExitCode.USAGE
    assert "exactly one of --node" in result.stderr and "--coordinator" in result.stderr
    assert not bundle.exists()


def _loaded_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process's memory map from /proc")
def test_a_node_with_a_training_offer_loads_torch_before_its_first_round(served, tmp_path: Path) -> None:
    # A copy of the served node (its identity, data and offers) with a training offer added, on its own port.
    node = tmp_path / "trainer"
    shutil.copytree(served["node"], node, ignore=shutil.ignore_patterns("node.addr", "node.lock"))
    offer = {
        "offer_id": "eu-valuation",
        "provider_org": "office-x",
        "dataset": "families",
        "actions": ["train"],
        "constraints": {"purposes": ["valuation-research"], "epsilon": 4.0, "delta": 1e-5},
    }
    (node / "offers" / "eu-valuation.json").write_text(json.dumps(offer))
    with (tmp_path / "trainer.log").open("wb") as log:
        process = subprocess.Popen([*IPSPACE, "node", "serve", str(node)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not _loaded_torch(process.pid):
            assert process.poll() is None, (tmp_path / "trainer.log").read_text()
            assert time.monotonic() < deadline, "no torch loaded two minutes after the start"
            time.sleep(0.2)
        assert (node / "node.addr").exists()  # it serves while it loads
        assert not _loaded_torch(int(served["pid"]))  # a node that offers no training never loads it
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)  # stop waits for the import to end, then the log to drain


def test_the_demo_runs_the_whole_data_space(tmp_path: Path) -> None:
    # Two rounds instead of five: the federated part is what takes the demo's time.
    result = run("demo", "--workdir", str(tmp_path / "demo"), "--rounds", "2", timeout=480)
    for node in ("node-us", "node-eu", "node-apac"):
        assert node in result.stdout
    assert result.stdout.count("OK (") == 4, result.stdout  # three nodes' logs and the coordinator's own
    assert "the data space verifies" in result.stdout
    assert "/dashboard/" in result.stdout
    assert "PERMISSION_DENIED" in result.stdout
    assert "Valuation model quality" in result.stdout and "epsilon spent per node" in result.stdout
    assert "titles scored at 3 nodes" in result.stdout  # the encrypted match reached every node
    assert "revealed the best match" in result.stdout
    assert LENS_FAMILIES.exists()
