"""The consumer's side of `ipspace valuate`: the patent file, the keys kept in the identity directory, and the
shipped example (a real held-out row). The round trip through a coordinator is in
tests/coordinator/test_valuation_service.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crypto.ckks import VALUATION_PARAMETERS, ConsumerKeys
from ipspace.demo_valuation import EXAMPLE_PATENT
from ipspace.sample_data import LENS_FAMILIES
from ipspace.valuation_query import (
    KEYS_DIR,
    PatentFileError,
    keys_for_valuation,
    missing_columns,
    read_patent,
)
from models.valuation.encrypted import rotation_steps
from models.valuation.features import extract_features
from models.valuation.split import ID_FIELD, is_held_out
from node.partition import read_rows


def test_the_shipped_example_is_a_real_held_out_row_of_the_sample_with_every_feature_column() -> None:
    row = read_patent(EXAMPLE_PATENT)
    _header, rows = read_rows(LENS_FAMILIES)
    assert dict(row) in [dict(shipped) for shipped in rows]
    assert is_held_out(row[ID_FIELD])
    assert missing_columns(row) == ["non_patent_citations", "us_classifications"]  # empty in the export too


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[1, 2]", "must hold one JSON object"),
        ('{"jurisdiction": ["US"]}', "column 'jurisdiction' must be text or a number, not list"),
        ('{"jurisdiction": "US",', "not JSON"),
    ],
)
def test_a_patent_file_that_is_not_one_row_is_refused_with_the_reason(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "patent.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PatentFileError, match=fragment):
        read_patent(path)


def test_numbers_and_nulls_in_a_patent_file_read_as_the_csv_would_give_them(tmp_path: Path) -> None:
    path = tmp_path / "patent.json"
    path.write_text(
        json.dumps({"simple_family_size": 7, "jurisdiction": "EP", "kind": None}), encoding="utf-8"
    )
    row = read_patent(path)
    assert row == {"simple_family_size": "7", "jurisdiction": "EP", "kind": ""}
    features = extract_features(row, reference_year=2017)
    assert features[0] == np.float32(np.log1p(7))


def test_valuation_keys_are_made_once_with_a_private_secret_key_and_reused(tmp_path: Path) -> None:
    steps = rotation_steps()
    keys = keys_for_valuation(tmp_path, steps, 4)
    secret = tmp_path / KEYS_DIR / "ckks-secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600
    again = keys_for_valuation(tmp_path, steps, 4)
    assert again.evaluation_keys() == keys.evaluation_keys()


def test_stored_keys_that_lack_a_rotation_the_model_needs_are_refused_not_replaced(tmp_path: Path) -> None:
    directory = tmp_path / KEYS_DIR
    directory.mkdir(parents=True)
    ConsumerKeys.generate(VALUATION_PARAMETERS, (1,), relinearization=True).save(directory)
    with pytest.raises(ValueError, match=r"rotation steps lacking: \[8, 32, 64\]"):
        keys_for_valuation(tmp_path, rotation_steps(), 4)
    assert ConsumerKeys.load(directory).rotation_steps == (1,)
