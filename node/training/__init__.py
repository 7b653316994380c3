"""Provider-side training: the local DP-SGD step a node runs on its own rows, and the per-agreement ledger.

`dp_step` trains the valuation network with Opacus and returns only the clipped, noised update; `accountant`
keeps each agreement's privacy spend as an RDP history (JSON in the node's database) and says, before any
training, whether a planned step fits the agreement's (epsilon, delta) budget. Both import torch and Opacus,
so import this package only where training happens.
"""

from node.training.accountant import (
    History,
    LedgerCorrupted,
    PrivacyBudgetExhausted,
    PrivacySpend,
    charge,
    check_budget,
    history_from_json,
    history_to_json,
    remaining_epsilon,
    spent_epsilon,
    would_exceed,
)
from node.training.dp_step import DPConfig, LocalUpdate, local_dp_step, planned_spend, poisson_sample_rate

__all__ = [
    "DPConfig",
    "History",
    "LedgerCorrupted",
    "LocalUpdate",
    "PrivacyBudgetExhausted",
    "PrivacySpend",
    "charge",
    "check_budget",
    "history_from_json",
    "history_to_json",
    "local_dp_step",
    "planned_spend",
    "poisson_sample_rate",
    "remaining_epsilon",
    "spent_epsilon",
    "would_exceed",
]
