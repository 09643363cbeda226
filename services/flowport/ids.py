"""Identifiers and secrets: random, URL-safe, letters and digits only."""

from __future__ import annotations

import os
import string
import threading

_ALPHABET = string.ascii_letters + string.digits
# Random bytes below 248 (4 x 62) map onto the alphabet evenly by their value modulo 62; the
# bytes 248-255 are dropped, so every character stays equally likely.
_EVEN = 4 * len(_ALPHABET)
_TO_ALPHABET = bytes(ord(_ALPHABET[byte % len(_ALPHABET)]) for byte in range(_EVEN)).ljust(256)
_UNEVEN = bytes(range(_EVEN, 256))


# The operating system's random bytes are drawn this many at a time: one system call per
# run for its two ids cost more than the rest of its admission's checks.
_DRAW = 4096


class _Pool:
    """Characters of the alphabet from the operating system's CSPRNG (os.urandom, as
    `secrets` uses), drawn in blocks and handed out once each. Whole blocks go through C
    (translate) rather than a Python step per character."""

    def __init__(self) -> None:
        self._chars = ""
        self._next = 0  # the first character not handed out yet
        self._lock = threading.Lock()

    def take(self, length: int) -> str:
        with self._lock:
            start, end = self._next, self._next + length
            while end > len(self._chars):
                drawn = os.urandom(_DRAW).translate(_TO_ALPHABET, _UNEVEN).decode("ascii")
                self._chars, start, end = self._chars[start:] + drawn, 0, length
            self._next = end
            return self._chars[start:end]

    def forget(self) -> None:
        """A forked child must not hand out the characters its parent will."""
        self._chars, self._next = "", 0
        self._lock = threading.Lock()


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.forget)


def random_token(length: int) -> str:
    """A random string of letters and digits; `length` 32 carries about 190 bits."""
    return _pool.take(length)


def new_id(prefix: str, length: int = 16) -> str:
    """A resource id such as `wf_3kTq9...`: the prefix tells a reader what it names."""
    return f"{prefix}_{random_token(length)}"
