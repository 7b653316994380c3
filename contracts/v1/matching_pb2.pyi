from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CkksParameters(_message.Message):
    __slots__ = ("poly_modulus_degree", "coeff_modulus_bits", "scale_bits")
    POLY_MODULUS_DEGREE_FIELD_NUMBER: _ClassVar[int]
    COEFF_MODULUS_BITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    poly_modulus_degree: int
    coeff_modulus_bits: _containers.RepeatedScalarFieldContainer[int]
    scale_bits: int
    def __init__(self, poly_modulus_degree: _Optional[int] = ..., coeff_modulus_bits: _Optional[_Iterable[int]] = ..., scale_bits: _Optional[int] = ...) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("agreement_id", "dataset", "purpose", "parameters", "evaluation_keys", "query", "projection", "query_grant_json")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_KEYS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    QUERY_GRANT_JSON_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    dataset: str
    purpose: str
    parameters: CkksParameters
    evaluation_keys: bytes
    query: bytes
    projection: bytes
    query_grant_json: str
    def __init__(self, agreement_id: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., parameters: _Optional[_Union[CkksParameters, _Mapping]] = ..., evaluation_keys: _Optional[bytes] = ..., query: _Optional[bytes] = ..., projection: _Optional[bytes] = ..., query_grant_json: _Optional[str] = ...) -> None: ...

class MatchResponse(_message.Message):
    __slots__ = ("score_blocks", "record_ids", "score_noise", "queries_left_today", "queries_left_total")
    SCORE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    RECORD_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_NOISE_FIELD_NUMBER: _ClassVar[int]
    QUERIES_LEFT_TODAY_FIELD_NUMBER: _ClassVar[int]
    QUERIES_LEFT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    score_blocks: _containers.RepeatedScalarFieldContainer[bytes]
    record_ids: _containers.RepeatedScalarFieldContainer[str]
    score_noise: float
    queries_left_today: int
    queries_left_total: int
    def __init__(self, score_blocks: _Optional[_Iterable[bytes]] = ..., record_ids: _Optional[_Iterable[str]] = ..., score_noise: _Optional[float] = ..., queries_left_today: _Optional[int] = ..., queries_left_total: _Optional[int] = ...) -> None: ...
