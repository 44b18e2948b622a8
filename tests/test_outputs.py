"""Outputs as they come: tuples, lists, dicts, NamedTuples and dataclasses, without an adapter
(issue 21, item 1)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from hypothesis import settings

from lpim.cli import main
from lpim.errors import UsageValueError
from lpim.testing import check_encoder
from lpim.zoo.misbehaving import MaskedMeanEncoder, ReturnsList

FAST = settings(max_examples=5, database=None, deadline=None)


class Pooled(NamedTuple):
    valid: torch.Tensor
    embedding: torch.Tensor


@dataclass
class Encoded:
    lanes: torch.Tensor
    count: int


class EmbeddingAndValid(MaskedMeanEncoder):
    """A PointNet-style encoder that returns `(embedding [B, M, C], valid [B, M])`."""

    def forward(self, points, point_mask):  # type: ignore[no-untyped-def,override]
        return super().forward(points, point_mask), point_mask.any(-1)


class TwoEmbeddings(MaskedMeanEncoder):
    """Returns two `[B, M, C]` tensors: which is the lane embedding is for the user to say."""

    def forward(self, points, point_mask):  # type: ignore[no-untyped-def,override]
        lanes = super().forward(points, point_mask)
        return {"lanes": lanes, "lanes_again": lanes * 2}


class AsNamedTuple(MaskedMeanEncoder):
    def forward(self, points, point_mask):  # type: ignore[no-untyped-def,override]
        return Pooled(point_mask.any(-1), super().forward(points, point_mask))


class AsDataclass(MaskedMeanEncoder):
    def forward(self, points, point_mask):  # type: ignore[no-untyped-def,override]
        return Encoded(super().forward(points, point_mask), 3)


@pytest.mark.parametrize("encoder", [EmbeddingAndValid, AsNamedTuple, AsDataclass])
def test_a_container_with_one_lane_embedding_is_checked_without_an_adapter(encoder: type) -> None:
    report = check_encoder(encoder(), dtype=torch.float32, settings=FAST)
    assert report.passed and report.results


@pytest.mark.parametrize("output", [0, "lanes"])
def test_output_names_the_part(output: int | str) -> None:
    subject = EmbeddingAndValid() if output == 0 else TwoEmbeddings()
    report = check_encoder(subject, output=output, dtype=torch.float32, settings=FAST)
    assert report.passed


@pytest.mark.parametrize(
    ("encoder", "output", "words"),
    [
        (TwoEmbeddings, None, ["2 ('lanes', 'lanes_again')", "output=INDEX|NAME"]),
        (ReturnsList, None, ["list of 0: tensor", "none of them", "output=INDEX|NAME"]),
        (EmbeddingAndValid, 5, ["output=5 names no part", "(given: output=5)"]),
    ],
)
def test_no_lane_embedding_is_a_usage_error_before_anything_is_drawn(
    encoder: type, output: int | None, words: list[str]
) -> None:
    started = time.process_time()
    with pytest.raises(UsageValueError) as info:
        check_encoder(encoder(), output=output, dtype=torch.float32, settings=FAST)
    assert time.process_time() - started < 5  # one call, not rows of examples (CPU seconds)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    assert "attn_mask" not in message  # no mask causes for a protocol mistake


def test_the_command_names_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "lpim.zoo.misbehaving:ReturnsList", "--dtype", "float32"]) == 2
    assert "--output INDEX|NAME" in capsys.readouterr().err


# -- inputs as they come (issue 21, item 2) -------------------------------------------------------


class KeywordPaddingMask(torch.nn.Module):
    """Called `forward(polylines=..., polylines_mask=...)` with MHA's polarity (True = padded)."""

    in_dim = 2

    def __init__(self, bug: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 4)
        self.bug = bug

    def forward(self, *, polylines: torch.Tensor, polylines_mask: torch.Tensor) -> torch.Tensor:
        keep = (polylines_mask if self.bug else ~polylines_mask)[..., None]  # BUG: polarity
        h = torch.where(keep, self.linear(torch.where(keep, polylines, 0.0)), 0.0)
        return h.sum(2) / keep.sum(2).clamp(min=1)


class Lengths(torch.nn.Module):
    """Takes `lengths [B, M]` (real points first)."""

    in_dim = 2

    def forward(self, points: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        keep = (torch.arange(points.shape[2]) < lengths[..., None])[..., None]
        return torch.where(keep, points, 0.0).sum(2) / keep.sum(2).clamp(min=1)


def test_an_encoder_called_by_keyword_with_the_other_polarity_needs_no_adapter() -> None:
    report = check_encoder(
        KeywordPaddingMask(),
        argument_names=("polylines", "polylines_mask"),
        point_mask_as="key_padding_mask",
        dtype=torch.float64,
        settings=FAST,
    )
    assert report.passed
    assert report.encoder.endswith("KeywordPaddingMask")


def test_its_bug_is_found_and_the_reproducer_rebuilds_the_call() -> None:
    from lpim.testing import EncoderPropertyError

    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(
            KeywordPaddingMask(bug=True),
            argument_names=("polylines", "polylines_mask"),
            point_mask_as="key_padding_mask",
            dtype=torch.float64,
            properties="matches_unpadded",
            settings=FAST,
        )
    source = info.value.reproducer
    assert "Adapted(" in source and "point_mask_as='key_padding_mask'" in source
    assert "argument_names=('polylines', 'polylines_mask')" in source


def test_lengths_need_a_right_padded_contract() -> None:
    with pytest.raises(UsageValueError, match="can only say right padding"):
        check_encoder(Lengths(), point_mask_as="lengths", settings=FAST)
    report = check_encoder(
        Lengths(), point_mask_as="lengths", layout="right", dtype=torch.float64, settings=FAST
    )
    assert report.passed
