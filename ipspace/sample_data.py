"""The sample data shipped in ``data/`` (derived from real public patent data; see data/README.md)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
LENS_FAMILIES = DATA_DIR / "lens_drone_families.csv.gz"
LENS_ID_FIELD = "publication_number"
LENS_SOURCE = (
    "Lens.org patent families on drones (2016 export), via the WIPO Manual on Open Source Patent "
    "Analytics (poldham/opensource-patent-analytics); Lens.org terms: attribution required"
)
