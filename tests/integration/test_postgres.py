"""The whole stack on PostgreSQL: publish, run, read the record, and survive a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowport.demo import BMI
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import Stack

pytestmark = pytest.mark.postgres


def test_stack_on_postgres_survives_a_restart(
    tmp_path: Path, database: str, fake_llm_server: FakeLlm
) -> None:
    stack = Stack(data_dir=tmp_path, database_url=database, llm_base_url=fake_llm_server.base_url)
    stack.start()
    try:
        _, key = stack.create_key()
        with Api(stack.base_url, key) as api:
            workflow_id = api.publish(BMI)
            run_id = api.run(workflow_id, {"height": "1.8", "weight": "75"}).json()["run_id"]
    finally:
        assert stack.stop() == 0

    stack.start()
    try:
        with Api(stack.base_url, key) as api:
            assert api.get(f"/v1/runs/{run_id}").json()["output"] == "您的BMI值是23.15"
            again = api.run(workflow_id, {"height": "1.8", "weight": "75"})
            assert again.json()["output"] == "您的BMI值是23.15"
    finally:
        stack.stop()
