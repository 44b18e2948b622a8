"""The report never cuts a note mid-word: table cells shorten at a word boundary, footnotes and
notes are printed whole, wrapped at word boundaries."""

from __future__ import annotations

import re

import torch
from hypothesis import given
from hypothesis import strategies as st

from lpim.testing import CheckReport, PropertyResult
from lpim.testing.report import shorten, wrap

WORDS = st.lists(st.from_regex(r"[a-z0-9_.()=\[\],:-]{1,30}", fullmatch=True), min_size=1)


@given(WORDS, st.integers(8, 120))
def test_shorten_cuts_only_between_words(words: list[str], width: int) -> None:
    text = " ".join(words)
    short = shorten(text, width)
    if len(text) <= width:
        assert short == text
        return
    assert short.endswith(" ...")
    kept = short.removesuffix(" ...").split(" ")
    assert kept == words[: len(kept)]  # whole words, in order
    assert len(short) <= width or len(kept) == 1  # only an overlong first word may exceed


@given(WORDS, st.integers(20, 120))
def test_wrap_keeps_every_word_whole(words: list[str], width: int) -> None:
    text = " ".join(words)
    lines = wrap(text, width).splitlines()
    assert " ".join(line.strip() for line in lines).split(" ") == words
    assert all(len(line) <= width or " " not in line.strip() for line in lines)


def test_a_long_failure_note_is_a_whole_footnote() -> None:
    note = (
        "matches_unpadded: lane (b=0, m=0) with 1 real points: lane_embedding[0] is -0.180656 "
        "in the batch but 0.0168597 is expected (allowed error 2.88e-07 at torch.float64, "
        "6.87e+05x over)"
    )
    report = CheckReport(
        "enc", [PropertyResult("matches_unpadded", torch.float64, "FAIL", 3, 0.1, 7e5, note)]
    )
    text = str(report)
    cell = re.search(r"\[1\] [^\n]*? \.\.\.", text)
    assert cell is not None, text
    shown = cell.group(0).removeprefix("[1] ").removesuffix(" ...")
    assert note.startswith(shown + " ")  # cut where a word ends
    footnote = text[text.index("\n[1] ") + 1 :]
    assert " ".join(footnote.split()) == f"[1] {note}"  # whole, once the wrapping is undone
    assert all(len(line) <= 100 for line in footnote.splitlines())
