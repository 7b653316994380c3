"""Whether a job may be admitted, and whether its model may be downloaded: checks against the registered
agreements, each refusal in words a builder can act on.

These checks give early, clear answers; they are not the enforcement. Every node checks the agreement, the
consumer's signed grant, its own privacy budget and the cohort on every Train call, whatever the coordinator
decided.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from contracts.agreements import Agreement
from contracts.fields import utc_text
from contracts.job_grants import JobGrantBody, JobGrantError, load_job_grant
from contracts.offers import Action
from coordinator.agreements import AgreementRegistry, expired_at
from coordinator.job_spec import JobSubmission

# What a JobGrant consents to that the job spec also says (the spec's `model` is the grant's `settings`).
_GRANTED_FIELDS = ("task", "dataset", "purpose", "rounds", "epsilon")


def job_refusals(
    submission: JobSubmission, org: str, registry: AgreementRegistry, *, now: datetime
) -> list[str]:
    """Every reason the job cannot be admitted for ``org`` (empty: it can)."""
    problems: list[str] = []
    for agreement_id in submission.agreements:
        agreement = registry.get(agreement_id)
        if agreement is None:
            problems.append(
                f"agreement {agreement_id} is not registered with the coordinator: register it with "
                "POST /agreements first"
            )
            continue
        problems.extend(_agreement_refusals(agreement, submission, org, now))
    problems.extend(_grant_refusals(submission, now))
    return problems


def _agreement_refusals(
    agreement: Agreement, submission: JobSubmission, org: str, now: datetime
) -> list[str]:
    terms, name = agreement.terms, f"agreement {agreement.agreement_id}"
    problems = []
    if terms.consumer_org != org:
        problems.append(f"{name} is held by org {terms.consumer_org!r}, not by your org {org!r}")
    if terms.dataset != submission.dataset:
        problems.append(f"{name} covers dataset {terms.dataset!r}, not {submission.dataset!r}")
    if terms.purpose != submission.purpose:
        problems.append(f"{name} is for the purpose {terms.purpose!r}, not {submission.purpose!r}")
    if Action.TRAIN not in terms.actions:
        allowed = ", ".join(action.value for action in terms.actions)
        problems.append(f"{name} does not allow training (it allows: {allowed})")
    expiry = expired_at(agreement, now)
    if expiry is not None:
        problems.append(f"{name} expired at {utc_text(expiry)}")
    epsilon_limit = terms.constraints.epsilon
    if epsilon_limit is not None:
        if submission.epsilon is None:
            problems.append(
                f"{name} requires differential privacy (ε ≤ {epsilon_limit}); the job asks for none"
            )
        elif submission.epsilon > epsilon_limit:
            problems.append(
                f"the job asks for ε = {submission.epsilon} per node; {name} allows at most ε = "
                f"{epsilon_limit} in total"
            )
    min_cohort = terms.constraints.min_cohort
    if min_cohort is not None:
        if not submission.secagg:
            problems.append(f"{name} requires SecAgg+ with at least {min_cohort} nodes; the job turns it off")
        elif len(submission.agreements) < min_cohort:
            problems.append(
                f"{name} requires a SecAgg+ cohort of at least {min_cohort} nodes; the job has "
                f"{len(submission.agreements)}"
            )
    return problems


def _grant_refusals(submission: JobSubmission, now: datetime) -> list[str]:
    """One grant per agreement, each naming this job and agreement and consenting to exactly this spec.

    Whether a grant's signature holds is the node's check (it knows which agreement it holds); a grant that
    asks for something else than the job would only be refused there later, so it is refused here now.
    """
    problems = []
    named = set(submission.agreements)
    for agreement_id in submission.agreements:
        if agreement_id not in submission.grants:
            problems.append(f"no grant for agreement {agreement_id}: sign one JobGrant per agreement")
    for agreement_id, text in submission.grants.items():
        if agreement_id not in named:
            problems.append(f"a grant is given for agreement {agreement_id}, which the job does not name")
            continue
        try:
            grant = load_job_grant(text).body
        except JobGrantError as error:
            problems.append(f"the grant for agreement {agreement_id} is {error.reason}")
            continue
        problems.extend(_grant_mismatches(agreement_id, grant, submission, now))
    return problems


def _grant_mismatches(
    agreement_id: str, grant: JobGrantBody, submission: JobSubmission, now: datetime
) -> list[str]:
    where = f"the grant for agreement {agreement_id}"
    if grant.agreement_id != agreement_id:
        return [f"{where} names another agreement, {grant.agreement_id}"]
    if grant.job_id != submission.job_id:
        return [f"{where} was signed for job {grant.job_id!r}, not for this job {submission.job_id!r}"]
    problems = []
    granted = {field: getattr(grant, field) for field in _GRANTED_FIELDS}
    asked = {field: getattr(submission, field) for field in _GRANTED_FIELDS}
    granted["settings"], asked["settings"] = grant.settings, submission.model
    differing = [field for field in granted if granted[field] != asked[field]]
    if differing:
        says = ", ".join(f"{field}={_shown(granted[field])}" for field in differing)
        wants = ", ".join(f"{field}={_shown(asked[field])}" for field in differing)
        problems.append(f"{where} consents to {says}; the job asks for {wants}")
    if now >= grant.expires_at:
        problems.append(f"{where} expired at {utc_text(grant.expires_at)}")
    return problems


def _shown(value: object) -> str:
    return value.model_dump_json() if isinstance(value, BaseModel) else repr(value)


def export_refusal(agreement_ids: tuple[str, ...], registry: AgreementRegistry) -> str | None:
    """Why the job's model may not be downloaded, or None when every agreement allows export."""
    refusing = []
    for agreement_id in agreement_ids:
        agreement = registry.get(agreement_id)
        if agreement is None or not agreement.terms.constraints.model_export:
            refusing.append(agreement_id)
    if not refusing:
        return None
    return (
        f"the model may not be exported: {', '.join(refusing)} "
        f"{'does' if len(refusing) == 1 else 'do'} not allow it (terms.constraints.model_export is not true)"
    )
