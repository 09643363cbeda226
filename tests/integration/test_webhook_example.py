"""docs/examples/webhooks/receive_webhook.py works as its README says: run as a user would
run it, it receives a background run's delivery from the real stack, verifies it, prints
the run's id and status, drops a repeat, and refuses a forged delivery with 401."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from flowport.demo import BMI
from tests.integration.client import Api
from tests.integration.stack import REPO, wait_for

RECEIVER = REPO / "docs" / "examples" / "webhooks" / "receive_webhook.py"
BMI_INPUT = {"height": 1.8, "weight": 75}


class Receiver:
    """The example script as a subprocess; its printed lines, as they come."""

    def __init__(self, secret: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(RECEIVER), "0"],
            env={**os.environ, "FLOWPORT_WEBHOOK_SECRET": secret},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        first = self.line()
        assert first.startswith("listening on http://127.0.0.1:"), first
        self.url = first.removeprefix("listening on ")

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line.rstrip("\n"))

    def line(self, timeout_s: float = 15.0) -> str:
        """The next line it printed."""
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"the receiver printed nothing within {timeout_s} s") from None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def secret(api: Api) -> str:
    made = api.post("/v1/webhooks:rotateSecret", {})
    assert made.status_code == 200, made.text
    return str(made.json()["secret"])


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    started = Receiver(secret)
    yield started
    started.stop()


def test_the_example_receiver_verifies_a_background_runs_delivery(
    api: Api, secret: str, receiver: Receiver
) -> None:
    workflow_id = api.publish(BMI)

    accepted = api.run(workflow_id, BMI_INPUT, mode="async", webhook_url=receiver.url)

    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    assert receiver.line() == f"{run_id} succeeded"

    def delivered() -> list[dict[str, object]]:
        return list(api.get(f"/v1/runs/{run_id}").json()["webhook_deliveries"])

    (attempt,) = wait_for(delivered, what="the delivery on the run's record")
    assert (attempt["attempt"], attempt["status_code"]) == (1, 204)

    # The same delivery again, validly signed: answered 204, and dropped as a repeat.
    body = b'{"type":"run.finished","run":{"id":"%s","status":"succeeded"}}' % run_id.encode()
    now = datetime.now(UTC)
    repeat = httpx.post(
        receiver.url,
        content=body,
        headers={
            "content-type": "application/json",
            "webhook-id": run_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(run_id, now, body),
        },
    )
    assert repeat.status_code == 204
    assert receiver.line() == f"{run_id} repeated, dropped"


def test_the_example_receiver_refuses_a_forged_delivery(receiver: Receiver) -> None:
    body = b'{"type":"run.finished","run":{"id":"run_forged","status":"succeeded"}}'
    # Signed with another secret than the account's.
    forger = Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    now = datetime.now(UTC)

    forged = httpx.post(
        receiver.url,
        content=body,
        headers={
            "content-type": "application/json",
            "webhook-id": "run_forged",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": forger.sign("run_forged", now, body),
        },
    )
    unsigned = httpx.post(receiver.url, content=body, headers={"webhook-id": "run_forged"})

    assert forged.status_code == 401
    assert unsigned.status_code == 401
    # Nothing was printed for either: the receiver acted on neither.
    time.sleep(0.2)
    assert receiver.process.poll() is None
    with pytest.raises(AssertionError, match="printed nothing"):
        receiver.line(timeout_s=0.5)
