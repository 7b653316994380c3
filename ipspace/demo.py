"""``ipspace demo``: a complete local data space on real patent data, end to end, in a few minutes.

1. A CA; three provider nodes, each a separate ``ipspace node serve`` process holding one jurisdiction-based
   partition of the Lens drone patent families (US / Europe / Asia-Pacific), each with its own offers.
2. A consumer reads every catalog, gets an agreement from each node (one node's offer needs the provider's
   manual approval, given with ``ipspace node approve``), and reveals a few records.
3. Requests outside the agreements are refused with a reason: a field the offer does not list, a purpose it
   does not allow.
4. A model builder trains the valuation model across the three nodes on the coordinator: Flower's SuperLink,
   each node's SuperNode (started with the node), SecAgg+ over DP-SGD steps the nodes run themselves, and the
   model's held-out quality beside a centralized baseline, with the epsilon each node spent. The consumer then
   values one real held-out patent with that model under encryption (``ipspace.demo_valuation``).
5. The regulator's data-space verification. Every node has pushed its signed tree heads to the coordinator
   all along; the regulator has the coordinator pull fresh ones and verify every log into its index, then
   exports the whole data space (the coordinator's own log, each node's log straight from the node, the kept
   heads and alerts) and verifies that bundle offline with only the CA certificate. A summary table closes
   the run, with where the dashboard is (``--serve`` keeps the data space up to look at it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from contracts.agreements import Agreement
from contracts.client import NodeClient, NodeRefused
from contracts.offers import Action, Constraints, Offer
from coordinator.settings import CoordinatorSettings, NodeEndpoint
from crypto import Identity, Role
from ipspace.cli_identity import read_token
from ipspace.coordinator_host import CoordinatorHost, free_port
from ipspace.demo_federated import JobOutcome, run_valuation_job, training_offer
from ipspace.demo_matching import match_offer, run_encrypted_match
from ipspace.demo_regulator import print_dashboard, run_regulator_check
from ipspace.demo_valuation import run_encrypted_valuation
from ipspace.flower_processes import ChildProcess, write_supernode_key
from ipspace.local_space import LOOPBACK_HOSTS, LocalDataSpace
from ipspace.sample_data import LENS_FAMILIES, LENS_ID_FIELD, LENS_SOURCE
from node.config import NodeConfig
from node.partition import partition_by_jurisdiction, read_rows, write_partitions

console = Console()
MARKER = ".ipspace-demo"
PROVIDERS = {  # partition name -> (node name, provider org, offer needs manual approval)
    "provider-us": ("node-us", "us-patent-office", False),
    "provider-eu": ("node-eu", "eu-ip-exchange", False),
    "provider-apac": ("node-apac", "apac-university", True),
}
REVEAL_FIELDS = (
    "title",
    "applicants",
    "publication_date",
    "jurisdiction",
    "cited_count",
    "cpc_classifications",
)
START_TIMEOUT_S = 30.0
DEMO_ROUNDS = 3  # SecAgg+ rounds cost about 25 s each here: three keep the whole demo within 3 minutes
NODE_STOP_GRACE_S = 10.0  # a node stops its SuperNode (up to 5 s) before itself
HEAD_PUSH_S = 10.0  # how often each node pushes its signed tree head to the coordinator
SERVE_POLL_S = 1.0


def _offer(org: str, manual: bool) -> Offer:
    return Offer(
        offer_id="families-scouting",
        provider_org=org,
        dataset="lens_families",
        actions=(Action.REVEAL,),
        approval="manual" if manual else "automatic",
        constraints=Constraints(
            purposes=("technology-scouting", "research"),
            reveal_fields=REVEAL_FIELDS,
            reveal_max_records_per_request=5,
            reveal_max_records_total=25,
        ),
        description="reveal bibliographic fields of chosen patent families, for scouting or research",
    )


class _Nodes:
    """The node processes; every one is stopped by its PID, whatever happens, and ends with the demo's own
    process if that is killed first."""

    def __init__(self) -> None:
        self.processes: dict[str, ChildProcess] = {}

    def start(self, name: str, directory: Path, log_file: Path, superlink: str, coordinator: str) -> None:
        command = [
            *(sys.executable, "-m", "ipspace", "node", "serve", str(directory)),
            *("--superlink", superlink, "--coordinator", coordinator, "--push-every", str(HEAD_PUSH_S)),
        ]
        self.processes[name] = ChildProcess.start(name, command, dict(os.environ), log_file)

    def wait_ready(self, directories: dict[str, Path]) -> dict[str, str]:
        deadline = time.monotonic() + START_TIMEOUT_S
        addresses: dict[str, str] = {}
        while len(addresses) < len(directories):
            for name, directory in directories.items():
                process = self.processes[name]
                if not process.alive():
                    raise RuntimeError(
                        f"node {name} exited with {process.popen.returncode}; see {process.log_path}"
                    )
                address_file = directory / "node.addr"
                if name not in addresses and address_file.exists():
                    addresses[name] = address_file.read_text().strip()
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        return addresses

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(grace_s=NODE_STOP_GRACE_S)


def _prepare(
    workdir: Path,
) -> tuple[LocalDataSpace, dict[str, Path], dict[str, list[str]], dict[str, tuple[str, ...]]]:
    if workdir.exists():
        if not (workdir / MARKER).exists():
            raise FileExistsError(f"{workdir} exists and is not a demo directory; choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).touch()
    space = LocalDataSpace(workdir)
    space.create_ca()
    header, rows = read_rows(LENS_FAMILIES)
    parts = partition_by_jurisdiction(rows, len(PROVIDERS))
    csv_paths = write_partitions(parts, workdir / "partitions", header)
    node_dirs, ids, jurisdictions = {}, {}, {}
    for part in parts:
        name, org, manual = PROVIDERS[part.provider]
        node_dirs[name] = space.init_node(
            name,
            org,
            offers=[_offer(org, manual), training_offer(org), match_offer(org)],
            embed={"lens_families": ("title",)},
            listen=f"127.0.0.1:{free_port()}",  # known before the node starts: the coordinator routes to it
            datasets={
                "lens_families": (
                    csv_paths[part.provider],
                    LENS_ID_FIELD,
                    f"Lens patent families on drones, {', '.join(part.jurisdictions[:6])}…",
                    LENS_SOURCE,
                )
            },
        )
        # Publication numbers are public: the consumer read these in the patent press, say.
        ids[name] = [row[LENS_ID_FIELD] for row in part.rows[:3]]
        jurisdictions[name] = tuple(
            code for code, _ in Counter(r["jurisdiction"] for r in part.rows).most_common()
        )
    return space, node_dirs, ids, jurisdictions


def _agree(client: NodeClient, node_dir: Path, name: str) -> Agreement:
    offer = client.offer("families-scouting")
    status = client.request_agreement(offer, "technology-scouting")
    if status.state == "pending":
        console.print(f"  {name}: offer needs approval; the provider runs 'ipspace node approve'")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ipspace",
                "node",
                "approve",
                str(node_dir),
                status.request_id,
                "--reason",
                "known firm, scouting purpose",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        status = client.request_status(status.request_id)
    if status.state != "approved" or status.agreement is None:
        raise RuntimeError(f"{name} did not agree: {status.reason}")
    return status.agreement


def run_demo(workdir: str, *, keep: bool = False, rounds: int = DEMO_ROUNDS, serve: bool = False) -> int:
    """Run the demo in ``workdir``; with ``serve`` keep the data space up (the dashboard too) until Ctrl-C."""
    started = time.monotonic()
    root = Path(workdir).resolve()
    space, node_dirs, ids, jurisdictions = _prepare(root)
    consumer = space.issue("scout", "acme-robotics", Role.CONSUMER)
    builder = space.issue("modeller", "acme-robotics", Role.BUILDER)
    regulator = space.issue("inspector", "ip-regulator", Role.REGULATOR)
    coordinator_identity = space.issue(
        "coordinator", "data-space-operator", Role.COORDINATOR, hosts=LOOPBACK_HOSTS
    )
    endpoints = [
        NodeEndpoint(name=name, address=NodeConfig.load(directory).listen, org=NodeConfig.load(directory).org)
        for name, directory in node_dirs.items()
    ]
    host = CoordinatorHost(
        CoordinatorSettings(identity_dir=coordinator_identity, data_dir=root / "coordinator", nodes=endpoints)
    )
    nodes = _Nodes()
    results: dict[str, dict[str, object]] = {name: {} for name in node_dirs}
    try:
        api_port = host.start()
        url = f"https://127.0.0.1:{api_port}"
        for name, directory in node_dirs.items():
            (directory / "flower").mkdir(exist_ok=True)
            host.register_supernode(write_supernode_key(directory / "flower"), name)
            nodes.start(name, directory, root / f"{name}.log", host.superlink_address, url)
        addresses = nodes.wait_ready(node_dirs)
        console.print(f"Data: {LENS_SOURCE} (real, public; data/README.md)")
        console.print(
            f"[bold]3 nodes up[/bold] ({time.monotonic() - started:.1f} s): "
            + ", ".join(f"{n} at {a}" for n, a in addresses.items())
        )
        reveal_agreements = _consumer_scenario(consumer, addresses, node_dirs, ids, results)
        console.print("[bold]Encrypted technology matching[/bold] (CKKS; through the coordinator)")
        run_encrypted_match(consumer, f"https://127.0.0.1:{api_port}", addresses, reveal_agreements, console)
        console.print("[bold]Federated valuation[/bold] (coordinator: job API + Flower SuperLink)")
        _wait_supernodes(host, len(node_dirs))
        outcome = run_valuation_job(
            builder, addresses, f"https://127.0.0.1:{api_port}", root, console, rounds=rounds
        )
        _print_valuation(outcome, node_dirs)
        console.print("[bold]Encrypted valuation[/bold] (CKKS; the job's model at the coordinator)")
        run_encrypted_valuation(
            consumer, f"https://127.0.0.1:{api_port}", outcome.job["job_id"], outcome.model_file, console
        )
        console.print("[bold]The regulator's data-space verification[/bold] (trusting only the CA)")
        run_regulator_check(regulator, url, addresses, root, space, results=results)
        _print_summary(results, jurisdictions, time.monotonic() - started)
        print_dashboard(url, regulator, builder)
        if serve:
            _serve_until_interrupted(nodes)
    finally:
        nodes.stop()
        host.stop()
    if not keep and not serve:
        shutil.rmtree(root)
    return 0 if all(str(r.get("verified", "")).startswith("OK") for r in results.values()) else 1


def _consumer_scenario(
    consumer: Path,
    addresses: dict[str, str],
    node_dirs: dict[str, Path],
    ids: dict[str, list[str]],
    results: dict[str, dict[str, object]],
) -> dict[str, Agreement]:
    """The consumer reads each catalog, agrees, reveals, and is refused outside its agreement; returns its
    scouting agreement with each node."""
    scout = Identity.load(consumer)
    agreements = {}
    for name, address in addresses.items():
        with NodeClient(address, scout, read_token(consumer)) as client:
            listing = client.list_datasets()
            results[name]["rows"] = listing.datasets[0].row_count
            agreement = _agree(client, node_dirs[name], name)
            agreements[name] = agreement
            rows, _missing = client.reveal(agreement, ids[name][:2], ["title", "applicants", "cited_count"])
            results[name]["revealed"] = len(rows)
            console.print(
                f"  {name}: agreement {agreement.agreement_id[7:19]}…, revealed "
                + "; ".join(f"{r[LENS_ID_FIELD]}: {str(r.get('title', ''))[:48]}" for r in rows)
            )
            refusals = []
            for label, call in (
                (
                    "field 'inventors'",
                    lambda c=client, a=agreement, n=name: c.reveal(a, ids[n][:1], ["inventors"]),
                ),
                (
                    "purpose 'marketing'",
                    lambda c=client, a=agreement, n=name: c.call(
                        c.reveal_stub.Reveal, _reveal_request(a, ids[n][:1], "marketing")
                    ),
                ),
            ):
                try:
                    call()
                except NodeRefused as refused:
                    refusals.append(f"{label} -> {refused.status.name}: {refused.reason}")
            results[name]["refused"] = len(refusals)
            for line in refusals[: 1 if name != "node-us" else 2]:
                console.print(f"  {name}: refused {line}")
    return agreements


def _serve_until_interrupted(nodes: _Nodes) -> None:
    console.print("[bold]Serving[/bold] the data space until Ctrl-C (--serve)")
    try:
        while all(process.alive() for process in nodes.processes.values()):
            time.sleep(SERVE_POLL_S)
        console.print("[red]a node stopped[/red]; stopping the data space")
    except KeyboardInterrupt:
        console.print("stopping the data space")


def _wait_supernodes(host: CoordinatorHost, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S * 2
    while len(host.online_nodes()) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(host.online_nodes())} of {count} SuperNodes joined the SuperLink")
        time.sleep(0.3)


def _print_valuation(outcome: JobOutcome, node_dirs: dict[str, Path]) -> None:
    last = outcome.job["rounds"][-1]
    spent = ", ".join(f"{org} {epsilon:.2f}" for org, epsilon in sorted(last["epsilon_by_node"].items()))
    table = Table("model (held-out split of all nodes)", "Spearman", "R²", title="Valuation model quality")
    table.add_row(
        "federated, SecAgg+ and DP (epsilon <= 8 per node)", *map("{:.3f}".format, outcome.federated)
    )
    table.add_row(
        "centralized ridge on the pooled training rows", *map("{:.3f}".format, outcome.centralized_ridge)
    )
    console.print(table)
    console.print(f"  epsilon spent per node (budget 8 each): {spent}")


def _reveal_request(agreement: Agreement, record_ids: list[str], purpose: str):
    from contracts.v1 import reveal_pb2

    return reveal_pb2.RevealRequest(
        agreement_id=agreement.agreement_id,
        dataset=agreement.terms.dataset,
        purpose=purpose,
        record_ids=record_ids,
        fields=["title"],
    )


def _print_summary(
    results: dict[str, dict[str, object]], jurisdictions: dict[str, tuple[str, ...]], elapsed: float
) -> None:
    table = Table(
        "node",
        "holds",
        "rows",
        "revealed",
        "refused",
        "log allow/deny",
        "index",
        "audit verify",
        title=f"IP data space demo ({elapsed:.1f} s)",
    )
    for name, result in results.items():
        held_by = jurisdictions.get(name, ("its own log",))
        held = " ".join(held_by[:3]) + (" …" if len(held_by) > 3 else "")
        table.add_row(
            name,
            held,
            f"{result['rows']:,}" if "rows" in result else "-",
            str(result.get("revealed", "-")),
            str(result.get("refused", "-")),
            f"{result.get('allowed', '-')}/{result.get('denied', '-')}",
            str(result.get("index", "-")),
            str(result.get("verified", "not checked")),
        )
    console.print(table)
