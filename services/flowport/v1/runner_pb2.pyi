from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunRequest(_message.Message):
    __slots__ = ("workflow_id", "input", "session_id", "mode", "webhook_url", "version")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    input: _struct_pb2.Struct
    session_id: str
    mode: str
    webhook_url: str
    version: _struct_pb2.Value
    def __init__(self, workflow_id: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., session_id: _Optional[str] = ..., mode: _Optional[str] = ..., webhook_url: _Optional[str] = ..., version: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("output", "total_time", "run_id", "session_id", "usage", "status", "events_url", "version")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_URL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    output: str
    total_time: float
    run_id: str
    session_id: str
    usage: Usage
    status: str
    events_url: str
    version: int
    def __init__(self, output: _Optional[str] = ..., total_time: _Optional[float] = ..., run_id: _Optional[str] = ..., session_id: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., status: _Optional[str] = ..., events_url: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class RunStreamRequest(_message.Message):
    __slots__ = ("workflow_id", "input", "session_id", "webhook_url", "version")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    input: _struct_pb2.Struct
    session_id: str
    webhook_url: str
    version: _struct_pb2.Value
    def __init__(self, workflow_id: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., session_id: _Optional[str] = ..., webhook_url: _Optional[str] = ..., version: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class RunStreamResponse(_message.Message):
    __slots__ = ("run_started", "node_started", "node_finished", "token", "output", "error")
    RUN_STARTED_FIELD_NUMBER: _ClassVar[int]
    NODE_STARTED_FIELD_NUMBER: _ClassVar[int]
    NODE_FINISHED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    run_started: RunStarted
    node_started: NodeStarted
    node_finished: NodeFinished
    token: TokenChunk
    output: RunOutput
    error: RunError
    def __init__(self, run_started: _Optional[_Union[RunStarted, _Mapping]] = ..., node_started: _Optional[_Union[NodeStarted, _Mapping]] = ..., node_finished: _Optional[_Union[NodeFinished, _Mapping]] = ..., token: _Optional[_Union[TokenChunk, _Mapping]] = ..., output: _Optional[_Union[RunOutput, _Mapping]] = ..., error: _Optional[_Union[RunError, _Mapping]] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("run_id", "node_id", "input", "session_id", "version")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_id: str
    input: _struct_pb2.Struct
    session_id: str
    version: int
    def __init__(self, run_id: _Optional[str] = ..., node_id: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., session_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class NodeStarted(_message.Message):
    __slots__ = ("node_id", "name", "type")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    type: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class NodeFinished(_message.Message):
    __slots__ = ("node_id", "name", "type", "status", "time_spend", "error")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_SPEND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    type: str
    status: str
    time_spend: float
    error: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., status: _Optional[str] = ..., time_spend: _Optional[float] = ..., error: _Optional[str] = ...) -> None: ...

class TokenChunk(_message.Message):
    __slots__ = ("node_id", "content", "reasoning")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    content: str
    reasoning: str
    def __init__(self, node_id: _Optional[str] = ..., content: _Optional[str] = ..., reasoning: _Optional[str] = ...) -> None: ...

class RunOutput(_message.Message):
    __slots__ = ("output", "total_time", "run_id", "session_id", "usage")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    output: str
    total_time: float
    run_id: str
    session_id: str
    usage: Usage
    def __init__(self, output: _Optional[str] = ..., total_time: _Optional[float] = ..., run_id: _Optional[str] = ..., session_id: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class RunError(_message.Message):
    __slots__ = ("node_id", "code", "message", "run_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    code: int
    message: str
    run_id: str
    def __init__(self, node_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...
