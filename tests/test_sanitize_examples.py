"""The sanitizer's zoo: each buggy example gives exactly its kind, each harmless twin nothing."""

from __future__ import annotations

import pytest
import torch

import lpim
from lpim.sanitizer import EXAMPLES, KINDS, SanitizerExample

torch.set_num_threads(1)


def test_every_kind_has_an_example() -> None:
    assert {example.kind for example in EXAMPLES} == set(KINDS)
    assert len({example.name for example in EXAMPLES}) == len(EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_buggy_example_found_as_its_kind(example: SanitizerExample) -> None:
    with lpim.sanitize(on_finding="collect") as report:
        example.buggy()
    assert report.kinds() == {example.kind}, report.table()
    assert report.calls >= 1


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_harmless_twin_gives_nothing(example: SanitizerExample) -> None:
    with lpim.sanitize(on_finding="collect") as report:
        example.harmless()
    assert report.ok, report.table()
    assert report.calls >= 1  # it was seen, and found right
