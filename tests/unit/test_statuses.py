"""The table of error statuses: every kind has a row, and a kind without one answers as its base."""

from __future__ import annotations

from flowport import errors, statuses
from flowport.engine.nodes.workflow_node import TooDeep


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
