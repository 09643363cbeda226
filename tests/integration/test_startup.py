"""What `flowport serve` tells the person who starts it, and that two run side by side."""

from __future__ import annotations

from pathlib import Path

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import Stack


def _stack(data_dir: Path, **env: str) -> Stack:
    return Stack(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'flowport.db'}",
        llm_base_url=None,
        extra_env=env,
    )


def test_start_up_says_where_it_listens_and_nothing_from_libraries(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    stack.start()
    stack.stop()
    log = (tmp_path / "serve.log").read_text()
    lines = [line.split(": ", 1)[1] for line in log.splitlines() if ": " in line]
    assert lines[:6] == [
        f"REST and gRPC on http://127.0.0.1:{stack.http_port} (Envoy)",
        f"web console on http://127.0.0.1:{stack.http_port}/console/",
        f"gRPC service on 127.0.0.1:{stack.grpc_port} (1 worker)",
        f"Envoy admin on http://127.0.0.1:{stack.admin_port}",
        f"metrics on http://127.0.0.1:{stack.metrics_port}/metrics",
        f"database sqlite:///{tmp_path / 'flowport.db'}",
    ]
    # Alembic's plugin and migration lines, and gRPC's fork warning, are library chatter.
    assert "alembic" not in log
    assert "fork" not in log
    assert "stopping: draining runs" in log


def test_debug_lets_the_libraries_speak(tmp_path: Path) -> None:
    stack = _stack(tmp_path, FLOWPORT_LOG_LEVEL="debug")
    stack.start()
    stack.stop()
    assert "alembic.runtime.migration" in (tmp_path / "serve.log").read_text()


def test_two_instances_run_side_by_side_on_one_host_with_no_setting(tmp_path: Path) -> None:
    first, second = _stack(tmp_path / "first"), _stack(tmp_path / "second")
    first.start()
    try:
        second.start()
        try:
            for stack in (first, second):
                _, key = stack.create_key()
                with Api(stack.base_url, key) as api:
                    answer = api.run(api.publish(BMI), {"height": "1.8", "weight": 75})
                assert answer.json()["output"] == "您的BMI值是23.15"
        finally:
            assert second.stop() == 0
    finally:
        assert first.stop() == 0
