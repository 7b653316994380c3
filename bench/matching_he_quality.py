"""Matching quality under encryption: the engine's scores, plaintext and encrypted, on held-out phrase pairs.

    .venv/bin/python -m bench.matching_he_quality [--quick] [--projection FILE] [--json PATH] [--cache-dir D]
    .venv/bin/python -m bench.matching_he_quality --example PATH [--projection FILE]

For each scoring line, on the 3,648 valid pairs of `data/phrase_similarity_valid.csv.gz`: Pearson and
Spearman of the engine's scores against the human score, computed from the plaintext cosines and from the
decrypted encrypted scores side by side, with max |encrypted - plaintext| and whether each anchor's top 10
(all its targets when it has fewer) comes out the same. The lines:
- (a) raw all-MiniLM-L6-v2, 384 dimensions (the identity projection; padded to 512 by the kernel);
- (b) the untrained 128-d orthogonal projection (`ipspace match` without --projection);
- (c) a 128-d head: the one in --projection (wire format), else trained centrally here with
  `bench.matching_quality.train_head`, one seed (0), the recipe printed.
The encrypted side runs as a node does (`bench/_he_match.py`): the pairs are grouped by anchor; per anchor
the consumer encrypts the projected anchor under its own keys, the node packs that anchor's projected
targets (`PackedPatents.encode`) and scores with an `EvaluationContext` made from the consumer's evaluation
keys alone, and the consumer decrypts.

Then at corpus scale: real needs (SBIR topics, title + description; 5, or 1 with --quick) against all
5,511 distinct shipped Lens title vectors (`data/embeddings_minilm.npz`), encrypted against plaintext top 10
and max |diff|, for every line.

Goals: max |encrypted - plaintext| <= 1e-3 and the same top 10 everywhere (a swap of two targets whose
plaintext scores are exactly equal, i.e. duplicate phrases, counts as the same). Exit status 1 with
BENCHMARK FAILED when one is missed or a check fails, else 0.

--quick takes the anchors with the most targets until 300 pairs are covered (about 15 anchors), trains the
head for 5 epochs instead of 30 and checks 1 need. --example writes a markdown snippet to PATH: the demo's
SBIR need against the shipped titles split across the demo's three providers, scored encrypted with the
(c) head, ranked as `ipspace match` prints it. Phrase and need embeddings are cached in --cache-dir (the
default is bench.matching_quality's, so phrases it embedded are not embedded again).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench import BenchFailed
from bench._he_match import (
    TOP_K,
    EncryptedEngine,
    compare_top,
    sbir_needs,
    shipped_titles,
)
from bench.matching_quality import (
    FULL,
    QUICK,
    _cached_embedder,
    _correlations,
    _pair_set,
    _phrases,
    train_head,
)
from models.matching.embeddings import EMBEDDING_DIM, MODEL_ID
from models.matching.phrase_pairs import PhrasePair, load_phrase_pairs
from models.matching.projection import PROJECTION_DIM, Projection

MAX_ERROR = 1e-3
QUICK_PAIRS = 300
NEEDS = 5
QUICK_NEEDS = 1
HEAD_SEED = 0
NEED_TOPIC = "SBIR-T01084"  # the demo's need (ipspace/demo_matching.py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.matching_he_quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="300 pairs, 1 need, a 5-epoch head")
    parser.add_argument("--projection", type=Path, help="the 128-d head (wire format) for line (c)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--example", type=Path, help="only write the README example (markdown) to this file")
    parser.add_argument("--cache-dir", type=Path, help="where phrase and need embeddings are cached")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=170)
    cache_dir = args.cache_dir or Path(tempfile.gettempdir()) / "ipspace-bench-cache"
    try:
        embed = _cached_embedder(cache_dir)
        valid = load_phrase_pairs("valid")
        if args.quick:
            valid = quick_subset(valid, QUICK_PAIRS)
        head, head_label = load_or_train_head(args.projection, valid, embed, quick=args.quick)
        if args.example:
            args.example.write_text(example(head, head_label, embed, args, console), encoding="utf-8")
            console.print(f"example written to {args.example}")
            return 0
        results = measure(valid, head, head_label, embed, needs=QUICK_NEEDS if args.quick else NEEDS)
        results["mode"] = "quick" if args.quick else "full"
        render(results, console)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            console.print(f"results written to {args.json}")
        missed = [goal["goal"] for goal in results["goals"] if not goal["met"]]
        if missed:
            raise BenchFailed("goal missed: " + "; ".join(missed))
    except BenchFailed as failure:
        console.print(f"[bold red]BENCHMARK FAILED:[/bold red] {failure}")
        return 1
    return 0


def quick_subset(pairs: list[PhrasePair], count: int) -> list[PhrasePair]:
    """Whole anchors, those with the most targets first (then by text), until `count` pairs are covered."""
    groups = _by_anchor(pairs)
    chosen: list[PhrasePair] = []
    for anchor in sorted(groups, key=lambda name: (-len(groups[name]), name)):
        if len(chosen) >= count:
            break
        chosen += [pairs[index] for index in groups[anchor]]
    return chosen


def load_or_train_head(
    path: Path | None, valid: list[PhrasePair], embed: Any, *, quick: bool
) -> tuple[Projection, str]:
    """Line (c)'s head: read from `path`, or trained centrally on the train pairs (seed HEAD_SEED)."""
    if path is not None:
        head = Projection.from_bytes(path.read_bytes())
        if head.dimension != PROJECTION_DIM:
            raise BenchFailed(f"{path} holds a {head.dimension}-d head; line (c) is {PROJECTION_DIM}-d")
        return head, f"the head in {path.name} (sha256 {head.digest[:12]})"
    recipe = (QUICK if quick else FULL).recipe
    train = load_phrase_pairs("train")
    vectors = embed(_phrases(train + valid), "phrase")
    started = time.perf_counter()
    weights, _ = train_head(
        _pair_set(train, vectors), PROJECTION_DIM, recipe, HEAD_SEED, _pair_set(valid, vectors).vectors
    )
    if weights is None:
        raise BenchFailed("train_head returned no weights for the shipped (bias-free) form")
    print(f"  head trained in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    head = Projection.from_weights(weights)
    return head, (
        f"a head trained centrally on the {len(train):,} train pairs, one seed ({HEAD_SEED}), "
        f"{recipe.label()} (sha256 {head.digest[:12]})"
    )


def engines(head: Projection, head_label: str) -> list[tuple[str, str, Projection]]:
    from ipspace.cli_match import UNTRAINED_PROJECTION_SEED

    identity = Projection.from_weights([np.eye(EMBEDDING_DIM, dtype=np.float32)])
    return [
        ("a", "(a) raw MiniLM, 384-d (identity projection)", identity),
        ("b", "(b) untrained orthogonal projection, 128-d", Projection.initial(UNTRAINED_PROJECTION_SEED)),
        ("c", f"(c) 128-d head: {head_label}", head),
    ]


def measure(
    valid: list[PhrasePair], head: Projection, head_label: str, embed: Any, *, needs: int
) -> dict[str, Any]:
    phrases = _phrases(valid)
    raw = embed(phrases, "phrase")
    matrix = np.stack([raw[phrase] for phrase in phrases])
    row_of = {phrase: row for row, phrase in enumerate(phrases)}
    human = np.array([pair.score for pair in valid])
    groups = _by_anchor(valid)
    titles = shipped_titles()
    need_rows = sbir_needs(NEED_TOPIC, needs)
    need_vectors = embed([text for _, _, text in need_rows], "sbir-need")
    lines, corpus = {}, []
    for key, label, projection in engines(head, head_label):
        console_note(f"{label}: {len(groups):,} anchors, encrypted ...")
        projected = projection.apply(matrix).astype(np.float64)
        engine = EncryptedEngine(projection.dimension)
        plain, encrypted = np.zeros(len(valid)), np.zeros(len(valid))
        same = identical = 0
        mismatches: list[str] = []
        started = time.perf_counter()
        for anchor, indices in groups.items():
            query = projected[row_of[anchor]]
            targets = projected[[row_of[valid[index].target] for index in indices]]
            plain[indices] = targets @ query
            encrypted[indices] = engine.scores(query, targets)
            comparison = compare_top(plain[indices], encrypted[indices])
            identical += comparison.identical
            same += comparison.same_ranking
            if not comparison.same_ranking:
                mismatches.append(anchor)
        seconds = time.perf_counter() - started
        plain_r, encrypted_r = _correlations(plain, human), _correlations(encrypted, human)
        lines[key] = {
            "label": label,
            "dimension": projection.dimension,
            "pearson_plain": plain_r[0],
            "pearson_encrypted": encrypted_r[0],
            "spearman_plain": plain_r[1],
            "spearman_encrypted": encrypted_r[1],
            "max_error": float(np.abs(encrypted - plain).max()),
            "anchors": len(groups),
            "top10_identical": identical,
            "top10_same_up_to_ties": same,
            "top10_mismatched_anchors": mismatches[:20],
            "seconds": seconds,
            "seconds_per_anchor": seconds / len(groups),
        }
        corpus += corpus_check(key, projection, engine, titles.vectors, need_rows, need_vectors)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "model": MODEL_ID,
        "pairs": len(valid),
        "anchors": len(groups),
        "head": head_label,
        "lines": lines,
        "corpus": corpus,
        "goals": _goals(lines, corpus),
    }


def corpus_check(
    key: str,
    projection: Projection,
    engine: EncryptedEngine,
    title_vectors: np.ndarray,
    need_rows: list[tuple[str, str, str]],
    need_vectors: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """Each need against every shipped title: encrypted vs plaintext, max |diff| and top 10."""
    patents = projection.apply(title_vectors).astype(np.float64)
    results = []
    for topic, title, text in need_rows:
        query = projection.apply(need_vectors[text]).astype(np.float64)
        started = time.perf_counter()
        encrypted = engine.scores(query, patents)
        seconds = time.perf_counter() - started
        plain = patents @ query
        comparison = compare_top(plain, encrypted)
        results.append(
            {
                "line": key,
                "need": topic,
                "need_title": title,
                "patents": len(patents),
                "max_error": float(np.abs(encrypted - plain).max()),
                "top10_identical": comparison.identical,
                "top10_same_up_to_ties": comparison.same_ranking,
                "seconds": seconds,
            }
        )
    return results


def _goals(lines: dict[str, dict[str, Any]], corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    worst = max([line["max_error"] for line in lines.values()] + [row["max_error"] for row in corpus])
    pairs_same = all(line["top10_same_up_to_ties"] == line["anchors"] for line in lines.values())
    corpus_same = all(row["top10_same_up_to_ties"] for row in corpus)
    checks = (
        (f"max |encrypted - plaintext| <= {MAX_ERROR:g}", worst, worst <= MAX_ERROR),
        ("top 10 of every anchor identical (exact ties aside)", pairs_same, pairs_same),
        ("top 10 of every need over all titles identical", corpus_same, corpus_same),
    )
    return [{"goal": goal, "measured": measured, "met": met} for goal, measured, met in checks]


def render(results: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]Matching quality, plaintext vs encrypted[/bold] ({results['mode']}): {results['pairs']:,} "
        f"valid pairs, {results['anchors']:,} anchors; {results['model']}; {results['date']}"
    )
    table = Table(title="Engine scores against the human score (encrypted: decrypted by the consumer)")
    for column in (
        "line",
        "d",
        "Pearson plain",
        "Pearson encrypted",
        "Spearman plain",
        "Spearman encrypted",
        "max |enc - plain|",
        "top 10 identical / anchors",
        "s per anchor",
    ):
        table.add_column(column, justify="left" if column == "line" else "right")
    for line in results["lines"].values():
        tied = line["top10_same_up_to_ties"] - line["top10_identical"]
        table.add_row(
            line["label"] if len(line["label"]) < 70 else line["label"].split(":")[0],
            str(line["dimension"]),
            f"{line['pearson_plain']:.4f}",
            f"{line['pearson_encrypted']:.4f}",
            f"{line['spearman_plain']:.4f}",
            f"{line['spearman_encrypted']:.4f}",
            f"{line['max_error']:.1e}",
            f"{line['top10_identical']} / {line['anchors']}" + (f" (+{tied} exact ties)" if tied else ""),
            f"{line['seconds_per_anchor']:.2f}",
        )
    console.print(table)
    console.print(f"(c) is {results['head']}")
    corpus = Table(title=f"Real needs against all {results['corpus'][0]['patents']:,} shipped title vectors")
    for column in ("need", "line", "max |enc - plain|", "top 10 identical", "encrypted s"):
        corpus.add_column(column, justify="left" if column in ("need", "line") else "right")
    for row in results["corpus"]:
        same = "yes" if row["top10_identical"] else ("ties only" if row["top10_same_up_to_ties"] else "NO")
        corpus.add_row(
            f"{row['need']} {row['need_title'][:50]}",
            row["line"],
            f"{row['max_error']:.1e}",
            same,
            f"{row['seconds']:.2f}",
        )
    console.print(corpus)
    for goal in results["goals"]:
        met = "[green]met[/green]" if goal["met"] else "[bold red]MISSED[/bold red]"
        console.print(f"goal: {goal['goal']}: {met}")


def example(head: Projection, head_label: str, embed: Any, args: argparse.Namespace, console: Console) -> str:
    """The demo's need against the shipped records split as the demo splits them, scored encrypted with
    `head` per provider; the top 10 as `ipspace match` prints it, and the same as markdown (returned)."""
    from ipspace.cli_match import ranked_table
    from ipspace.demo import PROVIDERS
    from ipspace.match_query import RankedRecord
    from ipspace.sample_data import LENS_ID_FIELD
    from node.partition import partition_by_jurisdiction

    titles = shipped_titles()
    vector_of = dict(zip(titles.titles, titles.vectors, strict=True))
    (topic, need_title, text), = sbir_needs(NEED_TOPIC, 1)  # fmt: skip
    query = head.apply(embed([text], "sbir-need")[text]).astype(np.float64)
    engine = EncryptedEngine(head.dimension)
    ranked = []
    title_of = dict(zip(titles.record_ids, titles.record_titles, strict=True))
    for part in partition_by_jurisdiction(titles.rows, len(PROVIDERS)):
        node, org, _ = PROVIDERS[part.provider]
        ids = [row[LENS_ID_FIELD] for row in part.rows]
        patents = head.apply(np.stack([vector_of[title_of[record]] for record in ids])).astype(np.float64)
        scores = engine.scores(query, patents)
        ranked += [RankedRecord(float(s), org, node, record) for record, s in zip(ids, scores, strict=True)]
    ranked.sort(key=lambda record: -record.score)
    top = ranked[:TOP_K]
    console.print(
        ranked_table(
            f"Best matches for: {need_title}", top, {r.record_id: title_of[r.record_id] for r in top}
        )
    )
    command = f"python -m bench.matching_he_quality --example {args.example}" + (
        f" --projection {args.projection}" if args.projection else ""
    )
    rows = "\n".join(
        f"| {rank} | {r.node} | {r.record_id} | {title_of[r.record_id]} | {r.score:.3f} |"
        for rank, r in enumerate(top, start=1)
    )
    return (
        f"**Need** {topic} (a real SBIR topic, title and description embedded): *{need_title}*\n\n"
        f"| rank | node | patent | title | score |\n|---:|---|---|---|---:|\n{rows}\n\n"
        f"Scored under encryption against the titles of all {len(ranked):,} Lens family records, split "
        f"across the demo's three nodes as the demo splits them (by jurisdiction); decrypted and ranked by "
        f"the consumer; head: {head_label}. The score is the similarity of "
        "a patent's title to the need's text: a weak signal of relevance, not a judgement of it.\n\n"
        f"Regenerate: `.venv/bin/{command}`\n"
    )


def _by_anchor(pairs: list[PhrasePair]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        groups[pair.anchor].append(index)
    return dict(groups)


def console_note(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
