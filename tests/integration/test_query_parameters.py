"""A path means what it says: on every REST route, a query parameter naming a field the path
binds, or any other the route does not document, is a 400 naming it. Otherwise Envoy's
transcoder would let `POST /v1/api/workflow/run/A?workflow_id=B` run B, and a mesh that
authorizes by path would have allowed A.

The routes are read from the protos' google.api.http annotations, so a route added later is
walked here without a line changed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import httpx
import pytest

from flowport.demo import BMI
from tests.http_bindings import http_bindings
from tests.integration.client import Api, sse_frames

VARIABLE = re.compile(r"\{([\w.]+)(?:=[^}]*)?\}")
# A field the routes that take query parameters document (docs/api.md, Query parameters).
DOCUMENTED = {
    ("GET", "/v1/runs/{run_id}/events"): {"after"},
    ("GET", "/v1/audit"): {"limit", "page_token"},
    ("GET", "/v1/workflows/{id}/schema"): {"version"},
    ("GET", "/v1/runs"): {"workflow_id", "status", "after", "before", "page_size", "page_token"},
    ("GET", "/v1/workflows/{id}/openapi.json"): {"version"},
}


@dataclass(frozen=True)
class Binding:
    verb: str
    template: str
    body: str
    request_fields: tuple[tuple[str, str], ...]  # (proto name, JSON name)

    @property
    def path_fields(self) -> list[str]:
        return VARIABLE.findall(self.template)

    def path(self, value: str = "x1") -> str:
        return VARIABLE.sub(value, self.template)

    def __str__(self) -> str:
        return f"{self.verb} {self.template}"


def bindings() -> list[Binding]:
    return [
        Binding(
            found.verb,
            found.template,
            found.body,
            tuple((f.name, f.json_name) for f in found.method.input_type.fields),
        )
        for found in http_bindings()
    ]


ROUTES = bindings()


def send(api: Api, route: Binding, query: str, path_value: str = "x1") -> httpx.Response:
    body = None if route.verb in ("GET", "DELETE") else b"{}"
    return api.http.request(
        route.verb, f"{route.path(path_value)}?{query}", content=body, headers=api.headers
    )


def refused_naming(response: httpx.Response, name: str) -> bool:
    """400 in the route's own error body, whose message names the parameter."""
    assert response.status_code == 400, (response.status_code, response.text)
    answer = response.json()
    assert answer["code"] == 400, answer
    return name in answer["message"]


def test_the_walk_covers_every_surface() -> None:
    walked = {str(route) for route in ROUTES}
    assert "POST /v1/api/workflow/run/{workflow_id}" in walked  # FlowAI
    assert "POST /v1/workflow/run" in walked  # LinkAI
    assert "GET /v1/runs/{run_id}" in walked  # typed
    assert len(walked) == len(ROUTES) >= 16


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_a_query_parameter_the_route_does_not_document_is_refused(api: Api, route: Binding) -> None:
    documented = DOCUMENTED.get((route.verb, route.template), set())
    # Every field the path binds, in both spellings, and percent-encoded.
    for name in route.path_fields:
        json_name = dict(route.request_fields)[name]
        for spelling in dict.fromkeys((name, json_name)):
            assert refused_naming(send(api, route, f"{spelling}=other"), spelling)
        encoded = name.replace("_", "%5F")
        assert refused_naming(send(api, route, f"{encoded}=other"), encoded)
    # Every other field of the request that is not documented (a body field, say).
    for name, _ in route.request_fields:
        if name not in documented and name not in route.path_fields:
            assert refused_naming(send(api, route, f"{name}=1"), name)
    # A name that is no field at all, alone or after a documented one.
    assert refused_naming(send(api, route, "undocumented=1"), "undocumented")
    for name in documented:
        assert refused_naming(send(api, route, f"{name}=1&extra=1"), "extra")


def test_linkai_envelope_and_a_hostile_name_stay_well_formed(api: Api) -> None:
    response = api.http.post('/v1/workflow/run?"},x=1', content=b"{}", headers=api.headers)
    assert response.status_code == 400
    answer = response.json()
    assert answer["success"] is False and answer["data"] is None
    assert "%22%7D%2Cx" in answer["message"]


def test_the_path_is_what_runs(api: Api) -> None:
    """The attack the rule exists for: the path's workflow, not the query's, or nothing."""
    runnable = api.publish(BMI)
    other = api.publish(BMI)
    response = api.post(
        f"/v1/api/workflow/run/{runnable}?workflow_id={other}",
        {"input": {"height": 2, "weight": 80}},
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "message": "query parameter workflow_id is not accepted by POST "
        "/v1/api/workflow/run/{workflow_id} (it takes no query parameters)",
    }
    run_id = api.run(runnable, {"height": 2, "weight": 80}).json()["run_id"]
    response = api.get(f"/v1/runs/{run_id}?run_id=run_someone_else")
    assert response.status_code == 400
    assert "run_id" in response.json()["message"]


def test_documented_query_parameters_keep_working(api: Api) -> None:
    workflow_id = api.publish(BMI)
    run_id = api.run(workflow_id, {"height": 2, "weight": 80}).json()["run_id"]
    with api.run_events(run_id) as source:
        every = [int(sse.id) for sse in sse_frames(source)]
    with api.http.stream(
        "GET", f"/v1/runs/{run_id}/events?after=3", headers=api.headers
    ) as response:
        assert response.status_code == 200
        ids = [
            int(line.removeprefix("id: "))
            for line in response.iter_lines()
            if line.startswith("id: ")
        ]
    assert ids == every[3:] and ids
    # A query with no parameters, or empty ones, names none to refuse.
    assert api.get(f"/v1/runs/{run_id}?").status_code == 200
    assert json.loads(api.get(f"/v1/runs/{run_id}?&").text)["id"] == run_id
