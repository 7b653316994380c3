"""The round benchmark's printed tables, and what they say against the goals and Flower's floor."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench._fl_breakdown import (
    APP,
    FETCH,
    HANDLER,
    IDLE_SLEEP_S,
    NOTICE,
    PICKUP,
    REPLY_POLL,
    REPLY_POLL_S,
    SERVER,
    SPAWN,
    STARTUP,
    SUPEREXEC_POLL_S,
    UPLOAD,
    floor_per_round,
)
from bench._fl_local import LocalCompute
from bench._fl_procs import KIND_SUPERNODES, KINDS
from bench._fl_space import ROWS_PER_NODE, SETTINGS
from bench._fl_summary import GOAL_PLAIN_S, GOAL_SECAGG_S, ConfigResult
from models.valuation.wire import weight_shapes

FLOWER_PROGRAMS = (
    "flower-superlink",
    "flower-supernode",
    "flower-superexec",
    "flwr-clientapp",
    "flwr-serverapp",
)
SEGMENT_ROWS = (
    (PICKUP, "pickup wait: SuperNode idle sleep (3 s)", "Flower, fixed"),
    (FETCH, "SuperNode fetches the message", "Flower"),
    (SPAWN, "SuperExec claims task (1 s poll), spawns", "Flower, env var"),
    (STARTUP, "flwr-clientapp start-up (imports, task, FAB)", "Flower"),
    (APP, "our ClientApp: load, connect, reply, SecAgg+", "ours"),
    (HANDLER, "node Train handler: gate, DP step, audit", "ours"),
    (REPLY_POLL, "SuperNode reply poll (0.5 s)", "Flower, fixed"),
    (UPLOAD, "SuperNode uploads the reply", "Flower"),
    (NOTICE, "ServerApp notices + pulls the last reply", "ours: poll"),
    (SERVER, "ServerApp aggregates, records, pushes next", "ours + Flower"),
)


def foreign_flower_processes() -> int:
    """Flower processes running on the machine now (other sessions' deployments, when none of ours runs)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = {os.path.basename(part.decode(errors="replace")) for part in argv[:2]}
        count += bool(names & set(FLOWER_PROGRAMS))
    return count


def _s(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _table(title: str, first: str, results: list[ConfigResult]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first, justify="left")
    for result in results:
        table.add_column(result.config.label, justify="right")
    return table


def render(outcome: dict[str, Any], console: Console) -> None:
    facts, local = outcome["facts"], outcome["local"]
    results: list[ConfigResult] = list(outcome["results"].values())
    parameters = sum(math.prod(shape) for shape in weight_shapes())
    console.print(
        f"[bold]ipspace federated rounds[/bold] ({facts['mode']}): 3 nodes over loopback, valuation MLP "
        f"({parameters:,} parameters), {SETTINGS.local_steps} local steps x batch {SETTINGS.batch_size} "
        f"on <= {ROWS_PER_NODE} rows per node; {facts['jobs_per_config']} job(s) x {facts['rounds_per_job']} "
        f"rounds per configuration; {facts['wall_s']:.0f} s in all"
    )
    console.print(
        f"machine: {facts['nproc']} cores; load average (1/5/15 min) {facts['load_at_start']} at start, "
        f"{facts['load_at_end']} at end; Flower processes of other sessions running: "
        f"{facts['foreign_flower_processes_at_start']} at start, "
        f"{facts['foreign_flower_processes_at_end']} at end"
    )
    for result in results:
        console.print(f"  [bold]{result.config.label}[/bold]: {result.config.description}")
    _render_local(local, console)
    _render_rounds(results, local, facts["nproc"], console)
    _render_breakdown(results, console)
    _render_stages(results, console)
    _render_once(results, console)
    _render_processes(results, console)
    _render_reading(results, local, facts["nproc"], console)


def _render_local(local: LocalCompute, console: Console) -> None:
    table = Table(title=f"Local compute, measured alone (median of {local.repeats})", title_justify="left")
    table.add_column("measurement")
    orgs = list(local.dp_step_s)
    for org in orgs:
        table.add_column(org, justify="right")
    for label, values in (
        ("DP step alone (local_dp_step), ms", local.dp_step_s),
        ("Train call on a warm mTLS channel (gate, step, audit), ms", local.train_call_s),
        ("Train call as the proxy makes it (new channel), ms", local.proxy_call_s),
        ("first Train call, 3 nodes at once (imports torch), ms", local.warmup_call_s),
    ):
        table.add_row(label, *(f"{1000 * values[org]:.0f}" for org in orgs))
    console.print(table)


def _render_rounds(results: list[ConfigResult], local: LocalCompute, cores: int, console: Console) -> None:
    table = _table("Training rounds (the evaluation after the last round is apart)", "", results)
    table.add_row("rounds measured", *(str(len(result.rounds)) for result in results))
    table.add_row("message exchanges per round", *(_s(r.exchanges_per_round, 0) for r in results))
    table.add_row("[bold]round wall time, mean (s)[/bold]", *(_bold(r.mean_round_s) for r in results))
    table.add_row("round wall time, min - max (s)", *(_range(r.round_seconds) for r in results))
    table.add_row("goal (s)", *(f"<= {r.config.goal_s:.0f}" for r in results))
    table.add_row(
        "", *("[green]met[/green]" if r.goal_met else "[bold red]MISSED[/bold red]" for r in results)
    )
    table.add_row("floor: Flower's fixed waits (s)", *(_s(r.floor_s) for r in results))
    table.add_row(f"floor: CPU-s per round / {cores} cores (s)", *(_s(r.cpu_floor_s(cores)) for r in results))
    table.add_row("round / DP step", *(f"{r.mean_round_s / local.step_s:,.0f}x" for r in results))
    table.add_row("round / node Train call", *(f"{r.mean_round_s / local.call_s:,.0f}x" for r in results))
    console.print(table)


def _render_breakdown(results: list[ConfigResult], console: Console) -> None:
    table = _table("Where a round goes, along the last node to reply (mean s per round)", "segment", results)
    table.add_column("whose", justify="left")
    segments = [result.segments() for result in results]
    for key, label, whose in SEGMENT_ROWS:
        table.add_row(label, *(_s(values[key]) for values in segments), whose)
    table.add_section()
    table.add_row("[bold]round[/bold]", *(_bold(r.mean_round_s) for r in results), "")
    table.add_row(
        "Flower's fixed sleeps (pickup + poll)", *(_share(r.fixed_wait_s(), r) for r in results), ""
    )
    table.add_row(
        "process per message (spawn + start)", *(_share(r.process_per_message_s(), r) for r in results), ""
    )
    handler = [_share(values[HANDLER], result) for values, result in zip(segments, results, strict=True)]
    table.add_row("node Train handler", *handler, "")
    console.print(table)


def _share(part: float, result: ConfigResult) -> str:
    whole = result.mean_round_s
    return f"{part:.2f} {100 * part / whole:.0f}%" if whole else "-"


def _bold(value: float) -> str:
    return f"[bold]{_s(value)}[/bold]"


def _range(values: list[float]) -> str:
    return f"{min(values):.1f} - {max(values):.1f}" if values else "-"


def _render_stages(results: list[ConfigResult], console: Console) -> None:
    secure = [result for result in results if result.config.secagg]
    if not secure:
        return
    table = _table("SecAgg+ exchanges, mean s each", "stage", secure)
    stages = [result.stage_seconds() for result in secure]
    for stage in stages[0]:
        table.add_row(stage, *(_s(values.get(stage, math.nan)) for values in stages))
    console.print(table)


def _render_once(results: list[ConfigResult], console: Console) -> None:
    table = _table("Once per job (mean s)", "", results)
    once = [result.once_per_job() for result in results]
    for key, label in (
        ("serverapp_startup_s", "ServerApp start-up: job start -> first push"),
        ("start_run_s", "  StartRun (Control API)"),
        ("serverapp_process_s", "  SuperExec claim + flwr-serverapp start-up"),
        ("first_push_s", "  load our ServerApp, sample nodes, push"),
        ("evaluation_s", "held-out evaluation exchange (last round)"),
        ("serverapp_end_s", "last round recorded -> ServerApp exits"),
        ("job_total_s", "job wall time: start -> final state"),
    ):
        table.add_row(label, *(_s(values[key]) for values in once))
    console.print(table)


def _render_processes(results: list[ConfigResult], console: Console) -> None:
    table = _table("Processes and CPU (from /proc)", "", results)
    apps = [result.clientapp() for result in results]
    table.add_row("flwr-clientapp processes seen", *(f"{a['processes']:.0f}" for a in apps))
    table.add_row(
        "flwr-clientapp start-up: process start -> our app loads, median (s)",
        *(_s(a["startup_s_median"]) for a in apps),
    )
    table.add_row("flwr-clientapp CPU-s per process, median", *(_s(a["cpu_s_median"]) for a in apps))
    cpu = [result.cpu_per_round() for result in results]
    for kind in KINDS:
        table.add_row(f"CPU-s/round: {kind}", *(_s(values[kind]) for values in cpu))
    table.add_row("[bold]CPU-s/round, all[/bold]", *(_bold(sum(values.values())) for values in cpu))
    console.print(table)


def _render_reading(results: list[ConfigResult], local: LocalCompute, cores: int, console: Console) -> None:
    by_key = {result.config.key: result for result in results}
    lines = []
    ours, flowers = by_key.get("plain"), by_key.get("plain-poll3")
    if ours and flowers:
        lines.append(
            f"ServerApp poll, plain rounds: {ours.mean_round_s:.2f} s at 0.1 s, "
            f"{flowers.mean_round_s:.2f} s at Flower's 3.0 s (difference "
            f"{flowers.mean_round_s - ours.mean_round_s:+.2f} s); the segment the poll sets, 'ServerApp "
            f"notices': {ours.segments()[NOTICE]:.2f} s against {flowers.segments()[NOTICE]:.2f} s."
        )
    per_exchange = IDLE_SLEEP_S + REPLY_POLL_S / 2
    lines.append(
        "Floor: after replying, a SuperNode pulls at once, finds nothing and sleeps "
        f"{IDLE_SLEEP_S:.0f} s, so the last node to reply picks up the next exchange "
        f"{IDLE_SLEEP_S:.0f} s later; with the reply poll ({REPLY_POLL_S / 2:.2f} s on average) "
        f"every exchange waits {per_exchange:.2f} s, hard-coded in Flower 1.41's SuperNode. "
        f"Plain rounds (1 exchange) >= {floor_per_round(1):.2f} s; "
        f"SecAgg+ rounds (4 exchanges) >= {floor_per_round(4):.2f} s."
    )
    secagg = by_key.get("secagg")
    lines.append(
        f"The SecAgg+ goal ({GOAL_SECAGG_S:.0f} s) lies below that floor: no change to our code can meet it; "
        "it needs Flower's SuperNode to stop sleeping 3 s (upstream). Measured: "
        + (f"{secagg.mean_round_s:.2f} s per round." if secagg else "not run.")
    )
    if ours:
        lines.append(
            f"The plain goal ({GOAL_PLAIN_S:.0f} s) leaves {GOAL_PLAIN_S - floor_per_round(1):.2f} s "
            f"above the floor; spawning and starting one flwr-clientapp per message alone took "
            f"{ours.process_per_message_s():.2f} s per round here (SuperExec poll {SUPEREXEC_POLL_S:.0f} s, "
            f"then Flower's imports). Measured: {ours.mean_round_s:.2f} s per round."
        )
        clientapp = ours.clientapp()["cpu_s_median"]
        lines.append(
            f"CPU: a plain round needs {sum(ours.cpu_per_round().values()):.1f} CPU-s here, "
            f"{clientapp:.1f} of them in each flwr-clientapp process; on {cores} cores that demand alone "
            f"takes {ours.cpu_floor_s(cores):.1f} s of wall time, before any other session's load."
        )
        lines.append(
            f"Local compute: the DP step takes {1000 * local.step_s:.0f} ms and the node's whole Train call "
            f"{1000 * local.call_s:.0f} ms (median node); a plain round costs "
            f"{ours.mean_round_s / local.step_s:,.0f}x the step and {ours.mean_round_s / local.call_s:,.0f}x "
            "the call."
        )
    lines += _variant_lines(by_key)
    for line in lines:
        console.print("- " + line)


def _variant_lines(by_key: dict[str, ConfigResult]) -> list[str]:
    """What the SuperExec poll variant changed, against the same configuration at Flower's default."""
    lines = []
    for base_key, variant_key in (("plain", "plain-exec"), ("secagg", "secagg-exec")):
        base, variant = by_key.get(base_key), by_key.get(variant_key)
        if base is None or variant is None:
            continue
        spawn = base.segments()[SPAWN], variant.segments()[SPAWN]
        nodes = base.cpu_per_round()[KIND_SUPERNODES], variant.cpu_per_round()[KIND_SUPERNODES]
        lines.append(
            f"SuperExec task poll 0.1 s instead of 1 s ({base.config.label}): spawn segment "
            f"{spawn[0]:.2f} -> {spawn[1]:.2f} s per round, SuperNode + SuperExec CPU {nodes[0]:.2f} -> "
            f"{nodes[1]:.2f} CPU-s per round, round {base.mean_round_s:.2f} -> {variant.mean_round_s:.2f} s."
        )
    return lines
