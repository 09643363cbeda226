"""openapi/flowport.yaml is a valid OpenAPI document that names exactly the REST routes the
protos bind, so a route added to a proto without documenting it fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from flowport import statuses
from tests.http_bindings import http_bindings

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "flowport.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

Route = tuple[str, str]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def normalise(path: str) -> str:
    """`{name=pattern}` (google.api.http) as `{name}` (OpenAPI)."""
    return re.sub(r"\{([\w.]+)=[^}]*\}", r"{\1}", path)


def proto_routes() -> dict[Route, str]:
    """(HTTP method, path) -> RPC name, for every google.api.http binding of flowport.v1."""
    routes: dict[Route, str] = {}
    for binding in http_bindings():
        route = (binding.verb, normalise(binding.template))
        assert route not in routes, f"{route} is bound twice"
        routes[route] = binding.method.name
    return routes


def documented_routes(document: dict[str, Any]) -> dict[Route, dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_protos_bind_the_routes_the_document_lists() -> None:
    # The reader itself: the seed routes are there, the colon of custom methods kept.
    routes = proto_routes()
    assert routes[("POST", "/v1/api/workflow/run/{workflow_id}")] == "RunWorkflow"
    assert routes[("POST", "/v1/workflows/{id}:publish")] == "PublishWorkflow"
    assert normalise("/v1/{name=workflows/*}:run") == "/v1/{name}:run"


def test_every_bound_route_is_documented_and_nothing_else(document: dict[str, Any]) -> None:
    in_protos = set(proto_routes())
    in_document = set(documented_routes(document))

    assert in_protos - in_document == set(), "bound in a proto but not in openapi/flowport.yaml"
    assert in_document - in_protos == set(), "in openapi/flowport.yaml but bound by no proto"


def test_operation_ids_are_the_rpc_names(document: dict[str, Any]) -> None:
    routes = proto_routes()
    for route, operation in documented_routes(document).items():
        assert operation.get("operationId") == routes.get(route), route


def test_every_operation_documents_auth_and_rate_limit_errors(document: dict[str, Any]) -> None:
    assert document["security"] == [{"ApiKey": []}, {"Bearer": []}]
    responses = document["components"]["responses"]
    for route, operation in documented_routes(document).items():
        codes = operation["responses"]
        assert {"200", "401", "429"} <= set(codes), route
        rate_limited = responses[codes["429"]["$ref"].rsplit("/", 1)[-1]]
        assert rate_limited["headers"]["Retry-After"]["$ref"].endswith("/RetryAfter"), route


def test_linkai_route_documents_its_whole_code_table(document: dict[str, Any]) -> None:
    codes = documented_routes(document)[("POST", "/v1/workflow/run")]["responses"]

    # LinkAI's table, with 202 (a background run) and 422 (an Idempotency-Key reused).
    assert set(codes) == {
        "200", "202", "400", "401", "402", "403", "406", "408", "409", "413", "422", "429", "503"
    }  # fmt: skip


def test_blocking_run_routes_document_every_rest_status_of_the_error_table(
    document: dict[str, Any],
) -> None:
    routes = documented_routes(document)
    rest = {str(row.rest) for row in statuses.TABLE.values()}
    linkai = {str(row.linkai) for row in statuses.TABLE.values()}

    assert rest <= set(routes[("POST", "/v1/api/workflow/run/{workflow_id}")]["responses"])
    assert rest <= set(routes[("POST", "/v1/workflows/{workflow_id}:run")]["responses"])
    assert linkai <= set(routes[("POST", "/v1/workflow/run")]["responses"])
