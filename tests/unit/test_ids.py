"""Ids and secrets: the right length and alphabet, and every character equally likely."""

from __future__ import annotations

import string
from collections import Counter

from flowport.ids import new_id, random_token

ALPHABET = set(string.ascii_letters + string.digits)


def test_tokens_have_the_length_and_alphabet_asked_for() -> None:
    for length in (1, 6, 20, 32, 64):
        token = random_token(length)
        assert len(token) == length and set(token) <= ALPHABET


def test_ids_carry_their_prefix_and_never_repeat() -> None:
    ids = {new_id("run", 20) for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(i.startswith("run_") and len(i) == 24 for i in ids)


def test_every_character_is_about_equally_likely_in_every_position() -> None:
    tokens = [random_token(4) for _ in range(62 * 400)]
    for position in range(4):
        counts = Counter(token[position] for token in tokens)
        # 400 expected per character; a biased encoding (say, a modulo of too few random
        # bits) would leave some characters far off.
        assert set(counts) == ALPHABET
        assert min(counts.values()) > 250 and max(counts.values()) < 560
