"""The query parameters Envoy lets through (flowport.routes, read from the protos) are the
ones openapi/flowport.yaml documents, route by route."""

from __future__ import annotations

from importlib import resources

import yaml

from flowport.envoy import TRANSCODED_SERVICES
from flowport.routes import rest_routes
from tests.unit.test_openapi_routes import DOCUMENT, HTTP_METHODS, normalise


def test_query_parameters_are_the_documented_ones() -> None:
    descriptor = resources.files("flowport.v1").joinpath("flowport.binpb").read_bytes()
    routes = rest_routes(descriptor, TRANSCODED_SERVICES)
    taken = {
        (route.verb, normalise(route.template)): {
            name for name in route.query_parameters if "_" in name or name.islower()
        }
        for route in routes
    }
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    documented = {
        (method.upper(), path): {
            p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"
        }
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }
    assert taken == documented
    assert taken[("GET", "/v1/runs/{run_id}/events")] == {"after"}


def test_a_route_pattern_matches_its_paths_only() -> None:
    descriptor = resources.files("flowport.v1").joinpath("flowport.binpb").read_bytes()
    patterns = {
        (r.verb, r.template): r.lua_pattern() for r in rest_routes(descriptor, TRANSCODED_SERVICES)
    }
    assert patterns[("POST", "/v1/workflows/{workflow_id}:run")] == "^/v1/workflows/[^/]+:run$"
    assert patterns[("GET", "/v1/runs/{run_id}/events")] == "^/v1/runs/[^/]+/events$"
    assert patterns[("POST", "/v1/api/workflow/run/{workflow_id}")] == (
        "^/v1/api/workflow/run/[^/]+$"
    )
