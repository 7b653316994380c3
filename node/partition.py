"""Split the Lens patent families across provider nodes by jurisdiction, as real holders' data would differ.

A patent office or regional information provider holds whole jurisdictions, so no jurisdiction is ever split
between providers. For three providers the split follows regions (a US office; a European node with EP, WO
and European national filings; an Asia-Pacific node with CN, AU and their neighbours). For any other number
of providers, jurisdictions are dealt out greedily, largest first, to the provider holding the fewest rows.
Both are deterministic: the same rows give the same partitions.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.store_csv import read_csv_dicts

JURISDICTION_FIELD = "jurisdiction"
PROVIDER_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")  # becomes a file name: no separators, no dots

# Regions of the three-provider split; a jurisdiction listed nowhere goes to the provider with fewest rows.
# fmt: off
REGIONAL_SPEC: Mapping[str, tuple[str, ...]] = {
    "provider-us": ("US", "CA", "MX", "BR", "AR", "CL", "CO"),
    "provider-eu": (
        "EP", "WO", "EA", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR",
        "HR", "HU", "IE", "IS", "IT", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "RS", "RU", "SE",
        "SI", "SK", "TR", "UA",
    ),
    "provider-apac": ("CN", "AU", "JP", "KR", "TW", "HK", "SG", "IN", "NZ", "MY", "PH", "TH", "VN", "ID"),
}
# fmt: on


@dataclass(frozen=True)
class Partition:
    """One provider's share: the jurisdictions it holds (sorted) and their rows, in input order."""

    provider: str
    jurisdictions: tuple[str, ...]
    rows: tuple[Mapping[str, str], ...]

    @property
    def row_count(self) -> int:
        return len(self.rows)


def partition_by_jurisdiction(
    rows: Sequence[Mapping[str, str]], n_providers: int, *, field: str = JURISDICTION_FIELD
) -> list[Partition]:
    """Split `rows` across `n_providers` providers, whole jurisdictions each.

    Three providers get REGIONAL_SPEC; any other number gets "provider-1" ... "provider-N" by greedy
    balancing. Raises ValueError when `n_providers` is not an int from 1 to the number of jurisdictions
    present, or when a row has no jurisdiction.
    """
    counts = _count_jurisdictions(rows, field)
    if isinstance(n_providers, bool) or not isinstance(n_providers, int) or n_providers < 1:
        raise ValueError(f"the number of providers must be a positive integer, got {n_providers!r}")
    if n_providers > len(counts):
        raise ValueError(
            f"{n_providers} providers cannot each hold whole jurisdictions: the rows have only {len(counts)}"
        )
    if n_providers == len(REGIONAL_SPEC):
        return partition_by_spec(rows, REGIONAL_SPEC, field=field)
    spec: dict[str, tuple[str, ...]] = {f"provider-{number}": () for number in range(1, n_providers + 1)}
    return partition_by_spec(rows, spec, field=field)


def partition_by_spec(
    rows: Sequence[Mapping[str, str]], spec: Mapping[str, Sequence[str]], *, field: str = JURISDICTION_FIELD
) -> list[Partition]:
    """Split `rows` as `spec` (provider name -> jurisdictions it holds) says, in the spec's provider order.

    Jurisdictions present in the rows but named by no provider go, largest first, to the provider with the
    fewest rows so far (ties: the earlier provider). Raises ValueError for a bad provider name, a
    jurisdiction named twice, an empty spec, or a provider that would hold no rows.
    """
    if not spec:
        raise ValueError("the partition spec names no provider")
    owner: dict[str, str] = {}
    for provider, jurisdictions in spec.items():
        if not PROVIDER_NAME.fullmatch(provider):
            raise ValueError(f"provider name {provider!r} must be lowercase letters, digits and '-'")
        for jurisdiction in jurisdictions:
            if jurisdiction in owner:
                raise ValueError(
                    f"jurisdiction {jurisdiction!r} is given to both {owner[jurisdiction]!r} and {provider!r}"
                )
            owner[jurisdiction] = provider
    counts = _count_jurisdictions(rows, field)
    load = dict.fromkeys(spec, 0)
    for jurisdiction, count in counts.items():
        if jurisdiction in owner:
            load[owner[jurisdiction]] += count
    for jurisdiction, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if jurisdiction not in owner:
            lightest = min(load, key=lambda provider: load[provider])  # min keeps the first of equals
            owner[jurisdiction] = lightest
            load[lightest] += count
    empty = [provider for provider, held in load.items() if held == 0]
    if empty:
        raise ValueError(f"providers {empty} would hold no rows: none of their jurisdictions is present")
    shares: dict[str, list[Mapping[str, str]]] = {provider: [] for provider in spec}
    for row in rows:
        shares[owner[row[field]]].append(row)
    return [
        Partition(provider, tuple(sorted({row[field] for row in share})), tuple(share))
        for provider, share in shares.items()
    ]


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV (plain or gzip), e.g. data/lens_drone_families.csv.gz: (header, rows)."""
    return read_csv_dicts(Path(path))


def write_partitions(
    partitions: Sequence[Partition], directory: Path, header: Sequence[str]
) -> dict[str, Path]:
    """Write each partition to `<directory>/<provider>.csv` (UTF-8, LF) for `ipspace node init`.

    Returns {provider: path}. Raises ValueError if a row has a column outside `header`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for partition in partitions:
        if not PROVIDER_NAME.fullmatch(partition.provider):
            raise ValueError(f"provider name {partition.provider!r} cannot name a file")
        path = directory / f"{partition.provider}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=list(header), lineterminator="\n", extrasaction="raise"
            )
            writer.writeheader()
            writer.writerows(partition.rows)
        written[partition.provider] = path
    return written


def _count_jurisdictions(rows: Sequence[Mapping[str, str]], field: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for number, row in enumerate(rows, start=1):
        jurisdiction = row.get(field)
        if not jurisdiction:
            raise ValueError(f"row {number} has no {field!r}")
        counts[jurisdiction] += 1
    return counts
