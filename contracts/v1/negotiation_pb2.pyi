from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgreementRequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGREEMENT_REQUEST_STATE_UNSPECIFIED: _ClassVar[AgreementRequestState]
    AGREEMENT_REQUEST_STATE_PENDING: _ClassVar[AgreementRequestState]
    AGREEMENT_REQUEST_STATE_APPROVED: _ClassVar[AgreementRequestState]
    AGREEMENT_REQUEST_STATE_REJECTED: _ClassVar[AgreementRequestState]
AGREEMENT_REQUEST_STATE_UNSPECIFIED: AgreementRequestState
AGREEMENT_REQUEST_STATE_PENDING: AgreementRequestState
AGREEMENT_REQUEST_STATE_APPROVED: AgreementRequestState
AGREEMENT_REQUEST_STATE_REJECTED: AgreementRequestState

class ListOffersRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("offer_id", "dataset", "offer_json", "offer_digest")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OFFER_JSON_FIELD_NUMBER: _ClassVar[int]
    OFFER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    dataset: str
    offer_json: bytes
    offer_digest: str
    def __init__(self, offer_id: _Optional[str] = ..., dataset: _Optional[str] = ..., offer_json: _Optional[bytes] = ..., offer_digest: _Optional[str] = ...) -> None: ...

class ListOffersResponse(_message.Message):
    __slots__ = ("offers",)
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[Offer]
    def __init__(self, offers: _Optional[_Iterable[_Union[Offer, _Mapping]]] = ...) -> None: ...

class RequestAgreementRequest(_message.Message):
    __slots__ = ("proposal_json",)
    PROPOSAL_JSON_FIELD_NUMBER: _ClassVar[int]
    proposal_json: bytes
    def __init__(self, proposal_json: _Optional[bytes] = ...) -> None: ...

class AgreementRequestStatus(_message.Message):
    __slots__ = ("request_id", "state", "agreement_id", "agreement_json", "reason", "consumer_org", "offer_id", "purpose")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORG_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    state: AgreementRequestState
    agreement_id: str
    agreement_json: bytes
    reason: str
    consumer_org: str
    offer_id: str
    purpose: str
    def __init__(self, request_id: _Optional[str] = ..., state: _Optional[_Union[AgreementRequestState, str]] = ..., agreement_id: _Optional[str] = ..., agreement_json: _Optional[bytes] = ..., reason: _Optional[str] = ..., consumer_org: _Optional[str] = ..., offer_id: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class GetAgreementRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ListAgreementRequestsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAgreementRequestsResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AgreementRequestStatus]
    def __init__(self, requests: _Optional[_Iterable[_Union[AgreementRequestStatus, _Mapping]]] = ...) -> None: ...

class DecideAgreementRequestRequest(_message.Message):
    __slots__ = ("request_id", "approve", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    approve: bool
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., approve: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeAgreementRequest(_message.Message):
    __slots__ = ("revocation_json",)
    REVOCATION_JSON_FIELD_NUMBER: _ClassVar[int]
    revocation_json: bytes
    def __init__(self, revocation_json: _Optional[bytes] = ...) -> None: ...

class RevokeAgreementResponse(_message.Message):
    __slots__ = ("agreement_id", "revoked_at")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    revoked_at: str
    def __init__(self, agreement_id: _Optional[str] = ..., revoked_at: _Optional[str] = ...) -> None: ...
