"""Shared data and builders of the dataset store tests: test_store_describe.py, test_store_import_fetch.py."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from node.partition import partition_by_jurisdiction, read_rows, write_partitions
from node.store import DatasetStore

LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"

# Eight real rows of data/lens_drone_families.csv.gz (some columns), copied by hand; the expected statistics
# in test_store_describe.py were worked out by hand from these rows.
LENS_HEADER = (
    "publication_number",
    "jurisdiction",
    "kind",
    "publication_date",
    "publication_year",
    "title",
    "applicants",
    "cited_count",
    "simple_family_size",
)
LENS_ROWS = [
    ("US 2015/0003626 A1", "US", "A1", "2015-01-01", "2015",
     "Active Noise Cancellation Method For Automobiles", "TRAMMELL LLOYD;;MAX SOUND CORP", "1", "1"),
    ("US 2015/0005937 A1", "US", "A1", "2015-01-01", "2015", "Action Selection Apparatus And Methods",
     "BRAIN CORP", "0", "1"),
    ("US 2015/0006429 A1", "US", "A1", "2015-01-01", "2015", "Confidence Ratings For Delivery Of Items",
     "UNITED PARCEL SERVICE INC", "0", "1"),
    ("US 2015/0006184 A1", "US", "A1", "2015-01-01", "2015", "Wireless Control Of Linked Devices",
     "HARMAN INT IND", "2", "4"),
    ("US 2015/0020558 A1", "US", "A1", "2015-01-22", "2015", "Mobile Lock With Retractable Cable",
     "WILLIAMS DONALD S", "1", "2"),
    ("US H000485 H", "US", "H", "1988-07-05", "1988", "Frangible Target With Hydraulic Warhead Simulator",
     "", "9", "1"),
    ("EP 0095016 A1", "EP", "A1", "1983-11-30", "1983",
     "Device For The Breeding Of Stronger Bees With A Higher Resistance Against Diseases.",
     "G & W SCHREIB U UBERSETZUNGSBU", "3", "2"),
    ("CN 101025382 A", "CN", "A", "2007-08-29", "2007",
     "Random Pattern Measuring Method For Statistic Modulation Transfer Function",
     "BEIJING TECHNOLOGY UNIV", "0", "2"),
]  # fmt: skip


ID = "publication_number"


def _csv_text(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


LENS_ROWS_CSV = _csv_text(LENS_HEADER, LENS_ROWS)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def import_dataset(store: DatasetStore, name: str, path: Path, id_field: str = ID) -> None:
    store.import_csv(name, path, id_field=id_field, description=f"{name} test data", source="Lens.org (test)")


def import_hand_made(store: DatasetStore, directory: Path) -> DatasetStore:
    """`store` with the eight hand-copied rows imported as dataset "lens_rows"."""
    import_dataset(store, "lens_rows", write_csv(directory / "lens_rows.csv", LENS_ROWS_CSV))
    return store


def lens_partition_store(directory: Path) -> tuple[DatasetStore, list[dict[str, str]]]:
    """The Asia-Pacific share of the real Lens sample, written as `ipspace node init` would get it."""
    header, rows = read_rows(LENS_SAMPLE)
    apac = partition_by_jurisdiction(rows, 3)[2]
    paths = write_partitions([apac], directory / "parts", header)
    store = DatasetStore.for_node(directory)
    store.import_csv(
        "lens_families",
        paths[apac.provider],
        id_field=ID,
        description="Drone patent families",
        source="Lens.org",
    )
    return store, [dict(row) for row in apac.rows]
