"""Keys for teams across replicas: two `flowport serve` processes, each with its Envoy, on one
PostgreSQL database. Whichever replica a call reaches, an expired key is refused, a rotated
key's old secret works for its grace and not a moment past it, a key's list of workflows
holds, and the audit log is the same."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import Stack, wait_for
from tests.integration.test_keys_for_teams import UNAUTHENTICATED, attempt

pytestmark = pytest.mark.postgres

SURFACES = ("flowai", "linkai", "grpc-direct", "grpc-envoy")


@pytest.fixture
def replicas(tmp_path: Path, database: str) -> Iterator[tuple[Stack, Stack]]:
    a, b = (Stack(data_dir=tmp_path / n, database_url=database, llm_base_url=None) for n in "ab")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for replica in (a, b):
            replica.stop()


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.05)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_expiry_rotation_and_lists_hold_on_both_replicas(replicas: tuple[Stack, Stack]) -> None:
    a, b = replicas
    _, admin = a.create_key()
    with Api(a.base_url, admin) as on_a, Api(b.base_url, admin) as on_b:
        bmi, other = on_a.publish(BMI), on_a.publish({**BMI, "name": "BMI 2"})
        expires = datetime.now(UTC) + timedelta(seconds=10)
        short = on_a.post(
            "/v1/keys", {"name": "short", "expires_at": expires.isoformat(), "workflows": [bmi]}
        ).json()
        rotating = on_b.post("/v1/keys", {"name": "rotating"}).json()
        # Every key used on every replica: each holds them in its cache of keys.
        for replica in (a, b):
            for surface in SURFACES:
                assert attempt(replica, surface, short["key"], bmi) == (200, ""), surface
                assert attempt(replica, surface, rotating["key"], bmi) == (200, ""), surface

        # A list holds on both, whether the workflow exists or not.
        for replica in (a, b):
            assert attempt(replica, "flowai", short["key"], other)[0] == 403
            assert attempt(replica, "linkai", short["key"], "wf_nope")[0] == 403

        # Rotated on one replica with a grace: the old secret works on both until it ends,
        # the new one at once.
        new = on_a.post(f"/v1/keys/{rotating['id']}:rotate", {"grace_s": 3}).json()
        until = _parse(new["previous_key_expires_at"])
        for replica in (a, b):
            assert attempt(replica, "grpc-direct", new["key"], bmi) == (200, "")
            assert attempt(replica, "grpc-direct", rotating["key"], bmi) == (200, "")

        _sleep_until(until)
        for replica in (a, b):
            for surface in SURFACES:
                status, message = attempt(replica, surface, rotating["key"], bmi)
                assert status in UNAUTHENTICATED and message == "invalid API key", surface
                assert attempt(replica, surface, new["key"], bmi) == (200, ""), surface

        _sleep_until(expires)
        for replica in (a, b):
            for surface in SURFACES:
                status, message = attempt(replica, surface, short["key"], bmi)
                assert status in UNAUTHENTICATED and message == "API key expired", surface

        # Both replicas answer the same log.
        assert on_a.get("/v1/audit").json() == on_b.get("/v1/audit").json()
        actions = [e["action"] for e in on_b.get("/v1/audit").json()["events"]]
        assert actions[:3] == ["key.rotated", "key.created", "key.created"]


def test_a_rotation_without_grace_stops_the_old_secret_on_the_other_replica(
    replicas: tuple[Stack, Stack],
) -> None:
    a, b = replicas
    _, admin = a.create_key()
    with Api(a.base_url, admin) as on_a:
        bmi = on_a.publish(BMI)
        key = on_a.post("/v1/keys", {"name": "k"}).json()
        assert attempt(b, "flowai", key["key"], bmi) == (200, "")  # cached on b

        new = on_a.post(f"/v1/keys/{key['id']}:rotate", {}).json()

        # b hears of it on the replicas' channel (its key cache is the bound without one).
        wait_for(
            lambda: attempt(b, "flowai", key["key"], bmi)[0] == 401,
            timeout_s=5,
            what="b refusing the rotated-out secret",
        )
        assert attempt(b, "flowai", new["key"], bmi) == (200, "")
        assert attempt(b, "grpc-direct", key["key"], bmi)[1] == "invalid API key"
