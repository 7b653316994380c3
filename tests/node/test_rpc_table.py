"""The gate's table covers exactly the RPCs of the node's services, and the gate can serve each entry."""

from __future__ import annotations

import importlib
from pathlib import Path

import contracts.v1
from crypto import Principal, Role
from node.grants import Grant, GrantFactory
from node.rpc_table import INFRASTRUCTURE, RULES, RequestFacts
from node.server import MAX_TRANSPORT_MESSAGE, SERVICE_NAMES
from policies.decision import Decision


def _contract_modules() -> list[object]:
    """Every generated message module in contracts/v1, found on disk so a new contract cannot be missed."""
    directory = Path(contracts.v1.__file__).parent
    names = sorted(path.stem for path in directory.glob("*_pb2.py"))
    assert len(names) == len(list(directory.glob("*.proto")))
    return [importlib.import_module(f"contracts.v1.{name}") for name in names]


def _service_methods() -> set[str]:
    methods = set()
    for module in _contract_modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            assert service.full_name in SERVICE_NAMES, f"{service.full_name} is not served"
            methods |= {f"/{service.full_name}/{method.name}" for method in service.methods}
    return methods


def test_the_table_covers_exactly_the_services_methods() -> None:
    methods = _service_methods()
    missing, extra = sorted(methods - set(RULES)), sorted(set(RULES) - methods)
    assert not missing and not extra, f"missing from the table: {missing}; not a service method: {extra}"


def test_infrastructure_methods_are_not_data_methods() -> None:
    assert not INFRASTRUCTURE & set(RULES)
    assert all(name.startswith(("/grpc.health.", "/grpc.reflection.")) for name in INFRASTRUCTURE)


def test_every_action_in_the_table_has_a_grant() -> None:
    class NoAgreements:  # stands in for NodeState: grant_for only looks an agreement up
        def agreement(self, _agreement_id: str) -> None:
            return None

    factory = GrantFactory(node="n", store=None, state=NoAgreements(), log=None, identity=None, offers={})
    principal = Principal("alice", "acme", Role.CONSUMER, "thumbprint")
    decision = Decision.allow("test")
    for action in {rule.action for rule in RULES.values()}:
        facts = RequestFacts(agreement_id="sha256:" + "0" * 64)
        grant = factory.grant_for(principal, action, facts, decision)
        assert isinstance(grant, Grant) and type(grant) is not Grant, action


def test_every_rule_bounds_its_request_size_below_the_transport_ceiling() -> None:
    # An encrypted match carries rotation keys and a ciphertext (about 1 MB); every other call stays small.
    large = {"/ipspace.v1.Matching/Match"}
    assert all(
        0 < rule.max_request_bytes <= 256 * 1024 for method, rule in RULES.items() if method not in large
    )
    assert all(RULES[method].max_request_bytes < MAX_TRANSPORT_MESSAGE for method in large)
