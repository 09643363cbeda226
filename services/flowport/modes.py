"""How a caller takes a run's outcome: the `mode` of every run surface."""

from __future__ import annotations

from typing import Literal, get_args

# blocking: the caller waits for the outcome; stream: it follows the events as they come;
# async: it is answered at once (202), and the run waits in the queue for a replica.
Mode = Literal["blocking", "stream", "async"]
MODES: tuple[Mode, ...] = get_args(Mode)
