"""Rebuild the sample data shipped in data/ from the real public sources in ../shared/data.

Usage (from the repository root):
    .venv/bin/python data/build_sample.py           # write data/*.csv.gz and data/SHA256SUMS
    .venv/bin/python data/build_sample.py --check   # rebuild elsewhere, compare with data/SHA256SUMS

Guarantees: every source file is checked against its SHA-256 (both the source's own SHA256SUMS and the
digests pinned below) before it is read; no row is invented; the output bytes are the same on every run
(rows in a fixed order, CSV with LF line ends, gzip with mtime=0 and no file name in the header). What each
output is and how it was derived is written in data/README.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUTPUT = REPO_ROOT / "data"

# Pinned so a silently replaced source (and a matching SHA256SUMS) is still caught.
SOURCE_SHA256 = {
    "drone_drones_fulltext_families_5884.csv": "de82bd04418a858249c152eefb5e59da1992ba95eef3f591e8f8657104328abf",  # noqa: E501
    "neural_network_patent_query.csv": "6e9f9a2e4cf762b457de0b6fcd255412476970cd68c7b2ded763f88ed51e04f6",
    "NASA_Patents.csv": "4cb53f6212fb65a26f9381c2fbfabb541b23b29162ef44045b3fac297715c72d",
    "patent_phrase_similarity_train.csv": "23d1d6fd9200da6225fb298f9511dc5a609755690c50bf267c79e527073c9770",
    "patent_phrase_similarity_valid.csv": "fa08c71b7a6722788c715699a93e6ac30d450841a9577f754f9518e821447a31",
    "sbir_topics_fy2008_2018.jsonl.gz": "2b09fac103b9c1adbcecef59115957b30ddb077ff8b26eba623adacbb93e38ec",
    "LICENSE_WillKoehrsen_rnn.txt": "09612f5ae3ddebc354a2b7948074dbd89f61be2cdd793ba6ecf28855ac072dff",
}

# Lens export header -> snake_case name used in the project ("#", the export's row counter, is dropped).
LENS_COLUMNS = {
    "Jurisdiction": "jurisdiction",
    "Kind": "kind",
    "Publication Number": "publication_number",
    "Lens ID": "lens_id",
    "Publication Date": "publication_date",
    "Publication Year": "publication_year",
    "Application Number": "application_number",
    "Application Date": "application_date",
    "Priority Numbers": "priority_numbers",
    "Title": "title",
    "Applicants": "applicants",
    "Inventors": "inventors",
    "URL": "url",
    "Type": "document_type",
    "Full Text": "has_full_text",
    "Cited Count": "cited_count",
    "Simple Family Size": "simple_family_size",
    "Extended Family Size": "extended_family_size",
    "Sequence Count": "sequence_count",
    "CPC Classifications": "cpc_classifications",
    "IPCR Classifications": "ipcr_classifications",
    "US Classifications": "us_classifications",
    "PubMed Id(s)": "pubmed_ids",
    "DOI(s)": "dois",
    "Non-Patent Citations": "non_patent_citations",
}
LENS_DROPPED = ("#",)

NASA_COLUMNS = {
    "Case Number": "case_number",
    "Center": "center",
    "Status": "status",
    "Application SN": "application_serial_number",
    "Title": "title",
    "Patent Expiration Date": "patent_expiration_date",
}

SBIR_SAMPLE_SIZE = 1000
SBIR_DESCRIPTION_MAX_CHARS = 4000
SBIR_COLUMNS = (
    "topic_id",
    "topic_name",
    "description",
    "description_original_length",
    "description_truncated",
    "agency",
    "phase",
    "program",
    "release_date",
    "open_date",
    "close_date",
    "url",
    "source_file",
)


class SourceError(Exception):
    """A source file is missing, altered, or not shaped as expected."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sources(source: Path) -> None:
    """Raise SourceError unless every source file matches SHA256SUMS and the pinned digests."""
    listed: dict[str, str] = {}
    for line in (source / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            hex_digest, name = line.split(maxsplit=1)
            listed[name.lstrip("*")] = hex_digest
    for name, pinned in SOURCE_SHA256.items():
        actual = sha256_file(source / name)
        if listed.get(name) != actual:
            raise SourceError(
                f"{name}: SHA-256 {actual} does not match the source's SHA256SUMS ({listed.get(name)})"
            )
        if actual != pinned:
            raise SourceError(f"{name}: SHA-256 {actual} is not the pinned version {pinned}")


def write_csv_gz(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write a UTF-8 CSV (LF line ends) gzip-compressed with a fixed header, so reruns give the same bytes."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        gz.write(text.getvalue().encode("utf-8"))
    return count


def read_csv(
    path: Path, *, delimiter: str = ",", encoding: str = "utf-8"
) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader)
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise SourceError(f"{path.name} line {number}: {len(row)} cells, header has {len(header)}")
    return header, rows


def require_unique(name: str, values: Sequence[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if not value or value in seen:
            raise SourceError(f"{name}: record id {value!r} is empty or repeated")
        seen.add(value)


def build_lens(source: Path, out: Path) -> int:
    header, rows = read_csv(source / "drone_drones_fulltext_families_5884.csv")
    if set(header) != set(LENS_COLUMNS) | set(LENS_DROPPED):
        raise SourceError(f"Lens header changed: {header}")
    positions = [header.index(column) for column in LENS_COLUMNS]
    require_unique("Lens publication numbers", [row[header.index("Publication Number")] for row in rows])
    # Source order (jurisdiction, then export order) is kept: it is already deterministic.
    return write_csv_gz(
        out / "lens_drone_families.csv.gz",
        list(LENS_COLUMNS.values()),
        ([row[i] for i in positions] for row in rows),
    )


def undo_double_quoting(value: str) -> str:
    """PatentsView export quirk: some cells were CSV-quoted twice ('" A ""Barometer"" Neuron ... "')."""
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return value[1:-1].replace('""', '"').strip()
    return value


def build_neural_network(source: Path, out: Path) -> tuple[int, int]:
    header, rows = read_csv(source / "neural_network_patent_query.csv")
    expected = ["patent_abstract", "patent_date", "patent_number", "patent_title"]
    if header != expected:
        raise SourceError(f"PatentsView header changed: {header}")
    require_unique("PatentsView patent numbers", [row[2] for row in rows])
    fixed = 0
    cleaned = []
    for abstract, patent_date, number, title in rows:
        new_abstract, new_title = undo_double_quoting(abstract), undo_double_quoting(title)
        fixed += (new_abstract != abstract) + (new_title != title)
        cleaned.append([number, patent_date, new_title, new_abstract.replace("\r\n", "\n")])
    count = write_csv_gz(
        out / "patentsview_neural_network_patents.csv.gz",
        ["patent_number", "patent_date", "patent_title", "patent_abstract"],
        cleaned,
    )
    return count, fixed


def iso_expiration_date(value: str) -> str:
    """NASA's sheet mixes '09/30/2029' and '03 November 2033'; both are unambiguous, write ISO 8601."""
    if not value:
        return ""
    for pattern in ("%m/%d/%Y", "%d %B %Y"):
        try:
            return datetime.strptime(value, pattern).date().isoformat()
        except ValueError:
            continue
    raise SourceError(f"NASA expiration date {value!r} is in no known format")


def build_nasa(source: Path, out: Path) -> int:
    # utf-8-sig drops the BOM; the csv module reads CRLF; ';' is the separator.
    header, rows = read_csv(source / "NASA_Patents.csv", delimiter=";", encoding="utf-8-sig")
    if set(header) != set(NASA_COLUMNS):
        raise SourceError(f"NASA header changed: {header}")
    positions = [header.index(column) for column in NASA_COLUMNS]
    date_position = list(NASA_COLUMNS).index("Patent Expiration Date")
    cleaned = []
    for row in rows:
        values = [row[i].strip() for i in positions]
        values[date_position] = iso_expiration_date(values[date_position])
        cleaned.append(values)
    require_unique("NASA case numbers", [values[0] for values in cleaned])
    return write_csv_gz(out / "nasa_patents.csv.gz", list(NASA_COLUMNS.values()), cleaned)


def build_phrase_similarity(source: Path, out: Path) -> dict[str, int]:
    counts = {}
    for split in ("train", "valid"):
        header, rows = read_csv(source / f"patent_phrase_similarity_{split}.csv")
        if header != ["id", "anchor", "target", "context", "score"]:
            raise SourceError(f"phrase-similarity {split} header changed: {header}")
        require_unique(f"phrase-similarity {split} ids", [row[0] for row in rows])
        counts[split] = write_csv_gz(out / f"phrase_similarity_{split}.csv.gz", header, rows)
    return counts


def trim_description(text: str) -> str:
    """Cut at the last whitespace before the limit so no word is split; no characters are added."""
    if len(text) <= SBIR_DESCRIPTION_MAX_CHARS:
        return text
    cut = text[:SBIR_DESCRIPTION_MAX_CHARS]
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:boundary] if boundary > SBIR_DESCRIPTION_MAX_CHARS // 2 else cut).rstrip()


def build_sbir(source: Path, out: Path) -> int:
    with gzip.open(source / "sbir_topics_fy2008_2018.jsonl.gz", "rt", encoding="utf-8") as handle:
        topics = [json.loads(line) for line in handle if line.strip()]
    require_unique("SBIR topic ids", [topic["topic_id"] for topic in topics])
    # A hash of the id orders topics pseudo-randomly but reproducibly, independent of the file's order.
    chosen = sorted(topics, key=lambda topic: hashlib.sha256(topic["topic_id"].encode("utf-8")).hexdigest())
    chosen = sorted(chosen[:SBIR_SAMPLE_SIZE], key=lambda topic: topic["topic_id"])
    rows = []
    for original in chosen:
        description = original["description"].replace("\r\n", "\n")
        trimmed = trim_description(description)
        topic = {
            **original,
            "description": trimmed,
            "description_original_length": str(len(description)),
            "description_truncated": "yes" if trimmed != description else "no",
        }
        rows.append([topic[column] for column in SBIR_COLUMNS])
    return write_csv_gz(out / "sbir_topics_sample.csv.gz", SBIR_COLUMNS, rows)


SHIPPED = (
    "lens_drone_families.csv.gz",
    "patentsview_neural_network_patents.csv.gz",
    "nasa_patents.csv.gz",
    "phrase_similarity_train.csv.gz",
    "phrase_similarity_valid.csv.gz",
    "sbir_topics_sample.csv.gz",
    "LICENSE_WillKoehrsen_rnn.txt",
)


def build(source: Path, out: Path) -> dict[str, str]:
    """Verify the sources, write every shipped file into `out` and return {file name: SHA-256}."""
    verify_sources(source)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "lens rows": build_lens(source, out),
        "PatentsView rows, cells un-double-quoted": build_neural_network(source, out),
        "NASA rows": build_nasa(source, out),
        "phrase-similarity rows": build_phrase_similarity(source, out),
        "SBIR topics": build_sbir(source, out),
    }
    shutil.copyfile(source / "LICENSE_WillKoehrsen_rnn.txt", out / "LICENSE_WillKoehrsen_rnn.txt")
    digests = {name: sha256_file(out / name) for name in SHIPPED}
    (out / "SHA256SUMS").write_text(
        "".join(f"{digests[name]}  {name}\n" for name in SHIPPED), encoding="utf-8"
    )
    for what, count in report.items():
        print(f"{what}: {count}")
    return digests


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="rebuild elsewhere and compare with the shipped SHA256SUMS"
    )
    args = parser.parse_args(argv)
    try:
        if not args.check:
            build(args.source, args.output)
            return 0
        with tempfile.TemporaryDirectory() as scratch:
            rebuilt = build(args.source, Path(scratch))
            shipped_sums = (args.output / "SHA256SUMS").read_text(encoding="utf-8")
            differing = [
                name
                for name, digest in rebuilt.items()
                if not (args.output / name).exists() or sha256_file(args.output / name) != digest
            ]
            if differing or (Path(scratch) / "SHA256SUMS").read_text(encoding="utf-8") != shipped_sums:
                print(f"MISMATCH: a rebuild differs from the shipped files {differing}", file=sys.stderr)
                return 1
            print(f"OK: {len(rebuilt)} files rebuild to the shipped bytes")
            return 0
    except (SourceError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
