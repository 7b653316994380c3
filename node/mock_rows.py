"""Mock rows for the catalog: synthetic rows that show a dataset's shape without being any real record.

Each field of a mock row is drawn on its own (the public "mock" half of a PySyft-style dataset): a uniformly
chosen row gives the field's value, so missing values keep their rate. A value shared by at least
K_ANONYMITY_THRESHOLD records is shown as it is; a rarer one would single out its records (one patent's
number, its title, the top citation count), so it is replaced by a synthetic value of the same kind:

- text keeps its shape (same length, letters by random letters of the same case, digits by random digits,
  separators kept), after a leading part that at least k records share ("https://lens.org/", "US 2015/");
- long free text (titles) is rebuilt from words that at least k records use, to about the same length;
- numbers and dates are drawn near a random rank inside the column's central range (5th to 95th percentile,
  and never past the k-th smallest or largest value), so extremes are never shown.

Guarantees: a mock value equals a real value of its field only when at least k records hold that value (a
synthetic value that happens to equal a rarer real one is drawn again, and after MAX_FAKE_TRIES the field is
left missing); no mock row equals a real row on the full tuple of non-id fields (such a row is drawn again,
and after MAX_DRAWS_PER_ROW failed draws no more rows are made); mock ids are "mock-<n>", never a real id.
The same seed over the same data gives the same rows.
"""

from __future__ import annotations

import bisect
import math
import random
import sqlite3
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from node.field_stats import K_ANONYMITY_THRESHOLD
from node.store_schema import FieldSpec, FieldType, Value, quote_identifier

MOCK_ID_PREFIX = "mock-"
MAX_DRAWS_PER_ROW = 100
MAX_FAKE_TRIES = 20
ROW_NUMBER_COLUMN = "_row"  # 1..row_count in import order; never a field name (those start with a letter)
CENTRAL_QUANTILES = (0.05, 0.95)
# Free text: long values made mostly of words. Its mock values are word bags, since letter-by-letter noise
# ("Qzmxk Bwtr For Jqxkv") hides what the field is about while common words ("Drone Control System") show it.
FREE_TEXT_MIN_MEAN_LENGTH = 40
FREE_TEXT_MIN_WORD_SHARE = 0.8
FREE_TEXT_SAMPLE = 200  # values looked at to tell free text from other long text
_TOP_CODE_POINT = "\U0010ffff"  # sorts after every character: prefix + it bounds the strings with prefix

_K = K_ANONYMITY_THRESHOLD


def synthesise_mock_rows(
    connection: sqlite3.Connection,
    table: str,
    fields: Sequence[FieldSpec],
    id_field: str,
    row_count: int,
    *,
    count: int,
    seed: int,
) -> tuple[dict[str, Value], ...]:
    """Return up to `count` mock rows (fields in schema order), the same ones for the same seed and data.

    See the module docstring for what a mock value may and may not be.
    """
    value_fields = [field for field in fields if field.name != id_field]
    if row_count == 0 or not value_fields or count <= 0:
        return ()
    quoted_table = quote_identifier(table)
    select = ", ".join(quote_identifier(field.name) for field in value_fields)
    records = connection.execute(
        f"SELECT {select} FROM {quoted_table} ORDER BY {ROW_NUMBER_COLUMN}"  # noqa: S608 (checked identifiers)
    ).fetchall()
    columns = {
        field.name: _MockColumn.build(field.type, [record[i] for record in records])
        for i, field in enumerate(value_fields)
    }
    # Not a secret: the generator only has to be repeatable for a given seed.
    rng = random.Random(seed)  # noqa: S311
    rows: list[dict[str, Value]] = []
    for _ in range(count):
        for _ in range(MAX_DRAWS_PER_ROW):
            candidate = {name: column.draw(rng) for name, column in columns.items()}
            if not _matches_real_row(connection, quoted_table, candidate):
                row: dict[str, Value] = {id_field: f"{MOCK_ID_PREFIX}{len(rows) + 1}"}
                row.update(candidate)
                rows.append({field.name: row[field.name] for field in fields})
                break
        else:
            break  # nearly every combination is a real row here: further rows would fail the same way
    return tuple(rows)


@dataclass(frozen=True)
class _MockColumn:
    """One field's values (row order, None when missing) and what a mock value of it may be."""

    type: FieldType
    values: list[Value]
    counts: Counter[Value]  # records per present value
    ordered: list  # present values sorted: text, or numbers (dates as day ordinals) for the central range
    word_bag: tuple[tuple[str, ...], tuple[int, ...]] | None  # free text: words of >= k records, weights
    decimals: int  # floats: decimal places shown in the data

    @classmethod
    def build(cls, kind: FieldType, values: list[Value]) -> _MockColumn:
        present = [value for value in values if value is not None]
        if kind is FieldType.DATE:
            ordered: list = sorted(date.fromisoformat(str(value)).toordinal() for value in present)
        else:
            ordered = sorted(present)  # a column holds one type (the store converts every cell)
        word_bag = _free_text_word_bag(present) if kind is FieldType.TEXT else None
        decimals = (
            max((_decimal_places(value) for value in present), default=0) if kind is FieldType.FLOAT else 0
        )
        return cls(kind, values, Counter(present), ordered, word_bag, decimals)

    def draw(self, rng: random.Random) -> Value:
        """The field of one mock row: a value held by >= k records, a synthetic one, or missing."""
        value = self.values[rng.randrange(len(self.values))]
        if value is None or self.counts[value] >= _K:
            return value
        for _ in range(MAX_FAKE_TRIES):
            fake = self._synthesise(value, rng)
            if fake is not None and not 0 < self.counts.get(fake, 0) < _K:
                return fake
        return None  # every try landed on a rare real value (a tiny domain): show nothing rather than it

    def _synthesise(self, value: Value, rng: random.Random) -> Value:
        if self.type is FieldType.TEXT:
            if self.word_bag is not None:
                return _words_of_length(self.word_bag, len(str(value)), rng)
            return _shape_preserving(str(value), self._shared_prefix_length(str(value)), rng)
        window = _central_window(self.ordered, rng)
        if window is None:
            return None
        low, high = window
        if self.type is FieldType.DATE:
            return date.fromordinal(rng.randint(low, high)).isoformat()
        if self.type is FieldType.INTEGER:
            return rng.randint(low, high)
        return round(rng.uniform(low, high), self.decimals)

    def _shared_prefix_length(self, value: str) -> int:
        """Length of the longest leading part of `value`, ending at a separator, that >= k records share.

        Such a part is a k-anonymous generalisation (like a truncated post code); at least one letter or
        digit after it is always replaced, so the whole value is never kept.
        """
        best = 0
        for end in range(1, len(value)):
            if value[end - 1].isalnum() or not any(char.isalnum() for char in value[end:]):
                continue
            prefix = value[:end]
            holders = bisect.bisect_left(self.ordered, prefix + _TOP_CODE_POINT) - bisect.bisect_left(
                self.ordered, prefix
            )
            if holders < _K:
                break  # a longer prefix is held by no more records
            best = end
        return best


def _central_window(ordered: list, rng: random.Random) -> tuple[int | float, int | float] | None:
    """Bounds to draw a synthetic number from: around a random rank of the central range, about 2k wide.

    The central range runs from the 5th to the 95th percentile, and never past the k-th smallest or k-th
    largest value (the bounds the catalog statistics show). None when the column has too few values.
    """
    if len(ordered) < 2 * _K:
        return None  # the catalog shows no range either
    last = len(ordered) - 1
    lowest = max(_K - 1, math.ceil(CENTRAL_QUANTILES[0] * last))
    highest = min(last - (_K - 1), math.floor(CENTRAL_QUANTILES[1] * last))
    if lowest > highest:
        return None
    rank = rng.randint(lowest, highest)
    # Drawing between ranks (not at one) follows the distribution without copying any one record's value.
    return ordered[max(lowest, rank - _K)], ordered[min(highest, rank + _K)]


def _shape_preserving(value: str, keep: int, rng: random.Random) -> str:
    """`value` with its first `keep` characters kept and every later letter and digit replaced."""
    return value[:keep] + "".join(_random_like(char, rng) for char in value[keep:])


def _random_like(char: str, rng: random.Random) -> str:
    if char.isdigit():
        return rng.choice(string.digits)
    if char.isupper():
        return rng.choice(string.ascii_uppercase)
    if char.islower():
        return rng.choice(string.ascii_lowercase)
    if char.isalpha():  # a letter without case (CJK, Arabic): another letter of its 256-code-point block
        block = ord(char) & ~0xFF
        while True:  # ends: `char` itself is a letter of the block
            replacement = chr(block + rng.randrange(0x100))
            if replacement.isalpha():
                return replacement
    return char  # separators (' ', '-', '/', ';;') keep the format


def _free_text_word_bag(present: list[Value]) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """Words used by >= k records with their record counts, if the column is free text; else None."""
    texts = [str(value) for value in present]
    if not texts or sum(map(len, texts)) / len(texts) <= FREE_TEXT_MIN_MEAN_LENGTH:
        return None
    # The kind of text shows in a spread of values; judging every token would make large columns slow.
    sample = texts[:: max(1, len(texts) // FREE_TEXT_SAMPLE)]
    tokens = [token for text in sample for token in text.split()]
    wordlike = sum(1 for token in tokens if token.strip(string.punctuation).isalpha())
    if not tokens or wordlike / len(tokens) < FREE_TEXT_MIN_WORD_SHARE:
        return None  # long but not prose: classification lists, citation strings
    records_per_word = Counter(word for text in texts for word in set(text.split()))
    common = sorted(word for word, records in records_per_word.items() if records >= _K)
    if not common:
        return None
    return tuple(common), tuple(records_per_word[word] for word in common)


def _words_of_length(bag: tuple[tuple[str, ...], tuple[int, ...]], length: int, rng: random.Random) -> str:
    """Words drawn by how many records use them, until the text is about `length` characters long."""
    words, weights = bag
    chosen: list[str] = []
    while len(" ".join(chosen)) < length:
        chosen.extend(rng.choices(words, weights))
    return " ".join(chosen)


def _decimal_places(value: Value) -> int:
    if not isinstance(value, float):
        return 0
    text = repr(value)
    return min(6, len(text.partition(".")[2])) if "e" not in text else 6


def _matches_real_row(connection: sqlite3.Connection, quoted_table: str, candidate: dict[str, Value]) -> bool:
    # IS (not =) so that a missing value matches a missing value.
    condition = " AND ".join(f"{quote_identifier(name)} IS ?" for name in candidate)
    found = connection.execute(
        f"SELECT 1 FROM {quoted_table} WHERE {condition} LIMIT 1",  # noqa: S608
        tuple(candidate.values()),
    ).fetchone()
    return found is not None
