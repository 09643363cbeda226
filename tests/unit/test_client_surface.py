"""The sync and async clients are one API: the same methods, with the same parameters."""

from __future__ import annotations

import inspect
import subprocess
import sys

from flowport.client import AsyncClient, Client


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in ("close", "aclose")
    }


def test_the_async_client_has_every_call_of_the_sync_one_with_its_parameters() -> None:
    sync, asynchronous = _methods(Client), _methods(AsyncClient)
    assert sorted(sync) == sorted(asynchronous)
    for name, signature in sync.items():
        assert list(signature.parameters) == list(asynchronous[name].parameters), name
        # Streams are iterated, not awaited; everything else is awaited.
        expected = name not in ("stream", "events")
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)) is expected, name


def test_the_client_imports_nothing_of_the_service() -> None:
    # A program that only calls Flowport loads neither gRPC nor the database layer.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, flowport.client; print(' '.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"grpc", "sqlalchemy", "sqlmodel", "flowport.engine", "flowport.storage"}.isdisjoint(
        loaded
    )
    assert "flowport.client" in loaded
