"""Encrypted valuation at the coordinator: a succeeded job's model values a consumer's encrypted patent
features, and only the consumer can read the value.

The consumer sends its features encrypted under its own CKKS key, with the evaluation keys the kernel needs
(Galois keys for its rotation steps and a relinearization key: public material, no secret key). The
coordinator turns the job's saved weights into the encryption-friendly head (`PolynomialHead`, ReLUs
replaced by fitted polynomials, the default feature bounds), encodes it once per model (a bounded LRU cache),
and answers with one ciphertext. It never holds a key that decrypts, so it sees neither the features nor the
value.

Who is served, in this order (each refusal says why):
1. the job exists and is of the caller's org (else 404, in the same words as for a job that does not exist);
2. it succeeded (else 409);
3. every agreement the job trained under is registered, unexpired and lists `valuate`: the providers' consent
   that a model trained on their rows answers valuations (else 403);
4. its model is a valuation model (`valuation_model_refusal`; else 409), encoded once and cached;
5. the query is well formed: the parameter set, keys and ciphertext load as what they claim to be (else
   `InvalidValuationQuery`);
6. the org's budget on this job has a query left today and in total (policies/valuation_queries.py; else
   429), read before the consumer's bytes are decoded and charged atomically just before the evaluation, so
   concurrent queries cannot overspend.

Not checked here: revocations (the coordinator keeps no revocation list; a node refuses a revoked agreement
on its next call, but an exported model outlives that).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import tenseal.sealapi as seal

from contracts.fields import utc_text
from contracts.offers import Action
from coordinator.agreements import AgreementRegistry, expired_at
from coordinator.job_spec import JobRecord, JobState
from coordinator.jobs import JobStore, UnknownJob
from coordinator.model_files import load_model
from coordinator.valuation_budget import BudgetLeft, ValuationBudget
from crypto import Principal
from crypto.ckks import VALUATION_PARAMETERS, CkksInputError, CkksParameters, EvaluationContext
from models.valuation.encrypted import EncryptedValuation, rotation_steps
from models.valuation.he_head import DEFAULT_DEGREE, HeadError, PolynomialHead
from models.valuation.wire import weight_shapes
from policies.valuation_queries import ValuationLimits

# The parameter sets the service computes with, by the name a query gives: only the valuation kernel's.
PARAMETER_SET: Final = "ckks-valuation-n16384-v1"
PARAMETER_SETS: Final[dict[str, CkksParameters]] = {PARAMETER_SET: VALUATION_PARAMETERS}
MAX_CACHED_MODELS: Final = 4  # an encoded head holds 58 MiB of plaintexts (degree 4, measured)
# Each evaluation holds a consumer's keys (38 MB) and keeps a core busy for about a second: two at a time.
MAX_CONCURRENT_EVALUATIONS: Final = 2
EVALUATION_WAIT_S: Final = 60.0


class ValuationRefused(Exception):
    """A valuation query (or a look at the terms) refused before any homomorphic work; `status` is the HTTP
    status the refusal answers with, `reason` is written for the consumer."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownValuationJob(ValuationRefused):
    status = 404


class ValuationNotPermitted(ValuationRefused):
    status = 403


class ModelNotServable(ValuationRefused):
    status = 409


class InvalidValuationQuery(ValuationRefused):
    status = 400


class ValuationBusy(ValuationRefused):
    status = 503


@dataclass(frozen=True)
class ValuationTerms:
    """What a consumer needs before it encrypts: the year its features' age is counted to, the parameter set,
    the head's degree (which sets the rotation keys), and its budget on this job."""

    job_id: str
    reference_year: int
    parameter_set: str
    parameters: CkksParameters
    degree: int
    rotation_steps: tuple[int, ...]
    left: BudgetLeft


@dataclass(frozen=True)
class Admission:
    """A query that passed `ValuationService.admit`: whose org it charges, the job, the limits that hold,
    and the job's encoded head."""

    org: str
    record: JobRecord
    limits: ValuationLimits
    encoded: EncryptedValuation


@dataclass(frozen=True)
class EncryptedValue:
    """The answer: one ciphertext (the value in slot 0) for the consumer's key, and the budget left."""

    ciphertext: bytes
    reference_year: int
    left: BudgetLeft


def valuation_model_refusal(record: JobRecord, weights: Sequence[np.ndarray]) -> str | None:
    """Why the job's model is not a valuation model, or None when it is. The one place that decides it:
    today the job's task and the weights' shapes (the valuation network's wire format); extend it here when
    jobs train other kinds of model."""
    if record.spec.task != "valuation":
        return (
            f"job {record.job_id!r} trained a {record.spec.task} model; only valuation models answer "
            "valuations"
        )
    shapes = [tuple(np.shape(array)) for array in weights]
    if shapes != weight_shapes():
        return (
            f"job {record.job_id!r}'s model has weight shapes {shapes}; the valuation network's are "
            f"{weight_shapes()}"
        )
    return None


def reference_year(record: JobRecord) -> int:
    """The year the job's training counted ages to (its settings); the consumer's features must too."""
    return record.spec.model.reference_year


class ValuationService:
    """Serves valuations with the coordinator's jobs, agreements and budget counts; thread-safe."""

    def __init__(
        self,
        store: JobStore,
        registry: AgreementRegistry,
        budget: ValuationBudget,
        *,
        cache_size: int = MAX_CACHED_MODELS,
    ) -> None:
        self._store = store
        self._registry = registry
        self._budget = budget
        self._cache: OrderedDict[tuple[str, str], EncryptedValuation] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._evaluations = threading.BoundedSemaphore(MAX_CONCURRENT_EVALUATIONS)
        self._keyless = EvaluationContext.keyless(VALUATION_PARAMETERS)

    def terms(self, caller: Principal, job_id: str, *, now: datetime) -> ValuationTerms:
        """The job's valuation terms for the caller (the budget as it stands, even when spent). Raises
        UnknownValuationJob, ModelNotServable or ValuationNotPermitted as `admit` does."""
        record, limits, _encoded = self._servable(caller, job_id, now)
        return ValuationTerms(
            job_id=record.job_id,
            reference_year=reference_year(record),
            parameter_set=PARAMETER_SET,
            parameters=VALUATION_PARAMETERS,
            degree=DEFAULT_DEGREE,
            rotation_steps=rotation_steps(DEFAULT_DEGREE),
            left=self._budget.left(caller.org, record.job_id, limits, now=now),
        )

    def admit(self, caller: Principal, job_id: str, *, now: datetime) -> Admission:
        """The cheap checks, before the consumer's bytes are even decoded: the job, its model, the agreements
        and whether the org has a query left (read, not yet charged).

        Raises UnknownValuationJob, ModelNotServable, ValuationNotPermitted, and
        coordinator.valuation_budget.ValuationBudgetExhausted.
        """
        record, limits, encoded = self._servable(caller, job_id, now)
        self._budget.require_left(caller.org, record.job_id, limits, now=now)
        return Admission(caller.org, record, limits, encoded)

    def valuate(
        self,
        admission: Admission,
        *,
        parameter_set: str,
        evaluation_keys: bytes,
        features: bytes,
        now: datetime,
    ) -> EncryptedValue:
        """The admitted job's model evaluated on the consumer's encrypted `features`, charged to its org.

        Raises InvalidValuationQuery (a parameter set other than PARAMETER_SET, keys that are not the
        kernel's CKKS evaluation keys, a ciphertext that is not a fresh query for them), ValuationBusy when
        no evaluation slot frees within EVALUATION_WAIT_S, and
        coordinator.valuation_budget.ValuationBudgetExhausted (a concurrent query took the last one); nothing
        is charged on any of these.
        """
        record = admission.record
        parameters = PARAMETER_SETS.get(parameter_set)
        if parameters is None:
            raise InvalidValuationQuery(
                f"unknown parameter set {parameter_set!r}; the valuation service computes with "
                + ", ".join(repr(name) for name in PARAMETER_SETS)
            )
        encoded = admission.encoded
        if not self._evaluations.acquire(timeout=EVALUATION_WAIT_S):
            raise ValuationBusy(f"the valuation service is busy; try again in a minute ({record.job_id!r})")
        try:
            context, query = _checked_query(parameters, encoded, evaluation_keys, features)
            left = self._budget.charge(admission.org, record.job_id, admission.limits, now=now)
            answer = encoded.evaluate(query, context)
        finally:
            self._evaluations.release()
        return EncryptedValue(answer, reference_year(record), left)

    def _servable(
        self, caller: Principal, job_id: str, now: datetime
    ) -> tuple[JobRecord, ValuationLimits, EncryptedValuation]:
        try:
            record = self._store.get(job_id)
        except UnknownJob:
            record = None
        if record is None or record.org != caller.org:
            raise UnknownValuationJob(f"no job {job_id!r} among the jobs you may see")
        if record.state != JobState.SUCCEEDED or self._store.model_path(record) is None:
            raise ModelNotServable(
                f"job {job_id!r} has no final model to value with: it is {record.state.value}"
            )
        constraints, refusing = [], []
        for agreement_id in record.spec.agreements:
            agreement = self._registry.get(agreement_id)
            if agreement is None:
                refusing.append(f"{agreement_id} is not registered with the coordinator")
            elif Action.VALUATE not in agreement.terms.actions:
                listed = ", ".join(action.value for action in agreement.terms.actions)
                refusing.append(f"{agreement_id} does not list 'valuate' (it lists: {listed})")
            elif (expiry := expired_at(agreement, now)) is not None:
                refusing.append(f"{agreement_id} expired at {utc_text(expiry)}")
            else:
                constraints.append(agreement.terms.constraints)
        if refusing:
            raise ValuationNotPermitted(
                f"job {job_id!r}'s model answers valuations only while every agreement it trained under is "
                f"registered, unexpired and lists the action 'valuate' (the providers' consent): "
                + "; ".join(refusing)
            )
        return record, ValuationLimits.tightest(constraints), self._encoded(record)

    def _encoded(self, record: JobRecord) -> EncryptedValuation:
        """The job's head, encoded for VALUATION_PARAMETERS: from the cache, else made and cached (the least
        recently used model leaves when the cache is full). Raises ModelNotServable."""
        key = (record.job_id, record.model_sha256 or "")
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            path = self._store.model_path(record)
            if path is None:
                raise ModelNotServable(f"job {record.job_id!r} has no saved model")
            weights = load_model(path)
            refusal = valuation_model_refusal(record, weights)
            if refusal is not None:
                raise ModelNotServable(refusal)
            try:
                head = PolynomialHead.from_weights(weights)
            except HeadError as error:
                raise ModelNotServable(
                    f"job {record.job_id!r}'s model has no encryption-friendly head: {error}"
                ) from None
            encoded = EncryptedValuation.encode(head, self._keyless)
            self._cache[key] = encoded
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return encoded


def _checked_query(
    parameters: CkksParameters, encoded: EncryptedValuation, evaluation_keys: bytes, features: bytes
) -> tuple[EvaluationContext, seal.Ciphertext]:
    """The consumer's evaluation context and query ciphertext, each checked for what the kernel needs.
    Raises InvalidValuationQuery with CKKS's reason."""
    try:
        context = EvaluationContext.from_bytes(parameters, evaluation_keys)
        context.require_rotations(encoded.rotation_steps)
        _ = context.relin_keys  # raises when the consumer sent none
        return context, context.load_ciphertext(features)
    except CkksInputError as error:
        raise InvalidValuationQuery(f"the query cannot be evaluated: {error.reason}") from None
