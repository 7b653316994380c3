"""THE GATE: the one chain of gRPC server interceptors every call on a node passes.

    authenticate -> decide -> record -> handle

Each step is an interceptor that wraps the next one's behaviour; what a step learns about the call (who is
asking, what was decided) travels to the next in a ``ContextVar``. A step that refuses a call does not end it:
it marks the call denied and passes it on, so that the record step writes the denial into the audit log before
the call is aborted. Only an allowed call reaches its handler, and the handler receives a *grant*: the only
object through which it can reach the node's data (see ``node/grants.py``).

The record step writes the entry after the handler has built its response and before the response leaves the
node: the entry then carries the response digest, and the effects of the call (budget charges, a stored
agreement) commit in the same transaction. If the entry cannot be written, the response is dropped and the
caller gets UNAVAILABLE: no access without its entry.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError, Message

from crypto import Principal
from node.authn import AuthenticationFailed, Authenticator
from node.grants import Grant, GrantFactory, HandlerError
from node.recorder import AuditUnavailable, CallRecord, Recorder, RecordRefused
from node.rpc_table import INFRASTRUCTURE, RULES, MalformedRequest, MethodRule, RequestFacts
from node.state import REVEAL_RECORDS
from policies.decision import Decision, Outcome

log = logging.getLogger(__name__)

Behaviour = Callable[[Any, grpc.ServicerContext], Any]

_OUTCOME_STATUS = {
    Outcome.DENY_UNAUTHORIZED: grpc.StatusCode.PERMISSION_DENIED,
    Outcome.DENY_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Outcome.DENY_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
}


@dataclass(frozen=True)
class UnreadableRequest:
    """Stands in for a request the gate could not decode, so that it is refused and recorded, not dropped."""

    reason: str
    status: grpc.StatusCode
    digest: str


@dataclass
class GateCall:
    """What the gate has learnt about one call so far."""

    method: str
    rule: MethodRule
    principal: Principal | None = None
    facts: RequestFacts = field(default_factory=RequestFacts)
    decision: Decision | None = None
    request_digest: str = ""
    denied_status: grpc.StatusCode | None = None
    denied_reason: str = ""
    aborted: bool = False

    def deny(self, status: grpc.StatusCode, reason: str) -> None:
        if self.denied_status is None:  # the first refusal is the one the caller needs to hear
            self.denied_status, self.denied_reason = status, reason

    def abort(self, context: grpc.ServicerContext, status: grpc.StatusCode, reason: str) -> NoReturn:
        self.aborted = True
        context.abort(status, reason)
        raise AssertionError("unreachable: context.abort raises")


_current_call: ContextVar[GateCall] = ContextVar("gate_call")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Step(grpc.ServerInterceptor):
    """Wraps the unary-unary behaviour of every method in the table; refuses what the table does not list."""

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or method in INFRASTRUCTURE:
            return handler
        rule = RULES.get(method)
        if rule is None or handler.unary_unary is None:
            return _refusal(grpc.StatusCode.PERMISSION_DENIED, f"{method} is not in this node's gate table")
        return self.wrap(handler, method, rule)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str, rule: MethodRule) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            self.step(handler.unary_unary, method, rule),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def step(self, behaviour: Behaviour, method: str, rule: MethodRule) -> Behaviour:
        raise NotImplementedError


def _refusal(status: grpc.StatusCode, reason: str) -> grpc.RpcMethodHandler:
    def refuse(_request: Any, context: grpc.ServicerContext) -> None:
        context.abort(status, reason)

    return grpc.unary_unary_rpc_method_handler(refuse)


class AuthenticateStep(_Step):
    """Who is asking: the mTLS peer certificate, and the signed token bound to it."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    def wrap(self, handler: grpc.RpcMethodHandler, method: str, rule: MethodRule) -> grpc.RpcMethodHandler:
        decode = handler.request_deserializer
        limit = rule.max_request_bytes
        short_name = method.rsplit("/", 1)[-1]

        def deserialize(raw: bytes) -> Message | UnreadableRequest:
            # Decoding here rather than in grpc lets a malformed or oversized request be refused with a reason
            # and recorded like any other denial.
            if len(raw) > limit:
                return UnreadableRequest(
                    f"the request is {len(raw):,} bytes; {short_name} accepts at most {limit:,}",
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    _digest(raw),
                )
            try:
                return decode(raw)
            except DecodeError:
                return UnreadableRequest(
                    f"the request is not a valid {short_name} message",
                    grpc.StatusCode.INVALID_ARGUMENT,
                    _digest(raw),
                )

        return grpc.unary_unary_rpc_method_handler(
            self.step(handler.unary_unary, method, rule),
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )

    def step(self, behaviour: Behaviour, method: str, rule: MethodRule) -> Behaviour:
        def authenticate(request: Any, context: grpc.ServicerContext) -> Any:
            call = GateCall(method, rule)
            token = _current_call.set(call)
            try:
                try:
                    call.principal = self._authenticator.authenticate(context)
                except AuthenticationFailed as failure:
                    call.principal = failure.peer
                    call.deny(grpc.StatusCode.UNAUTHENTICATED, failure.reason)
                if isinstance(request, UnreadableRequest):
                    call.request_digest = request.digest
                    call.deny(request.status, request.reason)
                else:
                    call.request_digest = _digest(request.SerializeToString(deterministic=True))
                return behaviour(request, context)
            except Exception:
                if call.aborted:  # a refusal on its way out, not a failure
                    raise
                # A fault in the gate itself: nothing was served; say so without leaking the fault's text.
                log.exception("gate failure in %s", method)
                context.abort(grpc.StatusCode.INTERNAL, "the node failed to serve this call")
            finally:
                _current_call.reset(token)

        return authenticate


class DecideStep(_Step):
    """Whether it may be asked now: the node's policy point over the request's facts."""

    def __init__(self, decide: Callable[[Principal, MethodRule, RequestFacts, datetime], Decision]) -> None:
        self._decide = decide

    def step(self, behaviour: Behaviour, method: str, rule: MethodRule) -> Behaviour:
        def decide(request: Any, context: grpc.ServicerContext) -> Any:
            call = _current_call.get()
            if call.denied_status is None and call.principal is not None:
                try:
                    call.facts = rule.read(request)
                except MalformedRequest as malformed:
                    call.deny(grpc.StatusCode.INVALID_ARGUMENT, malformed.reason)
                else:
                    call.decision = self._decide(call.principal, rule, call.facts, datetime.now(UTC))
                    if not call.decision.allowed:
                        call.deny(
                            _OUTCOME_STATUS.get(call.decision.outcome, grpc.StatusCode.PERMISSION_DENIED),
                            call.decision.reason,
                        )
            return behaviour(request, context)

        return decide


class RecordStep(_Step):
    """What was asked: one durable audit entry per call, allowed or denied, before any response leaves."""

    def __init__(self, recorder: Recorder, grants: GrantFactory) -> None:
        self._recorder = recorder
        self._grants = grants

    def step(self, behaviour: Behaviour, method: str, rule: MethodRule) -> Behaviour:
        def record(request: Any, context: grpc.ServicerContext) -> Any:
            call = _current_call.get()
            if call.denied_status is not None or call.decision is None or call.principal is None:
                # Fail closed: a call that reached here undecided is refused like a denied one.
                status = call.denied_status or grpc.StatusCode.PERMISSION_DENIED
                reason = call.denied_reason or "the node reached no decision on this call"
                self._write(call, allowed=False, status=status, reason=reason, context=context)
                call.abort(context, status, reason)
            grant = self._grants.grant_for(call.principal, rule.action, call.facts, call.decision)
            failure: HandlerError | None = None
            try:
                response = _with_grant(grant, behaviour, request, context)
            except HandlerError as error:
                failure = error
            except Exception:
                log.exception("handler of %s failed", method)
                failure = HandlerError(grpc.StatusCode.INTERNAL, "the node failed to serve this call")
            if failure is not None:
                self._write(
                    call, allowed=False, status=failure.status, reason=failure.reason, context=context
                )
                call.abort(context, failure.status, failure.reason)
            response_digest = _digest(response.SerializeToString(deterministic=True))
            try:
                self._recorder.record(
                    self._record_of(
                        call,
                        allowed=True,
                        status=grpc.StatusCode.OK,
                        reason=call.decision.reason,
                        response_digest=response_digest,
                        charges=grant.charges,
                    ),
                    effects=grant.effects,
                )
            except RecordRefused as refused:
                # An effect (a budget charge) was refused inside the audit transaction: the call becomes a
                # denial, written as such, and the response it had built is dropped.
                self._write(
                    call, allowed=False, status=refused.status, reason=refused.reason, context=context
                )
                call.abort(context, refused.status, refused.reason)
            except AuditUnavailable:
                log.exception("audit write failed for %s", method)
                call.abort(context, grpc.StatusCode.UNAVAILABLE, _UNRECORDED)
            return response

        return record

    def _record_of(
        self,
        call: GateCall,
        *,
        allowed: bool,
        status: grpc.StatusCode,
        reason: str,
        response_digest: str = "",
        charges: dict[str, int] | None = None,
    ) -> CallRecord:
        return CallRecord(
            method=call.method,
            action=str(call.rule.action),
            principal=call.principal,
            facts=call.facts,
            allowed=allowed,
            status=status.name,
            reason=reason,
            request_digest=call.request_digest,
            response_digest=response_digest,
            charges={**_charges(call.decision), **(charges or {})} if allowed else {},
        )

    def _write(
        self,
        call: GateCall,
        *,
        allowed: bool,
        status: grpc.StatusCode,
        reason: str,
        context: grpc.ServicerContext,
    ) -> None:
        try:
            self._recorder.record(self._record_of(call, allowed=allowed, status=status, reason=reason))
        except (AuditUnavailable, RecordRefused):
            log.exception("audit write failed for a denial of %s", call.method)
            call.abort(context, grpc.StatusCode.UNAVAILABLE, _UNRECORDED)


def _charges(decision: Decision | None) -> dict[str, int]:
    """What an allowed call spends, as its audit entry states it."""
    records = decision.obligations.charge_reveal_records if decision else 0
    return {REVEAL_RECORDS: records} if records else {}


_UNRECORDED = (
    "the node could not record this call in its audit log, so it refused to serve it; try again later"
)

_current_grant: ContextVar[Grant] = ContextVar("gate_grant")


def _with_grant(grant: Grant, behaviour: Behaviour, request: Any, context: grpc.ServicerContext) -> Any:
    token = _current_grant.set(grant)
    try:
        return behaviour(request, context)
    finally:
        _current_grant.reset(token)


def current_grant() -> Grant:
    """The grant of the call being handled; handlers take their data access from here and nowhere else.

    Raises LookupError outside a gated call, so a handler wired without the gate cannot reach any data.
    """
    return _current_grant.get()


def gate_interceptors(
    authenticator: Authenticator, decide: Callable[..., Decision], recorder: Recorder, grants: GrantFactory
) -> list[grpc.ServerInterceptor]:
    """The chain, in the one order that is safe.

    Authenticate first, because a decision about an unknown caller means nothing; decide before record so the
    entry says what was decided and why; record last, around the handler, so the entry carries the response
    digest and commits together with the call's budget charges, before the response is released.
    """
    return [AuthenticateStep(authenticator), DecideStep(decide), RecordStep(recorder, grants)]
