"""The fake LLM in a process of its own, scripted over its control routes: a client that
times the fake's tokens must not share a GIL with the server writing them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

REPO = Path(__file__).resolve().parents[2]


class FakeLlmProcess:
    """`python -m tests.fakes.fake_llm`, with FakeLlm's script and record methods; each is
    one quick blocking call to the fake."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._control: httpx.Client | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        """Starts the fake on a free port; returns its base URL (ending in /v1)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.fake_llm"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._process = process
        assert process.stdout is not None
        # The fake prints its URL once it listens, or exits: a failed start is not a hang.
        line = process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the fake LLM did not start (exit code {process.returncode})")
        self.base_url = line
        self._control = httpx.Client(
            base_url=line.removesuffix("/v1") + "/_fake", timeout=10, trust_env=False
        )
        return self.base_url

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- script ----------------------------------------------------------------------

    def set_reply(
        self,
        tokens: list[str] | None,
        reasoning: list[str] | None = None,
        delay_s: float = 0.0,
        status: int = 200,
        first_token_delay_s: float = 0.0,
        pause_after: int | None = None,
        failures: int | None = None,
        error_after: int | None = None,
        error_data: str | None = None,
    ) -> None:
        """As `FakeLlm.set_reply`."""
        self._post(
            "reply",
            {
                "tokens": tokens,
                "reasoning": reasoning,
                "delay_s": delay_s,
                "status": status,
                "first_token_delay_s": first_token_delay_s,
                "pause_after": pause_after,
                "failures": failures,
                "error_after": error_after,
                "error_data": error_data,
            },
        )

    def reset(self) -> None:
        """Back to echoing, with nothing recorded."""
        self._post("reset")

    def release(self) -> None:
        """Lets streams held by `pause_after` go on."""
        self._post("release")

    # -- what happened ---------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self._record()["requests"])

    @property
    def token_times(self) -> list[float]:
        return [float(t) for t in self._record()["token_times"]]

    @property
    def disconnects(self) -> int:
        return int(self._record()["disconnects"])

    # -- control routes --------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if self._control is None:
            raise RuntimeError("the fake LLM process is not running")
        return self._control

    def _post(self, route: str, body: dict[str, Any] | None = None) -> None:
        self._client().post(route, json=body).raise_for_status()

    def _record(self) -> dict[str, Any]:
        answer = self._client().get("record")
        answer.raise_for_status()
        record: dict[str, Any] = answer.json()
        return record
