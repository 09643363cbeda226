"""Identifiers and secrets: random, URL-safe, letters and digits only."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    """A random string of letters and digits; `length` 32 carries about 190 bits."""
    # One draw from the OS for the whole string, uniform over every possible string, then
    # written in base 62: a draw per character cost more than running a template node.
    number = secrets.randbelow(len(_ALPHABET) ** length)
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


def new_id(prefix: str, length: int = 16) -> str:
    """A resource id such as `wf_3kTq9...`: the prefix tells a reader what it names."""
    return f"{prefix}_{random_token(length)}"
