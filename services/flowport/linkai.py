"""LinkAI's workflow-run API, byte for byte: its request, argument mapping, codes and envelope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flowport import errors, jsonbody, statuses
from flowport.engine import InputSpec
from flowport.jsonbody import Pin, dumps
from flowport.modes import Mode

BODY_FIELDS = ("app_code", "args", "session_id", "mode", "webhook_url", "version")
# LinkAI's route answers with the outcome, or at once for a background run.
MODES = ("blocking", "async")
# LinkAI's system variables and the input type each one fills when the workflow does not
# declare it by name.
SYSTEM_ARGS = {"input_text": "text", "input_image": "image", "input_file": "file"}


@dataclass(frozen=True, slots=True)
class LinkAiRequest:
    app_code: str
    args: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    mode: Mode = "blocking"
    webhook_url: str | None = None
    # The version number or alias the call pins; None runs the newest.
    version: Pin = None


def parse_request(body: bytes) -> LinkAiRequest:
    data = jsonbody.read_object(
        body, fields=BODY_FIELDS, example='{"app_code": "...", "args": {...}}'
    )
    app_code = data.get("app_code")
    if app_code is None or app_code == "":
        raise errors.InvalidArgument.at("app_code", "required")
    if not isinstance(app_code, str):
        raise errors.InvalidArgument.at("app_code", "must be a string")
    async_run = jsonbody.optional_choice(data, "mode", MODES) == "async"
    return LinkAiRequest(
        app_code=app_code,
        args=jsonbody.optional_object(data, "args"),
        session_id=jsonbody.optional_session_id(data),
        mode="async" if async_run else "blocking",
        webhook_url=jsonbody.optional_webhook_url(data),
        version=jsonbody.pin(data.get("version")),
    )


def map_args(specs: Sequence[InputSpec], args: dict[str, Any]) -> dict[str, Any]:
    """LinkAI's `args` onto the workflow's inputs. An arg fills the input of its name. A system
    variable the workflow does not declare fills its first undeclared-by-caller input of the
    same kind (input_text a text input, ...), or is ignored when empty or when there is none,
    as LinkAI ignores variables a start node has switched off. Other unknown args stay and
    are refused by input validation, naming them."""
    declared = {spec.name for spec in specs}
    mapped: dict[str, Any] = {}
    for name, value in args.items():
        if name in declared or name not in SYSTEM_ARGS:
            mapped[name] = value
            continue
        target = next(
            (
                spec.name
                for spec in specs
                if spec.type == SYSTEM_ARGS[name]
                and spec.name not in args
                and spec.name not in mapped
            ),
            None,
        )
        if target is not None and value not in ("", None):
            mapped[target] = value
    return mapped


def success_body(*, output_text: str, session_id: str, run_id: str) -> bytes:
    data = {"output_text": output_text, "session_id": session_id, "run_id": run_id}
    return dumps({"success": True, "code": 200, "message": "success", "data": data})


def accepted_body(accepted: dict[str, str]) -> bytes:
    """A background run's answer: the run as accepted, in the envelope, code 202."""
    return dumps({"success": True, "code": 202, "message": "accepted", "data": accepted})


def error_body(error: errors.FlowportError) -> bytes:
    """The failure envelope: `code` is LinkAI's for the error's kind, and the answer's status."""
    code = statuses.of(error).linkai
    return dumps({"success": False, "code": code, "message": error.message, "data": None})
