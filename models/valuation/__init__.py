"""Patent valuation: features of a Lens patent-family row and a cohort-normalised citation target.

`features` turns a row into a fixed-length float32 vector (never from its forward citations); `target` turns
its forward citations into relative impact within its technology-field x filing-year cohort, from per-cohort
totals that nodes can add up without pooling rows. `lens_fields` holds the cell-parsing rules both share.
"""

from models.valuation.features import FEATURE_NAMES, extract_features, feature_matrix
from models.valuation.target import (
    CohortStats,
    cohort_stats,
    filing_year,
    merge,
    normalised_target,
    normalised_targets,
    technology_field,
)

__all__ = [
    "FEATURE_NAMES",
    "CohortStats",
    "cohort_stats",
    "extract_features",
    "feature_matrix",
    "filing_year",
    "merge",
    "normalised_target",
    "normalised_targets",
    "technology_field",
]
