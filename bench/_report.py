"""What a run found, printed as one table beside the goals, plus the machine it ran on."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from pathlib import Path
from typing import Any

import grpc
from google import protobuf
from rich.console import Console
from rich.table import Table

GOAL_CALLS_PER_CORE = 1_500.0  # allowed calls per server CPU-second through the full gate
GOAL_LATENCY_RATIO = 1.5  # gated p50 latency / bare p50 latency, one sequential client
GOAL_APPENDS_PER_S = 5_000.0  # durable audit appends per second (many writers, group commit)


def environment(work_dir: Path) -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "python": sys.version.split()[0],
        "grpc": grpc.__version__,
        "protobuf": protobuf.__version__,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "work_dir_filesystem": _filesystem(work_dir),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(directory: Path) -> str:
    """The type of the filesystem holding ``directory`` (fsync cost depends on it)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            for line in handle:
                _device, mount, fs_type, *_rest = line.split()
                if str(directory.resolve()).startswith(mount) and len(mount) > len(best):
                    best, kind = mount, fs_type
    except OSError:
        pass
    return kind


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with the figure that decides it and whether it was met."""
    sequential, loaded = results["grpc"]["sequential"], results["grpc"]["loaded"]
    per_core = loaded["gated"]["calls_per_server_cpu_s"]
    ratio = sequential["gated"]["p50_ms"] / sequential["bare"]["p50_ms"]
    appends = max(run["appends_per_s"] for run in results["audit_appends"])
    return [
        {
            "goal": f">= {GOAL_CALLS_PER_CORE:,.0f} allowed calls/s per core through the full gate",
            "measured": per_core,
            "met": per_core >= GOAL_CALLS_PER_CORE,
        },
        {
            "goal": f"gated p50 latency <= {GOAL_LATENCY_RATIO}x bare",
            "measured": round(ratio, 3),
            "met": ratio <= GOAL_LATENCY_RATIO,
        },
        {
            "goal": f">= {GOAL_APPENDS_PER_S:,.0f} durable audit appends/s",
            "measured": appends,
            "met": appends >= GOAL_APPENDS_PER_S,
        },
    ]


def _ratio(gated: float, bare: float) -> str:
    return f"{gated / bare:.2f}x" if bare else "-"


def _met(met: bool) -> str:
    return "[green]met[/green]" if met else "[bold red]MISSED[/bold red]"


def render(results: dict[str, Any], console: Console) -> None:
    env = results["environment"]
    console.print(
        f"[bold]ipspace gate benchmark[/bold] ({results['mode']})  nproc={env['nproc']}  cpu={env['cpu']}  "
        f"Python {env['python']}  grpc {env['grpc']}  protobuf {env['protobuf']}  SQLite {env['sqlite']}  "
        f"work dir on {env['work_dir_filesystem']}"
    )
    start, end = env["load_average_at_start"], results["load_average_at_end"]
    console.print(
        f"load average (1/5/15 min): {start} at start, {end} at end"
        " (other work on the machine shows up here and in every figure)"
    )
    goal_of = {index: goal for index, goal in enumerate(results["goals"])}
    table = Table(title="ListDatasets over mTLS: bare gRPC vs the full gate; durable audit; bundle verify")
    for column, justify in (
        ("measurement", "left"),
        ("bare gRPC", "right"),
        ("gated", "right"),
        ("gated/bare", "right"),
        ("goal", "left"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    grpc_results = results["grpc"]
    for phase, title in (("sequential", "1 client, sequential"), ("loaded", "concurrent clients")):
        bare, gated = grpc_results[phase]["bare"], grpc_results[phase]["gated"]
        table.add_section()
        table.add_row(
            f"[bold]{title}[/bold] ({gated['clients']})",
            f"{bare['calls_ok']:,} calls",
            f"{gated['calls_ok']:,} calls",
            "",
            "",
            "",
        )
        for key, label, fmt in (
            ("p50_ms", "latency p50 (ms)", "{:.3f}"),
            ("p99_ms", "latency p99 (ms)", "{:.3f}"),
            ("calls_per_s", "allowed calls/s", "{:,.0f}"),
            ("server_cpu_s", "server CPU-s used", "{:.2f}"),
            ("calls_per_server_cpu_s", "calls per server CPU-s (per core)", "{:,.0f}"),
            ("client_cpu_s", "client CPU-s used", "{:.2f}"),
        ):
            goal, status = "", ""
            if phase == "sequential" and key == "p50_ms":
                goal, status = f"<= {GOAL_LATENCY_RATIO}x bare", _met(goal_of[1]["met"])
            if phase == "loaded" and key == "calls_per_server_cpu_s":
                goal, status = f">= {GOAL_CALLS_PER_CORE:,.0f}", _met(goal_of[0]["met"])
            table.add_row(
                label,
                fmt.format(bare[key]),
                fmt.format(gated[key]),
                _ratio(gated[key], bare[key]),
                goal,
                status,
            )
    table.add_section()
    probes = " / ".join(f"{probe['p50_ms']:.2f} ({probe['p99_ms']:.2f})" for probe in results["fsync"])
    table.add_row("4 KiB write+fsync p50 (p99) ms: before gRPC / before appends", "", probes, "", "", "")
    best = max(results["audit_appends"], key=lambda run: run["appends_per_s"])
    for run in results["audit_appends"]:
        is_best = run is best
        table.add_row(
            f"durable audit appends/s, {run['threads']} thread(s) ({run['appends']:,} appends)",
            "",
            f"{run['appends_per_s']:,.0f}",
            "",
            f">= {GOAL_APPENDS_PER_S:,.0f}" if is_best else "",
            _met(goal_of[2]["met"]) if is_best else "",
        )
        table.add_row(
            f"  per-append latency p50 / p99 (ms), {run['threads']} thread(s)",
            "",
            f"{run['p50_ms']:.2f} / {run['p99_ms']:.2f}",
            "",
            "",
            "",
        )
    verify = results["verify"]
    table.add_section()
    table.add_row(
        f"log of {verify['entries']:,} entries ({verify['heads']} signed heads): build s",
        "",
        f"{verify['build_s']:.2f}",
        "",
        f"({verify['build_appends_per_s']:,.0f} appends/s)",
        "",
    )
    table.add_row("  export_bundle s", "", f"{verify['export_s']:.2f}", "", "", "")
    table.add_row(
        "  verify_bundle s",
        "",
        f"{verify['verify_s']:.2f}",
        "",
        f"({verify['verified_entries_per_s']:,.0f} entries/s)",
        "",
    )
    console.print(table)
    for line in results.get("checks", []):
        console.print(f"check: {line}")


def render_profile(profiles: dict[str, dict[str, Any]], console: Console) -> None:
    """Where each server's CPU goes, per call, by part and by function (cProfile, thread CPU time)."""
    bare, gated = profiles.get("bare", {}), profiles.get("gated", {})
    floor = profiles.get("grpc_floor")
    if floor:
        console.print(
            f"gRPC + mTLS floor (static response, no profiler, {floor['clients']}): "
            f"{floor['calls_per_server_cpu_s']:,.0f} calls per server CPU-s, "
            f"{floor['calls_per_s']:,.0f} calls/s, p50 {floor['p50_ms']:.3f} ms"
        )
    table = Table(
        title="Server CPU per call by part (cProfile on every thread, thread CPU time, with its overhead)"
    )
    table.add_column("part")
    table.add_column("bare ms/call", justify="right")
    table.add_column("gated ms/call", justify="right")
    table.add_column("gate's extra", justify="right")
    names = list(gated.get("groups_ms_per_call", {}))
    names += [name for name in bare.get("groups_ms_per_call", {}) if name not in names]
    for name in names:
        bare_ms = bare.get("groups_ms_per_call", {}).get(name, 0.0)
        gated_ms = gated.get("groups_ms_per_call", {}).get(name, 0.0)
        table.add_row(name, f"{bare_ms:.4f}", f"{gated_ms:.4f}", f"{gated_ms - bare_ms:+.4f}")
    bare_total = bare.get("profiled_cpu_ms_per_call", 0.0)
    gated_total = gated.get("profiled_cpu_ms_per_call", 0.0)
    table.add_row(
        "[bold]total profiled[/bold]",
        f"{bare_total:.4f}",
        f"{gated_total:.4f}",
        f"{gated_total - bare_total:+.4f}",
    )
    console.print(table)
    for kind, key, unit in (
        ("gated", "top_self", "self_ms_per_call"),
        ("gated", "top_cumulative_repo", "cumulative_ms_per_call"),
    ):
        functions = Table(title=f"{kind} server: top functions by {unit.replace('_', ' ')}")
        functions.add_column("function")
        functions.add_column("ms/call", justify="right")
        for row in profiles.get(kind, {}).get(key, []):
            functions.add_row(row["function"], f"{row[unit]:.4f}")
        console.print(functions)
