"""The task registry: the names a job grant signs and the wire formats behind them."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from contracts.job_grants import TaskName, default_settings
from models.tasks import TASKS, UnknownTask, WireFormatError, task_wire


def test_every_task_a_grant_can_sign_has_a_wire_format_and_no_other() -> None:
    assert get_args(TaskName) == TASKS
    for task in TASKS:
        wire = task_wire(task)
        weights = wire.initial_weights(7)
        assert tuple(array.shape for array in weights) == wire.shapes
        back = wire.from_bytes(wire.to_bytes(weights))
        assert all(np.array_equal(a, b) for a, b in zip(weights, back, strict=True))
        assert len(wire.to_bytes(weights)) == 4 * wire.parameter_count


def test_an_unknown_task_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownTask, match="valuation, matching"):
        task_wire("ranking")


def test_one_tasks_weights_are_not_anothers() -> None:
    valuation, matching = task_wire("valuation"), task_wire("matching")
    with pytest.raises(WireFormatError):
        matching.from_bytes(valuation.to_bytes(valuation.initial_weights(0)))
    with pytest.raises(WireFormatError):
        valuation.from_bytes(matching.to_bytes(matching.initial_weights(0)))


def test_each_task_has_its_own_default_settings() -> None:
    assert default_settings("valuation") != default_settings("matching")
