"""The content policy's matching: folded text, so invisible characters, fullwidth letters and
case cannot smuggle a blocked word past it, in whole texts and across stream chunks."""

from __future__ import annotations

import pytest

from flowport.errors import ContentBlocked
from flowport.policy import ContentPolicy, fold

POLICY = ContentPolicy(["forbidden", "炸弹", ""])
# Each way the administrator got a word past the policy before it folded text.
TRICKS = [
    "forbidden",
    "FORBIDDEN",
    "for\u200bbidden",  # zero-width space
    "ｆｏｒｂｉｄｄｅｎ",  # fullwidth letters
    "forb\u00adidden",  # soft hyphen
    "for\u200dbid\u2060den",  # zero-width joiner, word joiner
    "\u202eforbidden\u202c",  # bidi override and pop
    "Forb\ufeffidden",  # byte order mark inside
    "炸\u200b弹",
]


@pytest.mark.parametrize("text", TRICKS)
def test_every_trick_is_the_word(text: str) -> None:
    assert POLICY.blocks(f"please say {text} now")
    with pytest.raises(ContentBlocked) as raised:
        POLICY.check_inputs({"输入": ["ok", {"deep": text}]})
    # The input is named, the word never is.
    assert raised.value.message == "input.输入[1].deep: blocked by the content policy"


@pytest.mark.parametrize("text", ["for bidden", "forbid", "炸 弹", "bidden", ""])
def test_text_without_the_word_passes(text: str) -> None:
    assert not POLICY.blocks(text)


def test_words_in_the_file_are_folded_too() -> None:
    policy = ContentPolicy(["ＢＡＤ\u200bWord"])

    assert policy.blocks("a badword here")
    assert not policy.blocks("a bad word here")


def test_fold_is_nfkc_casefold_without_format_characters() -> None:
    assert fold("ＳＴＲＡ\u00dfE\u200b") == "strasse"
    # Composed after folding: e and a combining acute are é.
    assert fold("CAFE\u0301") == fold("café") == "café"


@pytest.mark.parametrize(
    "chunks",
    [
        ["say for", "bid", "den!"],
        ["say for", "\u200b", "bid", "\u00ad", "d", "EN"],
        ["ｆｏｒ", "ｂｉｄ", "ｄｅｎ"],
        ["炸", "\u200b", "弹"],
        ["say forbid", "\u200b" * 500, "den"],
    ],
)
def test_a_stream_is_blocked_by_the_chunk_that_completes_the_word(chunks: list[str]) -> None:
    watch = POLICY.watch(node_id="llm")
    for chunk in chunks[:-1]:
        watch.feed(chunk)

    with pytest.raises(ContentBlocked) as raised:
        watch.feed(chunks[-1])
    assert raised.value.node_id == "llm"


def test_a_long_stream_is_checked_by_its_tail_only_and_still_catches_late_words() -> None:
    watch = POLICY.watch()
    for _ in range(2000):
        watch.feed("harmless text, ")
    watch.feed("for")

    with pytest.raises(ContentBlocked):
        watch.feed("Bidden")


def test_an_empty_policy_blocks_nothing() -> None:
    policy = ContentPolicy(["", "  "])

    assert not policy.active
    assert not policy.blocks("forbidden")
