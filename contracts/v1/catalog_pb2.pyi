from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DatasetSummary(_message.Message):
    __slots__ = ("name", "description", "source", "row_count", "fields")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    source: str
    row_count: int
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., source: _Optional[str] = ..., row_count: _Optional[int] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("node", "datasets")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    node: str
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetSummary]
    def __init__(self, node: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[DatasetSummary, _Mapping]]] = ...) -> None: ...

class DescribeDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class ValueCount(_message.Message):
    __slots__ = ("value", "count")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    value: str
    count: int
    def __init__(self, value: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class FieldStatistics(_message.Message):
    __slots__ = ("name", "type", "non_null", "distinct", "min", "max", "mean", "min_text", "max_text", "mean_length", "top_values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NON_NULL_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MIN_TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_FIELD_NUMBER: _ClassVar[int]
    MEAN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TOP_VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    non_null: int
    distinct: int
    min: float
    max: float
    mean: float
    min_text: str
    max_text: str
    mean_length: float
    top_values: _containers.RepeatedCompositeFieldContainer[ValueCount]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., non_null: _Optional[int] = ..., distinct: _Optional[int] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., min_text: _Optional[str] = ..., max_text: _Optional[str] = ..., mean_length: _Optional[float] = ..., top_values: _Optional[_Iterable[_Union[ValueCount, _Mapping]]] = ...) -> None: ...

class DatasetDescription(_message.Message):
    __slots__ = ("summary", "statistics", "mock_rows")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    MOCK_ROWS_FIELD_NUMBER: _ClassVar[int]
    summary: DatasetSummary
    statistics: _containers.RepeatedCompositeFieldContainer[FieldStatistics]
    mock_rows: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    def __init__(self, summary: _Optional[_Union[DatasetSummary, _Mapping]] = ..., statistics: _Optional[_Iterable[_Union[FieldStatistics, _Mapping]]] = ..., mock_rows: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...
