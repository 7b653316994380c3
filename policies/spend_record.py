"""How a training round's privacy spend is written in its audit entry: as exact integers.

An entry's `charges` hold integers, and a regulator must be able to recompute an agreement's epsilon from the
log alone (Opacus's RDP analysis over every round's spend). So the node rounds each noise multiplier up to a
whole millionth before it trains (more noise only lowers the spend), and a sample rate is always 1 / period
for a whole period (Opacus's Poisson rate 1 / ceil(rows / batch)).
"""

from __future__ import annotations

PRIVACY_STEPS = "privacy.steps"
PRIVACY_NOISE = "privacy.noise_micro"
PRIVACY_SAMPLING = "privacy.sampling_period"
NOISE_UNITS = 1_000_000


def spend_charges(noise_multiplier: float, sample_rate: float, steps: int) -> dict[str, int]:
    """The entry's charges for one round's spend. Raises ValueError for a spend not written exactly."""
    noise = round(noise_multiplier * NOISE_UNITS)
    period = round(1 / sample_rate)
    if noise / NOISE_UNITS != noise_multiplier or 1 / period != sample_rate:
        raise ValueError(f"the spend ({noise_multiplier}, {sample_rate}) is not in whole units")
    return {PRIVACY_STEPS: steps, PRIVACY_NOISE: noise, PRIVACY_SAMPLING: period}
