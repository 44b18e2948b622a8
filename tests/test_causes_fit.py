"""The causes a failure lists fit the encoder as well as the example: no attention-mask cause
for code that calls no attention (issue 21, item 7)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

from lpim.testing import EncoderPropertyError, check_encoder
from lpim.zoo import BUGS

FAST = settings(max_examples=15, database=None, deadline=None)


def _failure(name: str, prop: str) -> EncoderPropertyError:
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(BUGS[name].factory(), dtype=torch.float64, properties=prop, settings=FAST)
    return info.value


def test_no_attention_causes_for_an_encoder_without_attention() -> None:
    failure = _failure("mean_over_slots", "matches_unpadded")
    assert failure.subject_features == frozenset()
    message = str(failure)
    assert "pooling over slots instead of real points" in message
    for attention_cause in ("inverted polarity", "MHA-polarity mask", "float 0/1 key_padding_mask"):
        assert attention_cause not in message, message


def test_attention_causes_for_an_encoder_that_attends() -> None:
    failure = _failure("library_mask_as_kpm", "matches_unpadded")
    assert failure.subject_features == frozenset({"attention"})
    assert "inverted polarity" in str(failure)


def test_a_bare_assert_keeps_every_cause_that_fits_the_example() -> None:
    """Without a check to run the encoder, what it calls is unknown: attention causes stay."""
    from lpim import LaneBatch
    from lpim.testing import assert_matches_unpadded

    point_mask = torch.tensor([[[True, True, False, False]]])
    points = torch.arange(8, dtype=torch.float64).reshape(1, 1, 4, 2)
    with pytest.raises(EncoderPropertyError) as info:
        assert_matches_unpadded(
            BUGS["mean_over_slots"].factory().double(), LaneBatch(points, point_mask)
        )
    assert info.value.subject_features is None
    assert "inverted polarity" in str(info.value)
