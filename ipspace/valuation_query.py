"""The consumer's side of an encrypted valuation: its patent's features, its keys, the query, the value.

Everything that could tell the patent apart stays here: the row is read and its features computed on the
consumer's machine (`extract_features` at the job's reference year), clipped into the head's bounds and
encrypted under keys made once and kept in the identity directory (`ckks/valuation/`, the secret key 0600).
The coordinator gets the ciphertext and the public evaluation keys, and answers with a ciphertext only these
keys decrypt.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from crypto.ckks import VALUATION_PARAMETERS, ConsumerKeys
from ipspace.coordinator_client import CoordinatorClient
from models.valuation.encrypted import decrypt_value, encrypt_features, valuation_keys
from models.valuation.features import extract_features

KEYS_DIR = Path("ckks") / "valuation"
# The Lens columns `extract_features` reads; an absent one takes its documented default (features.py).
FEATURE_COLUMNS = (
    "simple_family_size",
    "extended_family_size",
    "priority_numbers",
    "cpc_classifications",
    "ipcr_classifications",
    "applicants",
    "inventors",
    "non_patent_citations",
    "us_classifications",
    "application_date",
    "publication_year",
    "document_type",
    "kind",
    "has_full_text",
    "jurisdiction",
)


class PatentFileError(ValueError):
    """A PATENT.json that is not one Lens-style row; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Valuation:
    """A decrypted answer: the value, the features it was computed from, and the budget left."""

    value: float
    features: np.ndarray
    reference_year: int
    queries_left_today: int
    queries_left_total: int
    resets_at: datetime


def read_patent(path: Path) -> dict[str, str]:
    """One Lens-style row from a JSON object of column -> text (numbers are taken as their text, null as
    empty). Raises PatentFileError for a file that is not such an object."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise PatentFileError(f"{path}: cannot be read ({type(error).__name__})") from None
    except json.JSONDecodeError as error:
        raise PatentFileError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict):
        raise PatentFileError(f"{path}: must hold one JSON object of Lens column -> value (one patent)")
    row = {}
    for column, value in document.items():
        if value is None:
            row[column] = ""
        elif isinstance(value, str):
            row[column] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            row[column] = str(value)
        else:
            raise PatentFileError(
                f"{path}: column {column!r} must be text or a number, not {type(value).__name__}"
            )
    return row


def missing_columns(row: Mapping[str, str]) -> list[str]:
    """The feature columns the row leaves absent or empty (their defaults apply)."""
    return [column for column in FEATURE_COLUMNS if not str(row.get(column) or "").strip()]


def keys_for_valuation(identity_dir: Path, rotation_steps: tuple[int, ...], degree: int) -> ConsumerKeys:
    """The consumer's valuation keys from `<identity>/ckks/valuation/`, made there on first use.

    Raises ValueError when the stored keys cannot serve a head that needs `rotation_steps` (made for other
    parameters or rotations): delete the directory to make new ones.
    """
    directory = identity_dir / KEYS_DIR
    if directory.exists():
        keys = ConsumerKeys.load(directory)
    else:
        keys = valuation_keys(degree)
        directory.mkdir(parents=True, mode=0o700)
        keys.save(directory)
    lacking = sorted(set(rotation_steps) - set(keys.rotation_steps))
    if keys.parameters != VALUATION_PARAMETERS or lacking or not keys.relinearization:
        raise ValueError(
            f"the keys in {directory} do not fit this model (rotation steps lacking: {lacking or 'none'}, "
            f"relinearization key: {keys.relinearization}); remove that directory to make new keys"
        )
    return keys


def valuation_request(terms: Mapping[str, Any], keys: ConsumerKeys, features: np.ndarray) -> dict[str, str]:
    """The JSON body of POST /jobs/{id}/valuations: the features encrypted (clipped into the head's bounds
    by `encrypt_features`) and the public evaluation keys."""
    return {
        "parameter_set": terms["parameter_set"],
        "evaluation_keys": base64.b64encode(keys.evaluation_keys()).decode("ascii"),
        "features": base64.b64encode(encrypt_features(keys, features)).decode("ascii"),
    }


def valuate_via_coordinator(
    client: CoordinatorClient, job_id: str, row: Mapping[str, str], identity_dir: Path
) -> Valuation:
    """Value `row` with the job's model under encryption: read the job's terms, compute and encrypt the
    features here, send them, decrypt the answer here.

    Raises CoordinatorRefused (with the coordinator's status and reason), ValueError for a job whose terms
    name parameters this client does not compute with or stored keys that do not fit.
    """
    terms = client.valuation_terms(job_id)
    parameters = terms["parameters"]
    if (
        parameters["poly_modulus_degree"],
        tuple(parameters["coeff_modulus_bits"]),
        parameters["scale_bits"],
    ) != (
        VALUATION_PARAMETERS.poly_modulus_degree,
        VALUATION_PARAMETERS.coeff_modulus_bits,
        VALUATION_PARAMETERS.scale_bits,
    ):
        raise ValueError(f"the coordinator values with CKKS parameters {parameters}, which this client lacks")
    keys = keys_for_valuation(identity_dir, tuple(terms["rotation_steps"]), int(terms["degree"]))
    features = extract_features(row, reference_year=int(terms["reference_year"]))
    answer = client.valuate(job_id, valuation_request(terms, keys, features))
    return Valuation(
        value=decrypt_value(keys, base64.b64decode(answer["value"])),
        features=features,
        reference_year=int(answer["reference_year"]),
        queries_left_today=int(answer["queries_left_today"]),
        queries_left_total=int(answer["queries_left_total"]),
        resets_at=datetime.fromisoformat(answer["resets_at"].replace("Z", "+00:00")),
    )
