"""The valuation benchmark's tables: every line beside the centralized baseline, the goals, the DP spend."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

GOAL_FEDERATED = 0.95  # (b) federated without DP, as a fraction of (a)'s held-out Spearman
GOAL_DP = 0.85  # (c) federated with DP at epsilon 8, likewise

# The goals are read on "b" and "c8"; the variants show whether they would hold under other choices.
_GOAL_OF = {
    **dict.fromkeys(("b", "b_local"), GOAL_FEDERATED),
    **dict.fromkeys(("c8", "c8_short", "c8_local", "c8_years", "c8_today"), GOAL_DP),
}


def render(results: dict[str, Any], console: Console) -> None:
    settings = results["settings"]
    console.print(
        f"[bold]ipspace valuation benchmark[/bold] ({results['mode']}, {results['seeds']} seed(s) per line, "
        f"{results['cores']} cores, {results['wall_s']:.0f} s)  federated inputs: {results['inputs']}"
    )
    console.print(
        f"rows: train {results['rows']['train']}, held-out {results['rows']['held_out']}; "
        f"(a) chosen on validation rows: {results['centralized_choice']['inputs']}, "
        f"{results['centralized_choice']['recipe']}, {results['centralized_choice']['epochs']} epochs"
    )
    console.print(
        "federated settings: "
        + ", ".join(f"{key}={value}" for key, value in settings.items())
        + f"; delta {results['delta']:g}"
    )
    lines = results["lines"]
    baseline = lines["a"]
    table = Table(
        title="Held-out Spearman and R² (targets: cohorts of all train rows), mean over seeds [min-max]"
    )
    for column, justify in (
        ("line", "left"),
        ("Spearman", "right"),
        ("R²", "right"),
        ("Spearman / (a)", "right"),
        ("R² / (a)", "right"),
        ("node-mean Spearman", "right"),
        ("goal", "left"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for key, line in lines.items():
        goal = _GOAL_OF.get(key)
        ratio = line["spearman"] / baseline["spearman"]
        table.add_row(
            line["label"],
            _value(line, "spearman"),
            _value(line, "r2"),
            f"{ratio:.3f}",
            f"{line['r2'] / baseline['r2']:.3f}",
            f"{line['node_mean_spearman']:.3f}",
            f">= {goal:.2f} x (a)" if goal else "",
            (
                ""
                if goal is None
                else "[green]met[/green]"
                if ratio >= goal
                else "[bold red]MISSED[/bold red]"
            ),
        )
        reported = line.get("scored_against_node_local_targets")
        if reported:
            table.add_row(
                "    the same model, scored as the nodes report (node-local held-out targets)",
                _value(reported, "spearman"),
                _value(reported, "r2"),
                "",
                "",
                f"{reported['node_mean_spearman']:.3f}",
                "",
                "",
            )
    console.print(table)
    spend = Table(title="DP lines: each node's noise multiplier (calibrated by itself) and epsilon spent")
    spend.add_column("line")
    providers = list(results["rows"]["train"])
    for provider in providers:
        spend.add_column(f"{provider} ({results['rows']['train'][provider]} rows)", justify="right")
    for line in lines.values():
        if "noise_by_node" in line and any(line["noise_by_node"].values()):
            spend.add_row(
                line["label"],
                *(
                    f"noise {line['noise_by_node'][p]:.3f}, eps {line['epsilon_by_node'][p]:.3f}"
                    for p in providers
                ),
            )
    console.print(spend)
    step = results["local_step_s"]
    console.print(
        f"local step per node per round ({settings['local_steps']} steps of batch {settings['batch_size']}, "
        f"DP on, 1 thread): median {step['median']:.3f} s, p90 {step['p90']:.3f} s "
        f"({step['steps_timed']} steps timed)"
    )
    for name, recommended in results["recommended"].items():
        model = {key: value for key, value in recommended.items() if key != "rounds"}
        console.print(
            f'recommended job settings ({name}): "rounds": {recommended["rounds"]}, '
            f'"model": {json.dumps(model)}'
        )


def render_tuning(ranking: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Validation Spearman (validation rows carved from the train rows; held-out unread)")
    for column in ("settings", "DP epsilon 8", "no DP"):
        table.add_column(column)
    for entry in ranking:
        table.add_row(entry["settings"], f"{entry['dp8']:.4f}", f"{entry['no_dp']:.4f}")
    console.print(table)


def _value(line: dict[str, Any], key: str) -> str:
    low, high = line[f"{key}_range"]
    spread = f" [{low:.3f}-{high:.3f}]" if high > low else ""
    return f"{line[key]:.3f}{spread}"
