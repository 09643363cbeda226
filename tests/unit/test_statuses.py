"""The table of error statuses: every kind has a row, a kind without one answers as its base,
and docs/api.md shows the table as it is."""

from __future__ import annotations

import re
from pathlib import Path

from google.rpc.code_pb2 import Code

from flowport import errors, statuses
from flowport.engine.nodes.workflow_node import TooDeep

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
# | `Kind` | when | `GRPC_CODE` | REST | LinkAI | `REASON` |
DOCUMENTED_ROW = re.compile(
    r"^\| `(\w+)` \| [^|]+ \| `(\w+)` \| (\d+) \| (\d+) \| `(\w+)` \|$", re.M
)


def test_every_domain_error_class_answers_from_the_table() -> None:
    kinds = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.FlowportError)
    }

    assert kinds == set(statuses.TABLE)


def test_a_kind_without_a_row_answers_as_its_nearest_base() -> None:
    assert statuses.of(TooDeep(5)) == statuses.TABLE[errors.InvalidArgument]
    assert statuses.of(errors.MissingScope("x")).linkai == 408
    assert statuses.of(errors.PermissionDenied("x")).linkai == 403


def test_a_missing_sub_workflow_is_the_service_failing_on_linkai() -> None:
    """LinkAI's 402 is an unknown app_code; a workflow node's missing workflow fails the run."""
    assert statuses.of(errors.NotFound("workflow wf_x not found")).linkai == 402
    assert statuses.of(errors.SubWorkflowNotFound("workflow wf_x not found")).linkai == 503


def test_reasons_are_unique() -> None:
    reasons = [row.reason for row in statuses.TABLE.values()]

    assert len(set(reasons)) == len(reasons)


def test_docs_show_the_table_as_it_is() -> None:
    documented = {
        kind: (code, int(rest), int(linkai), reason)
        for kind, code, rest, linkai, reason in DOCUMENTED_ROW.findall(DOCS.read_text("utf-8"))
    }

    assert documented == {
        kind.__name__: (Code.Name(row.grpc), row.rest, row.linkai, row.reason)
        for kind, row in statuses.TABLE.items()
    }
