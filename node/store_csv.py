"""Reading the CSV files a provider imports: plain or gzip-compressed, UTF-8 (a BOM is tolerated)."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from node.store_errors import InvalidDataset

_GZIP_MAGIC = b"\x1f\x8b"


def open_csv_text(path: Path) -> TextIO:
    """Open a CSV for reading as text; gzip is recognised by its magic bytes, not by the file name."""
    with path.open("rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    if compressed:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


class CsvTable:
    """A CSV file read as a header and rows; each call re-reads the file, so it can be walked twice."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def header(self) -> list[str]:
        records = self._records()
        try:
            first = next(records, None)
        finally:
            records.close()
        if first is None:
            raise InvalidDataset(f"{self.path.name}: the file is empty (no header row)")
        return first[1]

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield (line number, cells) for every data row; raise InvalidDataset on a row of the wrong width."""
        records = self._records()
        header = next(records, None)
        if header is None:
            raise InvalidDataset(f"{self.path.name}: the file is empty (no header row)")
        width = len(header[1])
        for line, row in records:
            if len(row) != width:
                raise InvalidDataset(
                    f"{self.path.name} line {line}: {len(row)} cells where the header has {width}"
                )
            yield line, row

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        try:
            with open_csv_text(self.path) as handle:
                reader = csv.reader(handle)
                for row in reader:
                    yield reader.line_num, row
        except UnicodeDecodeError as error:
            raise InvalidDataset(f"{self.path.name}: not UTF-8 text ({error.reason})") from error
        except (csv.Error, gzip.BadGzipFile, EOFError) as error:
            raise InvalidDataset(f"{self.path.name}: unreadable CSV ({error})") from error


def read_csv_dicts(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a whole CSV into memory: (header, rows as dicts keyed by the header)."""
    table = CsvTable(path)
    header = table.header()
    return header, [dict(zip(header, row, strict=True)) for _, row in table.rows()]
