"""Encrypted valuation: the polynomial head against the trained ReLU network, and CKKS against the head.

    .venv/bin/python -m bench.valuation_he [--quick] [--rows N] [--json PATH]

Data: the Lens drone families across three providers and the global held-out split, as bench.valuation
builds them (`bench._valuation_data`), with the features exactly as `features.py` gives them (age in years:
what a node's Train RPC trains on) and targets from the pooled training cohorts. Two trained networks:
- centralized: the valuation MLP trained on the union of the training rows (`bench._centralized.train_mlp`,
  Adam, learning rate 1e-3, 20 epochs, seed 0; no privacy);
- federated DP: `bench._fedsim.run_fedavg` with bench.valuation's FULL_SETTINGS at epsilon 8 (SHORT_SETTINGS
  with --quick), the nodes' own DP step: what the coordinator would export.

Part 1, plaintext, all 1,148 held-out rows: for each network and each way of making a head
(`models.valuation.he_head`: degree, interval source, weighting), the head against the ReLU network (max
|difference|, RMSE, Spearman of the two outputs) and each model's Spearman against the held-out targets,
with ridge regression (a linear head, exact under encryption) for scale. The head is fed the features
clipped into its bounds, as a consumer sends them; the ReLU network the features as they are.

Part 2, encrypted, the first --rows held-out rows (24; 6 with --quick), degrees 3 (the default) and 2: the
consumer's keys and query, the evaluation (`EncryptedValuation.evaluate`, one thread: CPU and wall time,
median over the rows), the answer, and the encrypted values against the head's and the ReLU network's.
Every encrypted value must lie within 1e-3 of the value range of the head's (over all held-out rows), else
BENCHMARK FAILED and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench import BenchFailed
from bench._centralized import Recipe, train_mlp
from bench._fedsim import run_fedavg
from bench._valuation_data import build, held_out_split, load_rows_by_provider
from bench.valuation import FULL_SETTINGS, SHORT_SETTINGS
from crypto.ckks import VALUATION_PARAMETERS, EvaluationContext
from models.valuation.baseline import ridge_predictions
from models.valuation.encrypted import EncryptedValuation, decrypt_value, encrypt_features, valuation_keys
from models.valuation.he_head import (
    DEFAULT_DEGREE,
    FeatureBounds,
    HeadCandidate,
    PolynomialHead,
    compare,
    measure_heads,
    relu_predict,
)
from models.valuation.quality import spearman

CPU = time.thread_time  # SEAL's evaluator runs on the calling thread
RECIPE, EPOCHS, SEED, EPSILON = Recipe("adam", 1e-3), 20, 0, 8.0
MAX_RELATIVE_ERROR = 1e-3
CANDIDATES = (
    *(HeadCandidate(f"degree {d}, bounds, synthetic weighting", d) for d in (2, 3, 4)),
    *(HeadCandidate(f"degree {d}, bounds, uniform least squares", d, weighting="uniform") for d in (2, 3, 4)),
    *(
        HeadCandidate(
            f"degree 3, age cap {cap:g} years, synthetic", 3, FeatureBounds.from_caps(age_cap_years=cap)
        )
        for cap in (20.0, 40.0)
    ),
    *(
        HeadCandidate(
            f"degree 2 or 3, explicit [-{r:g}, {r:g}], uniform",
            2,
            weighting="uniform",
            intervals=((-r, r),) * 2,
        )
        for r in (8.0, 16.0)
    ),
)


def networks(quick: bool) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
    rows = load_rows_by_provider()
    data = build(rows, held_out_split, age_decades=False)
    features, targets = data.union_train()
    settings = SHORT_SETTINGS if quick else FULL_SETTINGS
    trained = {
        "centralized": train_mlp(RECIPE, EPOCHS, features, targets, seed=SEED),
        "federated DP": run_fedavg(data.pooled.shards, settings, epsilon=EPSILON, seed=SEED).weights,
    }
    context = {
        "held_out": data.held_out_features,
        "targets": data.pooled.held_out,
        "ridge": ridge_predictions(features, targets, data.held_out_features),
        "labels": {
            "centralized": f"centralized MLP ({RECIPE.label()}, {EPOCHS} epochs)",
            "federated DP": f"federated DP, epsilon {EPSILON:g} ({settings.label()})",
        },
    }
    return trained, context


def plaintext(weights: list[np.ndarray], held_out: np.ndarray, targets: np.ndarray) -> list[dict[str, Any]]:
    rows = [
        {
            "label": "ReLU network itself",
            "spearman_targets": spearman(relu_predict(weights, held_out), targets),
        }
    ]
    for candidate, difference in measure_heads(weights, held_out, CANDIDATES):
        predictions = candidate.head(weights).predict(held_out)
        rows.append(
            {
                "label": candidate.label,
                "max_abs": difference.max_abs,
                "rmse": difference.rmse,
                "spearman_relu": difference.spearman,
                "spearman_targets": spearman(predictions, targets),
            }
        )
    return rows


def encrypted(weights: list[np.ndarray], held_out: np.ndarray, degree: int, rows: int) -> dict[str, Any]:
    """Keys, encoding and `rows` encrypted valuations of a head of `degree`; times in ms (CPU unless wall)."""
    head = PolynomialHead.from_weights(weights, degree=degree)
    started = CPU()
    keys = valuation_keys(degree)
    keygen_ms = 1e3 * (CPU() - started)
    started = CPU()
    context = EvaluationContext.from_bytes(VALUATION_PARAMETERS, keys.evaluation_keys())
    context_ms = 1e3 * (CPU() - started)
    started = CPU()
    encoded = EncryptedValuation.encode(head, EvaluationContext.keyless(VALUATION_PARAMETERS))
    encode_ms = 1e3 * (CPU() - started)
    expected = head.predict(held_out)
    value_range = float(expected.max() - expected.min())
    values, encrypt_ms, evaluate_ms, wall_ms, decrypt_ms = [], [], [], [], []
    for index, row in enumerate(held_out[:rows]):
        started = CPU()
        query = encrypt_features(keys, row)
        evaluating, wall = CPU(), time.perf_counter()
        answer = encoded.evaluate(query, context)
        wall_ms.append(1e3 * (time.perf_counter() - wall))
        decrypting = CPU()
        values.append(decrypt_value(keys, answer))
        decrypt_ms.append(1e3 * (CPU() - decrypting))
        encrypt_ms.append(1e3 * (evaluating - started))
        evaluate_ms.append(1e3 * (decrypting - evaluating))
        error = abs(values[-1] - expected[index])
        if not error <= MAX_RELATIVE_ERROR * value_range:
            raise BenchFailed(
                f"degree {degree}, row {index}: |encrypted - head| = {error:.2e} > 1e-3 x range"
            )
    enc, poly, relu = np.array(values), expected[:rows], relu_predict(weights, held_out[:rows])
    return {
        "degree": degree,
        "rows": rows,
        "rotation_steps": list(encoded.rotation_steps),
        "keygen_ms": keygen_ms,
        "evaluation_key_bytes": len(keys.evaluation_keys()),
        "context_ms": context_ms,
        "encode_ms": encode_ms,
        "cache_mb": encoded.memory_bytes / 2**20,
        "encrypt_ms": float(np.median(encrypt_ms)),
        "evaluate_ms": float(np.median(evaluate_ms)),
        "evaluate_wall_ms": float(np.median(wall_ms)),
        "decrypt_ms": float(np.median(decrypt_ms)),
        "query_bytes": len(query),
        "result_bytes": len(answer),
        "encrypted_vs_head": asdict(compare(enc, poly)),
        "encrypted_vs_relu": asdict(compare(enc, relu)),
        "head_vs_relu": asdict(compare(poly, relu)),
    }


def run(quick: bool, rows: int, console: Console) -> dict[str, Any]:
    started = time.perf_counter()
    console.print("training the two networks ...")
    trained, context = networks(quick)
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "parameters": VALUATION_PARAMETERS.to_json(),
        "ridge_spearman_targets": spearman(context["ridge"], context["targets"]),
        "models": {},
    }
    for name, weights in trained.items():
        console.print(f"{name}: heads in plaintext, then {rows} encrypted valuations per degree ...")
        results["models"][name] = {
            "label": context["labels"][name],
            "plaintext": plaintext(weights, context["held_out"], context["targets"]),
            "encrypted": [encrypted(weights, context["held_out"], d, rows) for d in (DEFAULT_DEGREE, 2)],
        }
    results["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    results["seconds"] = time.perf_counter() - started
    return results


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def render(results: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]ipspace encrypted valuation[/bold] ({results['mode']}), CKKS {results['parameters']}; load "
        f"average {results['load_average_at_start']} at start, {results['load_average_at_end']} at end"
    )
    for model in results["models"].values():
        table = Table(title=f"{model['label']}: heads vs the ReLU network, 1,148 held-out rows")
        for column in ("head", "max |head - ReLU|", "RMSE", "Spearman vs ReLU", "Spearman vs targets"):
            table.add_column(column, justify="left" if column == "head" else "right")
        for row in model["plaintext"]:
            table.add_row(
                row["label"],
                _cell(row.get("max_abs"), "{:.3f}"),
                _cell(row.get("rmse"), "{:.3f}"),
                _cell(row.get("spearman_relu"), "{:.3f}"),
                f"{row['spearman_targets']:.3f}",
            )
        table.add_row("ridge (linear, for scale)", "", "", "", f"{results['ridge_spearman_targets']:.3f}")
        console.print(table)
        runs = model["encrypted"]
        table = Table(title=f"{model['label']}: encrypted valuation, first {runs[0]['rows']} held-out rows")
        table.add_column("measurement")
        for entry in runs:
            table.add_column(f"degree {entry['degree']}", justify="right")
        lines = [
            ("rotation keys (steps) + relinearization key", lambda e: str(tuple(e["rotation_steps"]))),
            ("consumer: key generation (CPU ms)", lambda e: f"{e['keygen_ms']:.0f}"),
            ("evaluation keys (bytes)", lambda e: f"{e['evaluation_key_bytes']:,}"),
            ("evaluator: load the keys (CPU ms)", lambda e: f"{e['context_ms']:.0f}"),
            ("evaluator: encode the head once (CPU ms)", lambda e: f"{e['encode_ms']:.0f}"),
            ("evaluator: cached plaintexts (MiB)", lambda e: f"{e['cache_mb']:.0f}"),
            ("consumer: encrypt (CPU ms, median)", lambda e: f"{e['encrypt_ms']:.1f}"),
            ("evaluator: one valuation (CPU ms, median)", lambda e: f"{e['evaluate_ms']:.0f}"),
            ("  wall clock (ms, median)", lambda e: f"{e['evaluate_wall_ms']:.0f}"),
            ("consumer: decrypt (CPU ms, median)", lambda e: f"{e['decrypt_ms']:.1f}"),
            ("query (bytes)", lambda e: f"{e['query_bytes']:,}"),
            ("answer (bytes)", lambda e: f"{e['result_bytes']:,}"),
        ]
        for pair, label in (
            ("encrypted_vs_head", "encrypted vs plaintext head"),
            ("head_vs_relu", "plaintext head vs ReLU"),
            ("encrypted_vs_relu", "encrypted vs ReLU"),
        ):
            lines += [
                (f"{label}: max abs", lambda e, p=pair: f"{e[p]['max_abs']:.2e}"),
                (f"{label}: RMSE", lambda e, p=pair: f"{e[p]['rmse']:.2e}"),
                (f"{label}: Spearman", lambda e, p=pair: f"{e[p]['spearman']:.4f}"),
            ]
        for label, value in lines:
            table.add_row(label, *(value(entry) for entry in runs))
        console.print(table)
    console.print(f"total {results['seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.valuation_he", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short federated job, 6 encrypted rows")
    parser.add_argument("--rows", type=int, help="encrypted valuations per degree and network (default 24)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    rows = max(2, args.rows) if args.rows is not None else (6 if args.quick else 24)
    console = Console() if sys.stdout.isatty() else Console(width=150)
    try:
        results = run(args.quick, rows, console)
    except BenchFailed as failure:
        console.print(f"[bold red]BENCHMARK FAILED:[/bold red] {failure}")
        return 1
    render(results, console)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
