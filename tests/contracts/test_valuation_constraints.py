"""The offer constraints that bound encrypted valuations: validated, and carried through ODRL both ways."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.odrl import offer_from_odrl, offer_to_odrl
from contracts.offers import Action, Constraints, Offer


def test_valuation_query_limits_travel_as_ipspace_odrl_constraints_and_come_back_equal() -> None:
    offer = Offer(
        offer_id="train-valuate",
        provider_org="office-us",
        dataset="families",
        actions=(Action.TRAIN, Action.VALUATE),
        constraints=Constraints(valuation_queries_per_day=3, valuation_queries_total=30),
    )
    document = offer_to_odrl(offer)
    constraints = document["permission"][0]["constraint"]
    assert {
        "leftOperand": "ipspace:valuationQueriesPerDay",
        "operator": "lteq",
        "rightOperand": 3,
    } in constraints
    assert {"leftOperand": "ipspace:valuationQueries", "operator": "lteq", "rightOperand": 30} in constraints
    assert [permission["action"] for permission in document["permission"]] == [
        "ipspace:train",
        "ipspace:valuate",
    ]
    assert offer_from_odrl(document) == offer


@pytest.mark.parametrize("field", ["valuation_queries_per_day", "valuation_queries_total"])
def test_a_valuation_query_limit_below_one_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Constraints(**{field: 0})
