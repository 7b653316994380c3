"""Fuzz a running coordinator from its own OpenAPI schema (schemathesis 4), over its real mTLS socket.

The coordinator authenticates each request from the TLS peer certificate and a bearer token bound to it, so
the cases travel over a socket (schemathesis' requests transport, presenting the caller's client
certificate), never in-process. Each generated case is sent once as every `Caller`; every answer goes
through schemathesis' own checks (`SCHEMATHESIS_CHECKS`) and this module's (`OWN_CHECKS`), and a `Tally`
counts cases, statuses and failures per check, keeping a reproducing request for the first few.

Statuses: an answer's status must be one its operation declares (schemathesis' status_code_conformance,
strict). No generic extra is allowed, since every route already declares 401 and 403, and FastAPI declares
422 for each operation that takes input.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.config import OutputConfig, SanitizationConfig
from schemathesis.errors import FailureGroup

from crypto import Role
from crypto.identity import CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE

# schemathesis' response checks that apply to every operation, by their names in its registry.
SCHEMATHESIS_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
REQUEST_TIMEOUT_S = 10.0
FINDINGS_KEPT_PER_CHECK = 5  # enough to act on, short enough to read
AUDIT_PREFIX = "/audit/"


@dataclass(frozen=True)
class Caller:
    """Who a case is sent as: the certificate its connection presents and its Authorization header.

    ``org`` and ``role`` are None for a caller that must not get in (no token, a bad one, one bound to
    another certificate): every answer to it must be 401.
    """

    label: str
    identity_dir: Path
    authorization: str | None
    org: str | None = None
    role: Role | None = None
    # How a reproducing curl command writes the Authorization header: a token itself is kept out of reports.
    authorization_in_shell: str = "Bearer <token>"

    @property
    def authenticated(self) -> bool:
        return self.org is not None

    @property
    def regulator(self) -> bool:
        return self.role == Role.REGULATOR


class CallerSession:
    """A kept-alive HTTPS session that presents one caller's client certificate and token."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self._session = requests.Session()
        self._tls = {
            "verify": str(caller.identity_dir / CA_CERT_FILE),
            "cert": (str(caller.identity_dir / TLS_CERT_FILE), str(caller.identity_dir / TLS_KEY_FILE)),
        }

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.caller.authorization is None else {"Authorization": self.caller.authorization}

    def send(self, case: Case, base_url: str) -> schemathesis.Response:
        return case.call(base_url, self._session, self.headers, timeout=REQUEST_TIMEOUT_S, **self._tls)

    def reproduce(self, case: Case, base_url: str) -> str:
        """A curl command that sends ``case`` as this caller (the token is read from its identity)."""
        command = case.as_curl_command(base_url=base_url)
        verify, (certificate, key) = self._tls["verify"], self._tls["cert"]
        command += f" --cacert {verify} --cert {certificate} --key {key}"
        if self.caller.authorization is not None:
            command += f' -H "Authorization: {self.caller.authorization_in_shell}"'
        return command

    def close(self) -> None:
        self._session.close()


@dataclass(frozen=True)
class Secrets:
    """What callers must not read: for each id of a job or agreement, the orgs that may see it (a regulator
    sees every one), and text only the coordinator itself should know (its directories)."""

    readers_by_id: Mapping[str, frozenset[str]]
    internal_text: tuple[str, ...]


# An own check returns None when the answer is right, else what is wrong with it.
OwnCheck = Callable[[Caller, Case, schemathesis.Response, Secrets], str | None]


def _json(response: schemathesis.Response) -> Any:
    try:
        return json.loads(response.content or b"")
    except (ValueError, UnicodeDecodeError):
        return None


def unauthenticated_is_401(
    caller: Caller, case: Case, response: schemathesis.Response, secrets: Secrets
) -> str | None:
    """A caller without a valid token bound to its certificate gets 401 and a Bearer challenge, whatever
    else is wrong with its request."""
    if caller.authenticated:
        return None
    if response.status_code != 401:
        return f"{caller.label} got {response.status_code}, not 401: {response.text_lossy()[:160]}"
    challenge = (response.headers.get("www-authenticate") or [""])[0]
    if not challenge.lower().startswith("bearer "):
        return f"a 401 without a Bearer challenge (WWW-Authenticate: {challenge!r})"
    return None


def error_has_detail(
    caller: Caller, case: Case, response: schemathesis.Response, secrets: Secrets
) -> str | None:
    """Every 4xx or 5xx is JSON with a ``detail``: a sentence, or for a malformed request (422) FastAPI's list
    of problems, each saying where (``loc``) and what (``msg``)."""
    if response.status_code < 400:
        return None
    body = _json(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail.strip():
        return None
    if response.status_code == 422 and _located_problems(detail):
        return None
    return f"a {response.status_code} without a readable detail: {response.text_lossy()[:160]!r}"


def _located_problems(detail: object) -> bool:
    return (
        isinstance(detail, list)
        and bool(detail)
        and all(isinstance(item, dict) and item.get("loc") and item.get("msg") for item in detail)
    )


def no_foreign_data(
    caller: Caller, case: Case, response: schemathesis.Response, secrets: Secrets
) -> str | None:
    """An answer names no id of a job or agreement the caller's org may not see, unless the caller sent
    that id itself (a 404 repeats the id it was asked for). A regulator may see every one."""
    if not caller.authenticated or caller.regulator:
        return None
    text = response.text_lossy()
    sent = _request_text(response)
    shown = sorted(
        secret
        for secret, readers in secrets.readers_by_id.items()
        if caller.org not in readers and secret in text and secret not in sent
    )
    if shown:
        return f"{caller.label} (org {caller.org!r}) was shown ids of other orgs: {', '.join(shown)}"
    return None


def no_internal_details(
    caller: Caller, case: Case, response: schemathesis.Response, secrets: Secrets
) -> str | None:
    """No answer shows a traceback or the coordinator's own file paths."""
    text = response.text_lossy()
    shown = [item for item in (*secrets.internal_text, "Traceback (most recent call last)") if item in text]
    return f"the answer shows internal details: {shown}" if shown else None


def audit_is_regulators_only(
    caller: Caller, case: Case, response: schemathesis.Response, secrets: Secrets
) -> str | None:
    """Only a regulator reads audit data: no other caller gets a 2xx from an operation under /audit/. The
    one exception is a provider's POST, a node handing in its own signed head (the answer is the verdict on
    that head, nothing of anyone else's)."""
    if not case.path.startswith(AUDIT_PREFIX) or caller.regulator or not 200 <= response.status_code < 300:
        return None
    if caller.role == Role.PROVIDER and case.method.upper() != "GET":
        return None
    return f"{caller.label} got {response.status_code} from {case.method.upper()} {case.path}"


OWN_CHECKS: dict[str, OwnCheck] = {
    "unauthenticated_is_401": unauthenticated_is_401,
    "error_has_detail": error_has_detail,
    "no_foreign_data": no_foreign_data,
    "no_internal_details": no_internal_details,
    "audit_is_regulators_only": audit_is_regulators_only,
}


def _request_text(response: schemathesis.Response) -> str:
    request = response.request
    body = request.body or b""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return f"{request.url} {body}"


@dataclass(frozen=True)
class Finding:
    check: str
    operation: str
    caller: str
    status: int
    problem: str
    reproduce: str


@dataclass
class Tally:
    """Cases sent per operation and caller, statuses seen, failures per check and the first findings."""

    cases: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operation, caller)
    generated: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operation, generation mode)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    out_of_time: list[str] = field(default_factory=list)
    seconds_by_operation: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def fail(self, finding: Finding) -> None:
        self.failures[finding.check] += 1
        if sum(item.check == finding.check for item in self.findings) < FINDINGS_KEPT_PER_CHECK:
            self.findings.append(finding)

    def generated_for(self, operation: str) -> int:
        return sum(n for (label, _), n in self.generated.items() if label == operation)

    def report(self) -> dict[str, Any]:
        """Everything counted, as JSON-ready data."""
        labels = sorted({label for label, _ in self.cases})

        def by_operation(counter: Counter) -> dict[str, dict[str, int]]:
            return {
                label: {str(inner): n for (outer, inner), n in sorted(counter.items()) if outer == label}
                for label in labels
            }

        return {
            "seconds": round(self.seconds, 1),
            "requests": sum(self.cases.values()),
            "cases": sum(self.generated.values()),
            "requests_by_operation_and_caller": by_operation(self.cases),
            "cases_by_operation_and_mode": by_operation(self.generated),
            "statuses_by_operation": by_operation(self.statuses),
            "failures_by_check": {name: self.failures[name] for name in (*SCHEMATHESIS_CHECKS, *OWN_CHECKS)},
            "findings": [asdict(finding) for finding in self.findings],
            "seconds_by_operation": self.seconds_by_operation,
            "out_of_time": self.out_of_time,
        }

    def table(self, callers: Sequence[str]) -> str:
        """Requests per operation (rows) and caller (columns), and the statuses each operation answered."""
        labels = sorted({label for label, _ in self.cases})
        width = max(len(label) for label in labels)
        lines = [f"{'operation':<{width}}  cases  " + " ".join(callers) + "  statuses"]
        for label in labels:
            counts = " ".join(f"{self.cases[(label, name)]:>{len(name)}}" for name in callers)
            statuses = ",".join(
                f"{code}x{n}" for (op, code), n in sorted(self.statuses.items()) if op == label
            )
            lines.append(f"{label:<{width}}  {self.generated_for(label):>5}  {counts}  {statuses}")
        return "\n".join(lines)


class _OutOfTime(Exception):
    """Ends an operation's share of the time budget from inside the Hypothesis loop."""


@dataclass
class Fuzzer:
    """Sends every case of an operation as each caller and checks every answer."""

    base_url: str
    sessions: Sequence[CallerSession]
    secrets: Secrets
    tally: Tally
    # A path parameter or top-level body field of one of these names sometimes takes one of the real values,
    # so that cases reach existing jobs and agreements of every org, not only the 404 of made-up ids.
    known_values: Mapping[str, Sequence[str]] = field(default_factory=dict)
    max_examples: int = 25

    def fuzz(self, operation: schemathesis.APIOperation, *, seconds: float) -> None:
        """Up to ``max_examples`` cases of ``operation`` (a fixed seed), or as many as fit in ``seconds``."""
        label = operation.label
        started = time.monotonic()
        deadline = started + seconds
        overrides = {
            name: st.sampled_from([None, *values])
            for name, values in self.known_values.items()
            if name in operation.path_parameters or operation.body  # else it has no field of that name
        }

        @settings(
            max_examples=self.max_examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=(Phase.explicit, Phase.generate),  # nothing raises in here but _OutOfTime: no shrinking
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(*_strategies(operation)), chosen=st.fixed_dictionaries(overrides))
        def send_as_everyone(case: Case, chosen: dict[str, str | None]) -> None:
            if time.monotonic() > deadline:
                raise _OutOfTime
            for name, value in chosen.items():
                if value is not None:
                    _substitute(case, name, value)
            mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
            self.tally.generated[(label, mode)] += 1
            for session in self.sessions:
                self._send(case, session, label)

        try:
            send_as_everyone()
        except _OutOfTime:
            self.tally.out_of_time.append(label)
        self.tally.seconds_by_operation[label] = round(time.monotonic() - started, 2)

    def _send(self, case: Case, session: CallerSession, label: str) -> None:
        caller = session.caller
        response = session.send(case, self.base_url)
        self.tally.cases[(label, caller.label)] += 1
        self.tally.statuses[(label, response.status_code)] += 1
        problems: list[tuple[str, str]] = []
        for name in SCHEMATHESIS_CHECKS:
            try:
                case.validate_response(response, checks=[getattr(schemathesis.checks, name)])
            except FailureGroup as failed:
                problems.append((name, "; ".join(failure.title for failure in failed.exceptions)))
        for name, check in OWN_CHECKS.items():
            problem = check(caller, case, response, self.secrets)
            if problem is not None:
                problems.append((name, problem))
        for name, problem in problems:
            finding = Finding(
                name,
                label,
                caller.label,
                response.status_code,
                problem,
                session.reproduce(case, self.base_url),
            )
            self.tally.fail(finding)


def _substitute(case: Case, name: str, value: str) -> None:
    """Put ``value`` where ``case`` has a path parameter or a top-level body field called ``name``: as the
    string itself, as a one-item list, or as an object's only key (keeping the object's first value)."""
    if name in case.operation.path_parameters:
        case.path_parameters = {**(case.path_parameters or {}), name: value}
    body = case.body
    if not isinstance(body, dict) or name not in body:
        return
    current = body[name]
    if isinstance(current, str):
        body[name] = value
    elif isinstance(current, list):
        body[name] = [value]
    elif isinstance(current, dict) and current:
        body[name] = {value: next(iter(current.values()))}


def _strategies(operation: schemathesis.APIOperation) -> list[Any]:
    """Positive cases (valid by the schema) and, where the operation takes input, negative ones."""
    strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    if operation.body or operation.path_parameters or operation.query:
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    return strategies


def load_schema(document: dict[str, Any]) -> schemathesis.BaseSchema:
    """The schema as the coordinator publishes it (its /openapi.json), with no configuration file's say.

    pydantic writes its base64 fields as ``format: base64``, a format schemathesis does not know (it would
    generate any text, and nearly every "valid" case would stop at base64 decoding): it is registered here.
    Reproductions are not sanitized: cases carry no credentials (the caller's token is added when sent), and
    a field that merely looks secret ("evaluation_keys") must be reproduced as sent.
    """
    schemathesis.openapi.format(
        "base64", st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode("ascii"))
    )
    output = OutputConfig(sanitization=SanitizationConfig(enabled=False))
    return schemathesis.openapi.from_dict(document, config=schemathesis.Config(output=output))


def operations(schema: schemathesis.BaseSchema) -> list[schemathesis.APIOperation]:
    """Every operation in the schema. Raises schemathesis' error for one it cannot read."""
    return [result.ok() for result in schema.get_all_operations()]


def simplest_case(operation: schemathesis.APIOperation) -> Case:
    """A well-formed request for ``operation`` to send as each role: Hypothesis' first positive example,
    which is its simplest. Not shrunk further (shrinking a signed-head body took seconds)."""
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    quick = settings(database=None, derandomize=True, phases=(Phase.generate,))
    return find(strategy, lambda _case: True, settings=quick)
