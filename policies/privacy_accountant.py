"""The privacy ledger of one agreement: what its DP-SGD steps have spent, kept as an RDP history.

Each agreement that allows training carries a budget (epsilon, delta). Every local DP-SGD step is one
`PrivacySpend` (noise multiplier, Poisson sample rate, number of optimizer steps); the ledger is the list of
them, the same history Opacus's `RDPAccountant` keeps in memory. The node stores it as JSON in its database,
checks a planned step against the budget *before* training (`would_exceed`, `check_budget`) and appends the
step with `charge` in the same transaction as the call's audit entry.

Epsilon is computed by Opacus's own RDP analysis (`RDPAccountant`'s orders and conversion) over the whole
history, so the number the node enforces is the one Opacus would report had a single accountant seen every
step. RDP composes by adding: a step's RDP is `steps` times that of one step, so entries with the same noise
and sample rate merge into one, and the per-step RDP of each (noise, sample rate) is computed once per
process (it costs 10-400 ms; the sum and conversion well under 1 ms). Everything here is a pure function of
plain values: no Opacus object is kept, and a ledger read back from the database gives the same epsilon in
any process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

__all__ = [
    "MECHANISM",
    "History",
    "LedgerCorrupted",
    "PrivacyBudgetExhausted",
    "PrivacySpend",
    "charge",
    "check_budget",
    "from_opacus_history",
    "history_from_json",
    "history_to_json",
    "remaining_epsilon",
    "spent_epsilon",
    "to_opacus_history",
    "would_exceed",
]

MECHANISM = "rdp"
RDP_ORDERS: tuple[float, ...] = tuple(RDPAccountant.DEFAULT_ALPHAS)
_SPEND_KEYS = frozenset({"noise_multiplier", "sample_rate", "steps"})


@dataclass(frozen=True)
class PrivacySpend:
    """One run of DP-SGD: `steps` optimizer steps at one noise multiplier and one Poisson sample rate.

    Raises ValueError for a negative or non-finite noise multiplier, a sample rate outside (0, 1], or a step
    count that is not a positive integer. Noise 0 is accepted and costs an infinite epsilon.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not _is_number(self.noise_multiplier) or not 0 <= self.noise_multiplier < math.inf:
            raise ValueError(f"noise_multiplier must be a finite number >= 0, got {self.noise_multiplier!r}")
        if not _is_number(self.sample_rate) or not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be a number in (0, 1], got {self.sample_rate!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")


History = tuple[PrivacySpend, ...]


class LedgerCorrupted(ValueError):
    """A stored ledger that cannot be read back exactly. The node must refuse training, never reset it."""


class PrivacyBudgetExhausted(Exception):
    """A planned step would take the agreement past its epsilon budget; the message says what remains."""

    def __init__(self, *, epsilon_spent: float, epsilon_after: float, epsilon_budget: float, delta: float):
        self.epsilon_spent = epsilon_spent
        self.epsilon_after = epsilon_after
        self.epsilon_budget = epsilon_budget
        self.remaining = max(0.0, epsilon_budget - epsilon_spent)
        super().__init__(
            f"privacy budget exhausted: this training step would bring epsilon to {epsilon_after:.4g} "
            f"of the agreement's {epsilon_budget:.4g} (delta {delta:g}); {epsilon_spent:.4g} is spent "
            f"and {self.remaining:.4g} remains"
        )


def charge(history: Sequence[PrivacySpend], step: PrivacySpend) -> History:
    """The history after `step`, merged into the last entry when noise and sample rate match (as Opacus does).

    The input is not changed. Merging is exact: the RDP of equal steps adds up.
    """
    entries = tuple(history)
    if entries and _same_mechanism(entries[-1], step):
        last = entries[-1]
        merged = PrivacySpend(last.noise_multiplier, last.sample_rate, last.steps + step.steps)
        return (*entries[:-1], merged)
    return (*entries, step)


def spent_epsilon(history: Sequence[PrivacySpend], delta: float) -> float:
    """The epsilon spent by `history` at `delta`, by Opacus's RDP accountant (0 for an empty history).

    Infinite when any step ran without noise. Raises ValueError when `delta` is not in (0, 1).
    """
    _check_delta(delta)
    if not history:
        return 0.0
    if any(spend.noise_multiplier == 0 for spend in history):
        return math.inf  # a noiseless step has no DP guarantee (Opacus would say so too, with a warning)
    # The same sum and conversion as RDPAccountant.get_privacy_spent, with the per-step RDP cached.
    total = sum(spend.steps * _rdp_per_step(spend.noise_multiplier, spend.sample_rate) for spend in history)
    epsilon, _order = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=total, delta=delta)
    return float(epsilon)


def would_exceed(
    history: Sequence[PrivacySpend], step: PrivacySpend, delta: float, epsilon_budget: float
) -> tuple[bool, float]:
    """Whether charging `step` would take the history past `epsilon_budget`, and the epsilon it would reach.

    Exactly reaching the budget is allowed. Raises ValueError for a budget that is not a positive finite
    number or a `delta` outside (0, 1).
    """
    _check_budget_value(epsilon_budget)
    epsilon_after = spent_epsilon(charge(history, step), delta)
    return epsilon_after > epsilon_budget, epsilon_after


def check_budget(
    history: Sequence[PrivacySpend], step: PrivacySpend, *, delta: float, epsilon_budget: float
) -> float:
    """The epsilon the history would reach after `step`, when that stays within the budget.

    Raises PrivacyBudgetExhausted (its message is fit for a RESOURCE_EXHAUSTED reason) when it would not,
    and ValueError for a bad budget or delta.
    """
    exceeds, epsilon_after = would_exceed(history, step, delta, epsilon_budget)
    if exceeds:
        raise PrivacyBudgetExhausted(
            epsilon_spent=spent_epsilon(history, delta),
            epsilon_after=epsilon_after,
            epsilon_budget=epsilon_budget,
            delta=delta,
        )
    return epsilon_after


def remaining_epsilon(history: Sequence[PrivacySpend], delta: float, epsilon_budget: float) -> float:
    """How much of `epsilon_budget` the history leaves (never below 0)."""
    _check_budget_value(epsilon_budget)
    return max(0.0, epsilon_budget - spent_epsilon(history, delta))


def to_opacus_history(history: Iterable[PrivacySpend]) -> list[tuple[float, float, int]]:
    """The history as Opacus's `RDPAccountant.history`: [(noise_multiplier, sample_rate, steps), ...]."""
    return [(spend.noise_multiplier, spend.sample_rate, spend.steps) for spend in history]


def from_opacus_history(entries: Iterable[tuple[float, float, int]]) -> History:
    """A history from Opacus's `RDPAccountant.history`. Raises ValueError for an entry that is not a spend."""
    history: History = ()
    for entry in entries:
        noise_multiplier, sample_rate, steps = entry
        history = charge(history, PrivacySpend(float(noise_multiplier), float(sample_rate), steps))
    return history


def history_to_json(history: Sequence[PrivacySpend]) -> str:
    """The ledger as canonical JSON text (sorted keys, no spaces); floats round-trip exactly."""
    document = {
        "mechanism": MECHANISM,
        "history": [
            {"noise_multiplier": s.noise_multiplier, "sample_rate": s.sample_rate, "steps": s.steps}
            for s in history
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)


def history_from_json(text: str | bytes) -> History:
    """The ledger stored by `history_to_json`, exactly as it was.

    Raises LedgerCorrupted for text that is not such a ledger: bad JSON, NaN or infinity, another mechanism,
    missing or extra keys, wrong types, or values no `PrivacySpend` accepts. Entries are kept as stored (not
    re-merged), so the round trip is exact.
    """
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LedgerCorrupted(f"the privacy ledger is not valid JSON: {error}") from error
    if not isinstance(document, dict) or set(document) != {"mechanism", "history"}:
        raise LedgerCorrupted("the privacy ledger must be an object with exactly 'mechanism' and 'history'")
    if document["mechanism"] != MECHANISM:
        raise LedgerCorrupted(
            f"the privacy ledger was kept by mechanism {document['mechanism']!r}; "
            f"this node reads only {MECHANISM!r}"
        )
    if not isinstance(document["history"], list):
        raise LedgerCorrupted("the privacy ledger's 'history' must be a list")
    return tuple(_spend_from_json(index, item) for index, item in enumerate(document["history"]))


def _spend_from_json(index: int, item: object) -> PrivacySpend:
    if not isinstance(item, dict) or set(item) != _SPEND_KEYS:
        raise LedgerCorrupted(f"ledger entry {index} must have exactly the keys {sorted(_SPEND_KEYS)}")
    if not all(_is_number(item[key]) for key in ("noise_multiplier", "sample_rate")):
        raise LedgerCorrupted(f"ledger entry {index}: noise_multiplier and sample_rate must be numbers")
    try:
        return PrivacySpend(float(item["noise_multiplier"]), float(item["sample_rate"]), item["steps"])
    except ValueError as error:
        raise LedgerCorrupted(f"ledger entry {index}: {error}") from error


@lru_cache(maxsize=256)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    rdp = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ORDERS)
    )
    rdp.flags.writeable = False  # shared by every caller through the cache
    return rdp


def _refuse_constant(name: str) -> float:
    raise LedgerCorrupted(f"the privacy ledger holds {name}, which no spend can be")


def _same_mechanism(a: PrivacySpend, b: PrivacySpend) -> bool:
    return a.noise_multiplier == b.noise_multiplier and a.sample_rate == b.sample_rate


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_delta(delta: float) -> None:
    if not _is_number(delta) or not 0 < delta < 1:
        raise ValueError(f"delta must be a number in (0, 1), got {delta!r}")


def _check_budget_value(epsilon_budget: float) -> None:
    if not _is_number(epsilon_budget) or not 0 < epsilon_budget < math.inf:
        raise ValueError(f"the epsilon budget must be a positive finite number, got {epsilon_budget!r}")
