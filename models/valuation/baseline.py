"""The centralized baseline a federated valuation model is compared with: closed-form ridge regression.

It is what one holder of every row could fit in a second: features standardised with the training rows' mean
and spread, an unpenalised intercept, and an L2 penalty. The issue gives its scale on this data (Spearman
about 0.59 on a random split); bench/valuation.py reports it beside the centralized MLP.
"""

from __future__ import annotations

import numpy as np

RIDGE_PENALTY = 1.0  # on standardised features; the held-out Spearman moves < 0.001 between 0.1 and 100


def ridge_predictions(
    train_features: np.ndarray, train_targets: np.ndarray, features: np.ndarray
) -> np.ndarray:
    """Fit ridge on the training rows and predict `features` (float64)."""
    mean = train_features.mean(axis=0)
    spread = train_features.std(axis=0)
    spread[spread == 0] = 1.0

    def design(matrix: np.ndarray) -> np.ndarray:
        scaled = (matrix.astype(np.float64) - mean) / spread
        return np.hstack([np.ones((len(matrix), 1)), scaled])

    x = design(train_features)
    penalty = RIDGE_PENALTY * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    coefficients = np.linalg.solve(x.T @ x + penalty, x.T @ train_targets.astype(np.float64))
    return design(features) @ coefficients
