"""The workflow engine: definitions, input validation, templates, node kinds and the DAG runner."""

from flowport.engine.definition import (
    CompiledWorkflow,
    InputSpec,
    WorkflowDefinition,
    compile_workflow,
    parse_definition,
)
from flowport.engine.events import (
    NodeFinished,
    NodeStarted,
    RunEvent,
    RunFailed,
    RunStarted,
    RunSucceeded,
    Token,
)
from flowport.engine.inputs import validate_inputs
from flowport.engine.llm import LlmClient, OpenAiChat, TokenUsage, create_llm_client
from flowport.engine.nodes import WorkflowLoader
from flowport.engine.runner import execute, run_now

__all__ = [
    "CompiledWorkflow",
    "InputSpec",
    "LlmClient",
    "NodeFinished",
    "NodeStarted",
    "OpenAiChat",
    "RunEvent",
    "RunFailed",
    "RunStarted",
    "RunSucceeded",
    "Token",
    "TokenUsage",
    "WorkflowDefinition",
    "WorkflowLoader",
    "compile_workflow",
    "create_llm_client",
    "execute",
    "parse_definition",
    "run_now",
    "validate_inputs",
]
