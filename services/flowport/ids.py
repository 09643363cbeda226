"""Identifiers and secrets: random, URL-safe, letters and digits only."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
# Random bytes below 248 (4 x 62) map onto the alphabet evenly by their value modulo 62; the
# bytes 248-255 are dropped, so every character stays equally likely.
_EVEN = 4 * len(_ALPHABET)
_TO_ALPHABET = bytes(ord(_ALPHABET[byte % len(_ALPHABET)]) for byte in range(_EVEN)).ljust(256)
_UNEVEN = bytes(range(_EVEN, 256))


def random_token(length: int) -> str:
    """A random string of letters and digits; `length` 32 carries about 190 bits."""
    # Whole byte strings through C (translate) rather than a Python step per character: the
    # per-character loop cost more per run than a template node. A few spare bytes cover
    # the dropped ones (1 in 32); more are drawn in the rare case they do not.
    chars = b""
    while len(chars) < length:
        drawn = secrets.token_bytes(length + 8)
        chars += drawn.translate(_TO_ALPHABET, _UNEVEN)
    return chars[:length].decode("ascii")


def new_id(prefix: str, length: int = 16) -> str:
    """A resource id such as `wf_3kTq9...`: the prefix tells a reader what it names."""
    return f"{prefix}_{random_token(length)}"
