"""POST /queries/match refuses CKKS parameters that cannot go on the wire with 422 and where, never a 500.

Found by the schema fuzz (tests/coordinator/test_schema_fuzz.py): the prime sizes were unbounded integers,
and protobuf's uint32 raised ValueError on a negative or huge one after the query had been routed.
"""

from __future__ import annotations

import pytest

from tests.coordinator.conftest import Coordinator, register


@pytest.mark.parametrize("bits", [[60, 40, 2**40], [60, -1, 60], [60, 0, 60], [60, 61, 60]])
def test_a_prime_size_outside_1_to_60_bits_is_422_naming_it(shared_coordinator: Coordinator, bits) -> None:
    agreement = shared_coordinator.space.agreement("carl", "node-us", "match")
    body = {
        "parameters": {"poly_modulus_degree": 8192, "coeff_modulus_bits": bits, "scale_bits": 40},
        "evaluation_keys": "",
        "query": "",
        "projection": "",
        "grants": {agreement.agreement_id: "{}"},
    }
    with shared_coordinator.client("carl") as client:
        assert register(client, agreement).status_code in (200, 201)
        response = client.post("/queries/match", json=body)
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    position = next(i for i, value in enumerate(bits) if not 1 <= value <= 60)
    assert problem["loc"] == ["body", "parameters", "coeff_modulus_bits", position]


def test_parameters_in_range_reach_the_node_which_judges_them(shared_coordinator: Coordinator) -> None:
    agreement = shared_coordinator.space.agreement("carl", "node-us", "match")
    body = {
        "parameters": {"poly_modulus_degree": 8192, "coeff_modulus_bits": [60, 40, 60], "scale_bits": 40},
        "evaluation_keys": "",
        "query": "",
        "projection": "",
        "grants": {agreement.agreement_id: "{}"},
    }
    with shared_coordinator.client("carl") as client:
        assert register(client, agreement).status_code in (200, 201)
        response = client.post("/queries/match", json=body)
    assert response.status_code == 200, response.text
    [answer] = response.json()["results"]
    assert answer["node"] == "node-us" and answer["error"]["status"] == "INVALID_ARGUMENT"
