"""Identifiers and secrets: random, URL-safe, letters and digits only."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    """A random string of letters and digits; `length` 32 carries about 190 bits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 16) -> str:
    """A resource id such as `wf_3kTq9...`: the prefix tells a reader what it names."""
    return f"{prefix}_{random_token(length)}"
