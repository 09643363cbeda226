"""GET /v1/runs: the account's runs, newest first, filtered by workflow, status and time,
a page at a time, without another account's."""

from __future__ import annotations

from datetime import datetime

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import Stack

BMI_INPUT = {"height": 2, "weight": 80}


def _ids(api: Api, query: str = "") -> list[str]:
    answer = api.get(f"/v1/runs{query}")
    assert answer.status_code == 200, answer.text
    return [run["id"] for run in answer.json()["runs"]]


def test_runs_are_listed_newest_first_and_filtered(stack: Stack, api: Api) -> None:
    bmi, other = api.publish(BMI), api.publish({**BMI, "name": "Other"})
    ran = [api.run(bmi, BMI_INPUT).json()["run_id"] for _ in range(3)]
    failed = api.run(bmi, {"height": 0, "weight": 80})  # divides by zero: the run fails
    assert failed.status_code == 500, failed.text
    elsewhere = api.run(other, BMI_INPUT).json()["run_id"]

    listed = api.get("/v1/runs").json()
    assert listed["next_page_token"] == ""
    runs = listed["runs"]
    assert runs[0]["id"] == elsewhere
    assert set(ran) | {elsewhere} <= {run["id"] for run in runs} and len(runs) == 5
    started = [datetime.fromisoformat(run["started_at"]) for run in runs]
    assert started == sorted(started, reverse=True)
    # Records without node details.
    assert all(run["nodes"] == [] for run in runs)
    assert runs[0]["version"] == 1 and runs[0]["output"] == "您的BMI值是20.0"

    assert _ids(api, f"?workflow_id={other}") == [elsewhere]
    assert _ids(api, f"?workflow_id={bmi}&status=succeeded") == ran[::-1]
    failures = api.get(f"/v1/runs?status=failed&workflow_id={bmi}").json()["runs"]
    assert len(failures) == 1 and failures[0]["status"] == "failed"

    # A time window, on the runs' own start times.
    third = next(run for run in runs if run["id"] == ran[2])
    moment = third["started_at"]
    assert ran[2] not in _ids(api, f"?after={moment}")
    assert _ids(api, f"?before={moment}&workflow_id={bmi}") == [ran[1], ran[0]]
    assert _ids(api, "?after=2999-01-01T00:00:00Z") == []

    # Another account sees none of them.
    _, stranger_key = stack.create_key()
    with Api(stack.base_url, stranger_key) as stranger:
        assert _ids(stranger) == []
        assert _ids(stranger, f"?workflow_id={bmi}") == []


def test_pages_walk_every_run_once(api: Api) -> None:
    bmi = api.publish(BMI)
    ran = [api.run(bmi, BMI_INPUT).json()["run_id"] for _ in range(5)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        answer = api.get(f"/v1/runs?page_size=2&page_token={token}").json()
        seen += [run["id"] for run in answer["runs"]]
        pages += 1
        token = answer["next_page_token"]
        if not token:
            break
    assert seen == ran[::-1] and pages == 3


def test_bad_parameters_are_refused_naming_them(api: Api) -> None:
    for query, name in (
        ("?status=done", "status"),
        ("?after=yesterday", "after"),
        ("?before=2026-12-07T10:00:00", "before"),  # no offset
        ("?page_size=201", "page_size"),
        ("?page_size=-1", "page_size"),
        ("?page_token=bm9wZQ", "page_token"),
    ):
        answer = api.get(f"/v1/runs{query}")
        assert answer.status_code == 400, (query, answer.text)
        assert answer.json()["message"].startswith(f"{name}: "), answer.text
