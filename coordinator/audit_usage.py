"""What each agreement has used, read from the verified audit entries, against the limits its terms set.

Epsilon is recomputed from the training entries' own charges (each states its round's noise multiplier in
millionths, Poisson sampling period and steps: `policies.spend_record`), with the same RDP accountant the node
enforces with, at the agreement's delta; match queries and revealed records are counted from the charges of
allowed calls. A revocation is an allowed RevokeAgreement entry. Limits come from the agreements registered
with the coordinator; an agreement seen only in entries shows its use with its limits unknown.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType

from contracts.agreements import Agreement
from coordinator.audit_index import IndexedEntry
from policies.matching import DEFAULT_QUERIES_PER_DAY, DEFAULT_QUERIES_TOTAL
from policies.spend_record import NOISE_UNITS, PRIVACY_NOISE, PRIVACY_SAMPLING, PRIVACY_STEPS

MATCH_QUERIES = "match.queries"
REVEAL_RECORDS = "reveal.records"
REVOKE_METHOD = "/ipspace.v1.Negotiation/RevokeAgreement"
TRAIN_METHOD = "/ipspace.v1.Training/Train"
IMPORT_ATTEMPTS = 5
IMPORT_RETRY_S = 1.0
_IMPORT_LOCK = threading.Lock()


@dataclass
class AgreementUsage:
    agreement_id: str
    provider_org: str | None = None
    consumer_org: str | None = None
    dataset: str | None = None
    purpose: str | None = None
    actions: list[str] = field(default_factory=list)
    epsilon_limit: float | None = None
    delta: float | None = None
    epsilon_spent: float | None = None
    training_rounds: int = 0
    match_queries: int = 0
    match_queries_limit: int | None = None
    match_queries_per_day_limit: int | None = None
    reveal_records: int = 0
    reveal_records_limit: int | None = None
    allowed: int = 0
    denied: int = 0
    revoked_at: str | None = None


def agreement_usage(entries: Iterable[IndexedEntry], agreements: Iterable[Agreement]) -> list[AgreementUsage]:
    """One summary per agreement that is registered or appears in an entry, by agreement id."""
    accountant = _accountant()
    usage: dict[str, AgreementUsage] = {}
    spends: dict[str, list] = {}  # of accountant.PrivacySpend
    for agreement in agreements:
        usage[agreement.agreement_id] = _with_terms(agreement)
    for entry in entries:
        agreement_id = entry.agreement_id
        if agreement_id is None:
            continue
        item = usage.setdefault(agreement_id, AgreementUsage(agreement_id))
        if entry.decision != "allow":
            item.denied += 1
            continue
        item.allowed += 1
        item.match_queries += entry.charges.get(MATCH_QUERIES, 0)
        item.reveal_records += entry.charges.get(REVEAL_RECORDS, 0)
        if entry.method == REVOKE_METHOD and item.revoked_at is None:
            item.revoked_at = entry.time
        item.training_rounds += entry.method == TRAIN_METHOD
        spend = _privacy_spend(entry)
        if spend is not None:
            spends[agreement_id] = list(
                accountant.charge(spends.get(agreement_id, []), accountant.PrivacySpend(*spend))
            )
    for agreement_id, item in usage.items():
        history = spends.get(agreement_id, [])
        if item.delta is not None:
            item.epsilon_spent = accountant.spent_epsilon(history, item.delta)
        elif not history:
            item.epsilon_spent = 0.0
    return [usage[key] for key in sorted(usage)]


def _accountant() -> ModuleType:
    """`policies.privacy_accountant`, imported on first use: Opacus and torch take seconds to import, and
    only a summary of training entries needs them.

    A thread importing Opacus while another thread of the process imports it by another module (a node's
    warm-up, where a test runs nodes and the coordinator in one process) can meet Python's import-deadlock
    detection, which fails one of them; the import is then tried again once the other has finished.
    """
    with _IMPORT_LOCK:
        for attempt in range(IMPORT_ATTEMPTS):
            try:
                return importlib.import_module("policies.privacy_accountant")
            except RuntimeError as error:  # importlib._bootstrap._DeadlockError
                if "deadlock" not in str(error) or attempt == IMPORT_ATTEMPTS - 1:
                    raise
                time.sleep(IMPORT_RETRY_S)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _with_terms(agreement: Agreement) -> AgreementUsage:
    terms = agreement.terms
    limits = terms.constraints
    matches = "match" in {str(action) for action in terms.actions}
    return AgreementUsage(
        agreement_id=agreement.agreement_id,
        provider_org=terms.provider_org,
        consumer_org=terms.consumer_org,
        dataset=terms.dataset,
        purpose=terms.purpose,
        actions=sorted(str(action) for action in terms.actions),
        epsilon_limit=limits.epsilon,
        delta=limits.delta,
        match_queries_limit=(limits.match_queries_total or DEFAULT_QUERIES_TOTAL) if matches else None,
        match_queries_per_day_limit=(limits.match_queries_per_day or DEFAULT_QUERIES_PER_DAY)
        if matches
        else None,
        reveal_records_limit=limits.reveal_max_records_total,
    )


def _privacy_spend(entry: IndexedEntry) -> tuple[float, float, int] | None:
    """The round's spend (noise multiplier, sample rate, steps) as its Train entry states it; None for any
    other entry and for a round without noise (an agreement with no privacy budget)."""
    charges = entry.charges
    if entry.method != TRAIN_METHOD or PRIVACY_STEPS not in charges:
        return None
    noise, period, steps = charges.get(PRIVACY_NOISE), charges.get(PRIVACY_SAMPLING), charges[PRIVACY_STEPS]
    if not noise or not period or steps <= 0:
        return None
    return noise / NOISE_UNITS, 1 / period, steps
