"""Job grants: a consumer's signed consent that one federated job may train under one of its agreements.

The coordinator runs jobs, but a node never takes its word for who asked: every Train or Evaluate call carries
the grant that the agreement's consumer signed for this job (its id, rounds, privacy budget and training
settings). The node checks the signature against the consumer named in the agreement it holds, so the
coordinator can forward a grant but cannot write one, widen one, or reuse one for another job.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from contracts.agreements import Agreement
from contracts.errors import ContractError
from contracts.fields import Digest, FrozenModel, Name, OfferId, UtcDatetime, describe_validation_error
from contracts.signing import Signature, require_party, sign_as_party, verify_consumer_grant
from crypto import Identity, Principal, canonical_json

JOB_GRANT_SIGNATURE_TAG = b"ipspace/job-grant/v1\n"
MAX_ROUNDS = 100
MAX_GRANT_LIFETIME = timedelta(days=7)

JobId = OfferId  # the same safe token shape: letters, digits, '.', '_', '-'
# What a job trains: the valuation network or the matching head (models/tasks.py holds their wire formats).
TaskName = Literal["valuation", "matching"]


class JobGrantError(ContractError):
    """A job grant that does not hold, or does not cover the call it came with."""


class TrainingSettings(FrozenModel):
    """The local step every node runs in each round (the node picks the noise itself, from the budget).

    The defaults are the valuation network's; `default_settings` gives each task's.
    """

    # Defaults chosen by bench/valuation.py on validation rows carved from the training rows.
    local_steps: Annotated[int, Field(ge=1, le=1000)] = 20
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 256
    learning_rate: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 0.1
    max_grad_norm: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 5.0
    reference_year: Annotated[int, Field(ge=1900, le=2100)] = 2017  # the year patent ages are counted to
    # The local optimizer on the privatised gradients (Adam is post-processing: it spends what SGD spends).
    optimizer: Literal["sgd", "adam"] = "sgd"


# The matching head's for a DP job, chosen with bench/matching_federated.py on a tuning split carved from the
# train pairs (epsilon 8): few large batches, Adam on the privatised gradients. Each step holds a per-pair
# gradient of the head's 49,152 weights for every pair of its Poisson batch (~3,200 of a node's ~9,600
# pairs at 4,096: about 0.6 GB).
MATCHING_SETTINGS = TrainingSettings(
    local_steps=5, batch_size=4096, learning_rate=0.01, max_grad_norm=0.5, optimizer="adam"
)


def default_settings(task: TaskName) -> TrainingSettings:
    """The local-step settings a job of `task` gets when its spec names none."""
    return MATCHING_SETTINGS if task == "matching" else TrainingSettings()


class JobGrantBody(FrozenModel):
    """What the consumer consents to; every field is signed."""

    job_id: JobId
    task: TaskName = "valuation"
    agreement_id: Digest
    dataset: Name
    purpose: Name
    rounds: Annotated[int, Field(ge=1, le=MAX_ROUNDS)]
    # The most this job may spend at this node; None asks for training without differential privacy, which
    # only an agreement without a privacy budget allows.
    epsilon: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | None
    settings: TrainingSettings = TrainingSettings()
    issued_at: UtcDatetime
    expires_at: UtcDatetime

    @model_validator(mode="after")
    def _window(self) -> JobGrantBody:
        if not self.issued_at < self.expires_at <= self.issued_at + MAX_GRANT_LIFETIME:
            days = MAX_GRANT_LIFETIME.days
            raise ValueError(f"a grant must expire after it is issued and within {days} days")
        return self


class JobGrant(FrozenModel):
    body: JobGrantBody
    signature: Signature

    def verify(self, agreement: Agreement, ca_cert_pem: bytes, *, now: datetime) -> Principal:
        """Check that the agreement's consumer signed this grant for this agreement, valid at `now`; return
        the signer.

        Guarantees on return: the signer holds a CA-issued signing certificate of the agreement's consumer
        org with a consumer or builder role, the grant names this agreement, its dataset and purpose, and
        `now` is inside the grant's window. Raises JobGrantError naming the first problem.
        """
        body = self.body
        terms = agreement.terms
        if body.agreement_id != agreement.agreement_id:
            raise JobGrantError(f"the grant is for agreement {body.agreement_id[:19]}…, not this one")
        return verify_consumer_grant(
            self.signature,
            job_grant_message(body),
            terms,
            ca_cert_pem,
            named=(body.dataset, body.purpose),
            window=(body.issued_at, body.expires_at),
            now=now,
            error=JobGrantError,
            kind="job grant",
        )


def job_grant_message(body: JobGrantBody) -> bytes:
    """The exact bytes the consumer signs: tag + canonical JSON of the body."""
    return JOB_GRANT_SIGNATURE_TAG + canonical_json(body.model_dump(mode="json"))


def sign_job_grant(
    consumer: Identity,
    agreement: Agreement,
    *,
    job_id: str,
    rounds: int,
    epsilon: float | None,
    task: TaskName = "valuation",
    settings: TrainingSettings | None = None,
    lifetime: timedelta = timedelta(days=1),
    now: datetime | None = None,
) -> JobGrant:
    """A grant for `job_id` (training `task`'s model) under `agreement`, signed by `consumer`; `settings`
    default to the task's (`default_settings`).

    Raises JobGrantError when `consumer` may not sign for the agreement's consumer side or a value is out of
    range (the message names the field).
    """
    require_party(consumer.principal(), agreement.terms, "consumer", JobGrantError)
    issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
    try:
        body = JobGrantBody(
            job_id=job_id,
            task=task,
            agreement_id=agreement.agreement_id,
            dataset=agreement.terms.dataset,
            purpose=agreement.terms.purpose,
            rounds=rounds,
            epsilon=epsilon,
            settings=settings or default_settings(task),
            issued_at=issued_at,
            expires_at=issued_at + lifetime,
        )
    except ValidationError as error:
        raise JobGrantError(describe_validation_error(error)) from None
    return JobGrant(body=body, signature=sign_as_party(consumer, "consumer", job_grant_message(body)))


def load_job_grant(text: str | bytes) -> JobGrant:
    """A grant from its JSON text. Raises JobGrantError naming the first bad field."""
    try:
        return JobGrant.model_validate_json(text)
    except ValidationError as error:
        raise JobGrantError(f"not a job grant: {describe_validation_error(error)}") from None
