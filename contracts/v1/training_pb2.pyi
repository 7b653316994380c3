from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TrainRequest(_message.Message):
    __slots__ = ("agreement_id", "dataset", "purpose", "job_grant_json", "round", "cohort_size", "weights")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    JOB_GRANT_JSON_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    COHORT_SIZE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    dataset: str
    purpose: str
    job_grant_json: str
    round: int
    cohort_size: int
    weights: bytes
    def __init__(self, agreement_id: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., job_grant_json: _Optional[str] = ..., round: _Optional[int] = ..., cohort_size: _Optional[int] = ..., weights: _Optional[bytes] = ...) -> None: ...

class TrainResponse(_message.Message):
    __slots__ = ("weights_delta", "num_examples", "train_loss", "epsilon_spent", "epsilon_budget", "noise_multiplier", "delta")
    WEIGHTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_BUDGET_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    weights_delta: bytes
    num_examples: int
    train_loss: float
    epsilon_spent: float
    epsilon_budget: float
    noise_multiplier: float
    delta: float
    def __init__(self, weights_delta: _Optional[bytes] = ..., num_examples: _Optional[int] = ..., train_loss: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., epsilon_budget: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("agreement_id", "dataset", "purpose", "job_grant_json", "weights")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    JOB_GRANT_JSON_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    dataset: str
    purpose: str
    job_grant_json: str
    weights: bytes
    def __init__(self, agreement_id: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., job_grant_json: _Optional[str] = ..., weights: _Optional[bytes] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("count", "sum_squared_error", "sum_target", "sum_target_squared", "spearman", "sum_prediction", "sum_prediction_squared", "sum_product")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_SQUARED_ERROR_FIELD_NUMBER: _ClassVar[int]
    SUM_TARGET_FIELD_NUMBER: _ClassVar[int]
    SUM_TARGET_SQUARED_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_FIELD_NUMBER: _ClassVar[int]
    SUM_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    SUM_PREDICTION_SQUARED_FIELD_NUMBER: _ClassVar[int]
    SUM_PRODUCT_FIELD_NUMBER: _ClassVar[int]
    count: int
    sum_squared_error: float
    sum_target: float
    sum_target_squared: float
    spearman: float
    sum_prediction: float
    sum_prediction_squared: float
    sum_product: float
    def __init__(self, count: _Optional[int] = ..., sum_squared_error: _Optional[float] = ..., sum_target: _Optional[float] = ..., sum_target_squared: _Optional[float] = ..., spearman: _Optional[float] = ..., sum_prediction: _Optional[float] = ..., sum_prediction_squared: _Optional[float] = ..., sum_product: _Optional[float] = ...) -> None: ...
