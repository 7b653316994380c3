"""Encrypted technology matching: a node's packed CKKS kernel against plaintext numpy, side by side.

    .venv/bin/python -m bench.match [--quick] [--queries N] [--json PATH] [--strict]

For n = 1,000, 10,000, 20,000 and 50,000 patents (1,000 and 10,000 with --quick), each n in a spawned
process of its own (so its peak RSS is its own): a consumer makes its keys and encrypts unit queries of 128
dimensions; a node encodes its patents once (`PackedPatents.encode`) and scores each query
(`PackedPatents.score`, one thread); the consumer decrypts. The baseline is plaintext numpy `P @ q` on one
BLAS thread, on the same vectors. Each query's time is split into what is paid once per query (loading and
checking the query, the baby rotations) and per block of 8,192 patents, two per complex slot (products and
giant rotations; switching to the last level and serializing).

Times are CPU seconds of the one working thread (`time.thread_time`), beside wall time for the score and
the cache: on a shared machine other processes move wall time by several times, CPU time much less. The
throughput goal is read on patents per CPU-second, i.e. what one core does (as bench.gate reads calls per
server CPU-second).

Every run checks every query: max |encrypted - numpy| <= 1e-3 and the same top 10 in the same order, else
`BENCHMARK FAILED`. The vectors are synthetic unit vectors from a seeded generator: the kernel's cost does
not depend on their content; real embeddings come with the matching model.

Exit status: 0 when every check held; 1 when one did not; 2 with --strict when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One BLAS thread for the baseline, like the kernel's one thread; set before numpy loads in the children.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench import BenchFailed  # noqa: E402
from crypto.ckks import CkksParameters, ConsumerKeys, EvaluationContext  # noqa: E402
from models.matching.encrypted_scores import (  # noqa: E402
    PackedPatents,
    ScoreTiming,
    decrypt_scores,
    encrypt_query,
    rotation_steps,
)

DIMENSION = 128
SEED = 20261121
MAX_ERROR = 1e-3
NOISE_STD = 0.01  # one extra query per n with noise, to show what noise_std costs
# CPU time of the calling thread: the kernel and the baseline each run on one thread, and on a shared
# machine other processes' load moves wall time by several times (measured: 32 to 112 ms per block).
CPU = time.thread_time
MEASURE_TIMEOUT_S = 600
GOAL_N = 20_000  # the goals are read at this n (at the largest measured with --quick)
GOAL_PATENTS_PER_S = 50_000.0
GOAL_BYTES_PER_PATENT = 40.0
VECTORS_NOTE = (
    "synthetic unit vectors: the kernel's cost does not depend on their content; "
    "real embeddings come with the matching model"
)


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: tuple[int, ...]
    queries: int  # timed queries per n, after one untimed warm-up query


FULL = Mode("full", (1_000, 10_000, 20_000, 50_000), queries=7)
QUICK = Mode("quick", (1_000, 10_000), queries=3)


def _unit_rows(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIMENSION))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _numpy_patents_per_s(patents: np.ndarray, queries: np.ndarray) -> tuple[float, float]:
    """Plaintext P @ q repeated for at least 0.3 s of CPU: (patents per CPU-second, per wall second)."""
    repeats, cpu_started, wall_started = 0, CPU(), time.perf_counter()
    while repeats < 5 or CPU() - cpu_started < 0.3:
        patents @ queries[repeats % len(queries)]
        repeats += 1
    scored = len(patents) * repeats
    return scored / (CPU() - cpu_started), scored / (time.perf_counter() - wall_started)


def _check(n: int, index: int, scores: np.ndarray, expected: np.ndarray) -> float:
    error = float(np.abs(scores - expected).max())
    if not error <= MAX_ERROR:
        raise BenchFailed(f"n={n:,}, query {index}: max |encrypted - numpy| = {error:.2e} > {MAX_ERROR:g}")
    top, expected_top = np.argsort(-scores)[:10], np.argsort(-expected)[:10]
    if not np.array_equal(top, expected_top):
        raise BenchFailed(
            f"n={n:,}, query {index}: top 10 differs from numpy ({top.tolist()} vs {expected_top.tolist()})"
        )
    return error


def measure(n: int, queries: int) -> dict[str, Any]:
    """Everything for one n; runs in a process of its own. Times are CPU seconds of this (only) thread
    unless named wall."""
    rss_start = _peak_rss_mb()
    patents = _unit_rows(n, SEED)
    query_vectors = _unit_rows(queries + 2, SEED + 1)  # + warm-up + the noisy query
    parameters = CkksParameters()

    started = CPU()
    keys = ConsumerKeys.generate(parameters, rotation_steps(DIMENSION))
    keygen_s = CPU() - started
    evaluation_keys = keys.evaluation_keys()
    started = CPU()
    context = EvaluationContext.from_bytes(parameters, evaluation_keys)
    context_s = CPU() - started

    rss_before_cache = _peak_rss_mb()
    started, wall_started = CPU(), time.perf_counter()
    packed = PackedPatents.encode(EvaluationContext.keyless(parameters), patents)
    cache_s, cache_wall_s = CPU() - started, time.perf_counter() - wall_started
    rss_after_cache = _peak_rss_mb()
    numpy_pps, numpy_wall_pps = _numpy_patents_per_s(patents, query_vectors)

    encrypt_s, decrypt_s, timings, walls, errors = [], [], [], [], []
    query_bytes = response_bytes = 0
    for index, query in enumerate(query_vectors[: queries + 1]):
        started = CPU()
        ciphertext = encrypt_query(keys, query)
        encrypted = CPU()
        timing = ScoreTiming(clock=CPU)
        wall_started = time.perf_counter()
        blocks = packed.score(ciphertext, context, query_dimension=DIMENSION, timing=timing)
        wall = time.perf_counter() - wall_started
        decrypting = CPU()
        scores = decrypt_scores(keys, blocks, n)
        decrypted = CPU()
        errors.append(_check(n, index, scores, patents @ query))
        if index == 0:
            continue  # warm-up: checked, not timed
        encrypt_s.append(encrypted - started)
        decrypt_s.append(decrypted - decrypting)
        timings.append(timing)
        walls.append(wall)
        query_bytes, response_bytes = len(ciphertext), sum(len(block) for block in blocks)

    noisy_timing = ScoreTiming(clock=CPU)
    noisy_query = query_vectors[-1]
    noisy_blocks = packed.score(
        encrypt_query(keys, noisy_query),
        context,
        query_dimension=DIMENSION,
        noise_std=NOISE_STD,
        timing=noisy_timing,
    )
    deviation = decrypt_scores(keys, noisy_blocks, n) - patents @ noisy_query
    if not 0.5 * NOISE_STD < float(deviation.std()) < 2 * NOISE_STD:
        raise BenchFailed(f"n={n:,}: scores with noise_std={NOISE_STD} deviate by std {deviation.std():.4f}")

    def median(values: list[float]) -> float:
        return float(np.median(values))

    totals = [timing.total_s for timing in timings]
    return {
        "n": n,
        "blocks": packed.block_count,
        "queries_timed": len(timings),
        "encrypted_pps": n / median(totals),
        "encrypted_pps_best": n / min(totals),
        "encrypted_wall_pps": n / median(walls),
        "numpy_pps": numpy_pps,
        "numpy_wall_pps": numpy_wall_pps,
        "score_ms": 1e3 * median(totals),
        "score_wall_ms": 1e3 * median(walls),
        "load_ms": 1e3 * median([t.load_s for t in timings]),
        "baby_ms": 1e3 * median([t.baby_s for t in timings]),
        "blocks_ms": 1e3 * median([t.blocks_s for t in timings]),
        "finish_ms": 1e3 * median([t.finish_s for t in timings]),
        "noisy_score_ms": 1e3 * noisy_timing.total_s,
        "noisy_finish_ms": 1e3 * noisy_timing.finish_s,
        "query_bytes": query_bytes,
        "response_bytes": response_bytes,
        "evaluation_key_bytes": len(evaluation_keys),
        "keygen_ms": 1e3 * keygen_s,
        "context_ms": 1e3 * context_s,
        "encrypt_ms": 1e3 * median(encrypt_s),
        "decrypt_ms": 1e3 * median(decrypt_s),
        "cache_s": cache_s,
        "cache_wall_s": cache_wall_s,
        "cache_mb": packed.memory_bytes / 2**20,
        "rss_start_mb": rss_start,
        "rss_before_cache_mb": rss_before_cache,
        "rss_after_cache_mb": rss_after_cache,
        "peak_rss_mb": _peak_rss_mb(),
        "max_error": max(errors),
        "top10_identical": True,  # _check raised otherwise
    }


def run(mode: Mode, queries: int, console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {
        "mode": mode.name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "environment": _environment(),
        "dimension": DIMENSION,
        "vectors": VECTORS_NOTE,
        "parameters": CkksParameters().to_json(),
        "sizes": [],
    }
    spawn = multiprocessing.get_context("spawn")
    for n in mode.sizes:
        console.print(f"n = {n:,}: keys, cache, {queries} timed queries (+1 warm-up, +1 with noise) ...")
        with spawn.Pool(1) as pool:  # leaving the block terminates the process, finished or not
            try:
                results["sizes"].append(
                    pool.apply_async(measure, (n, queries)).get(timeout=MEASURE_TIMEOUT_S)
                )
            except multiprocessing.TimeoutError:
                raise BenchFailed(f"n={n:,} took longer than {MEASURE_TIMEOUT_S} s") from None
    results["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    results["goals"] = _goals(results["sizes"])
    return results


def _environment() -> dict[str, Any]:
    import tenseal

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "tenseal": tenseal.__version__,
        "numpy": np.__version__,
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def _goals(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    at = next((row for row in sizes if row["n"] == GOAL_N), sizes[-1])
    where = f"at n = {at['n']:,}" + ("" if at["n"] == GOAL_N else f" (not {GOAL_N:,}: --quick)")
    per_patent = at["response_bytes"] / at["n"]
    return [
        {
            "n": at["n"],
            "goal": f">= {GOAL_PATENTS_PER_S:,.0f} patents/s on one core {where}",
            "measured": at["encrypted_pps"],
            "met": at["encrypted_pps"] >= GOAL_PATENTS_PER_S,
        },
        {
            "goal": f"<= {GOAL_BYTES_PER_PATENT:.0f} bytes per patent {where}",
            "measured": per_patent,
            "met": per_patent <= GOAL_BYTES_PER_PATENT,
        },
        {
            "goal": "top 10 identical to numpy, every query and n",
            "measured": all(row["top10_identical"] for row in sizes),
            "met": all(row["top10_identical"] for row in sizes),
        },
    ]


def _met(met: bool) -> str:
    return "[green]met[/green]" if met else "[bold red]MISSED[/bold red]"


_ROWS: tuple[tuple[str, str, str], ...] = (
    # (key or computed name, label, format); times are CPU time of the one thread unless marked wall
    ("blocks", "blocks of 8,192 patents (2 per slot)", "{:,}"),
    ("encrypted_pps", "encrypted patents per CPU-second, 1 thread: median", "{:,.0f}"),
    ("encrypted_pps_best", "  best query", "{:,.0f}"),
    ("encrypted_wall_pps", "  wall clock, median (shared machine)", "{:,.0f}"),
    ("numpy_pps", "baseline: numpy P @ q patents per CPU-second, 1 thread", "{:,.0f}"),
    ("numpy_wall_pps", "  wall clock", "{:,.0f}"),
    ("slowdown", "numpy / encrypted, per CPU-second", "{:,.0f}x"),
    ("score_ms", "node: one query, all blocks (CPU ms)", "{:.1f}"),
    ("score_wall_ms", "  wall clock (ms)", "{:.1f}"),
    ("load_ms", "  once per query: load + check the query (CPU ms)", "{:.2f}"),
    ("baby_ms", "  once per query: baby rotations (CPU ms)", "{:.1f}"),
    ("blocks_ms", "  per block: products + giant rotations, all blocks (CPU ms)", "{:.1f}"),
    ("block_ms", "    the same per block (CPU ms)", "{:.1f}"),
    ("finish_ms", "  per block: last level + serialize, all blocks (CPU ms)", "{:.2f}"),
    ("noisy_score_ms", f"node: one query with noise_std={NOISE_STD} (CPU ms)", "{:.1f}"),
    ("noisy_finish_ms", "  of which noise + last level + serialize (CPU ms)", "{:.2f}"),
    ("query_bytes", "query ciphertext (bytes)", "{:,}"),
    ("response_bytes", "response, all blocks (bytes)", "{:,}"),
    ("bytes_per_patent", "response bytes per patent", "{:.1f}"),
    ("evaluation_key_bytes", "evaluation keys, steps 1 and 16 (bytes)", "{:,}"),
    ("keygen_ms", "consumer: key generation (CPU ms)", "{:.1f}"),
    ("encrypt_ms", "consumer: encrypt a query (CPU ms)", "{:.1f}"),
    ("decrypt_ms", "consumer: decrypt all blocks (CPU ms)", "{:.1f}"),
    ("context_ms", "node: load a consumer's evaluation keys (CPU ms)", "{:.1f}"),
    ("cache_s", "node: cache build, once (CPU s)", "{:.2f}"),
    ("cache_wall_s", "  wall clock (s)", "{:.2f}"),
    ("cache_mb", "node: cache memory (MiB)", "{:.0f}"),
    ("rss_before_cache_mb", "peak RSS before the cache (MiB)", "{:.0f}"),
    ("peak_rss_mb", "peak RSS at the end (MiB)", "{:.0f}"),
    ("max_error", "max |encrypted - numpy|, all queries", "{:.1e}"),
    ("top10", "top 10 identical to numpy, all queries", "{}"),
)


def _value(row: dict[str, Any], key: str) -> Any:
    computed = {
        "slowdown": lambda: row["numpy_pps"] / row["encrypted_pps"],
        "block_ms": lambda: row["blocks_ms"] / row["blocks"],
        "bytes_per_patent": lambda: row["response_bytes"] / row["n"],
        "top10": lambda: f"yes ({row['queries_timed'] + 1})" if row["top10_identical"] else "NO",
    }
    return computed[key]() if key in computed else row[key]


def render(results: dict[str, Any], console: Console) -> None:
    env = results["environment"]
    console.print(
        f"[bold]ipspace matching benchmark[/bold] ({results['mode']})  nproc={env['nproc']}  "
        f"cpu={env['cpu']}  Python {env['python']}  tenseal {env['tenseal']}  numpy {env['numpy']}"
    )
    console.print(
        f"load average (1/5/15 min): {env['load_average_at_start']} at start, "
        f"{results['load_average_at_end']} at end "
        "(other work on the machine shows up here and in every figure)"
    )
    console.print(f"CKKS {results['parameters']}, d = {results['dimension']}; vectors: {results['vectors']}")
    sizes = results["sizes"]
    goals = results["goals"]
    goal_n = goals[0]["n"]
    table = Table(
        title="Encrypted scores (node, one thread) vs plaintext numpy P @ q (one thread), by patents held"
    )
    table.add_column("measurement")
    for row in sizes:
        table.add_column(f"n = {row['n']:,}", justify="right")
    table.add_column("goal")
    table.add_column("")
    goal_rows = {"encrypted_pps": goals[0], "bytes_per_patent": goals[1], "top10": goals[2]}
    for key, label, fmt in _ROWS:
        goal = goal_rows.get(key)
        cells = [fmt.format(_value(row, key)) for row in sizes]
        if goal is not None and key != "top10":
            cells = [
                f"[bold]{cell}[/bold]" if row["n"] == goal_n else cell
                for row, cell in zip(sizes, cells, strict=True)
            ]
        table.add_row(label, *cells, goal["goal"] if goal else "", _met(goal["met"]) if goal else "")
        if key in ("slowdown", "noisy_finish_ms", "bytes_per_patent", "context_ms", "peak_rss_mb"):
            table.add_section()
    console.print(table)
    console.print(
        "once per query: load + check, b - 1 = 15 baby rotations (chained rotations by 1); per block of "
        "8,192 patents: 128 plaintext products, 8 rescales, 7 giant rotations (Horner, step 16), last level"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.match", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 1,000 and 10,000 only, 3 queries each")
    parser.add_argument("--queries", type=int, help="timed queries per n (default 7, 3 with --quick)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a goal is missed")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    queries = max(1, args.queries) if args.queries is not None else mode.queries
    console = Console() if sys.stdout.isatty() else Console(width=170)
    try:
        results = run(mode, queries, console)
    except BenchFailed as failure:
        console.print(f"[bold red]BENCHMARK FAILED:[/bold red] {failure}")
        return 1
    render(results, console)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        console.print(f"results written to {args.json}")
    if args.strict and not all(goal["met"] for goal in results["goals"]):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
