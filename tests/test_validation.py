"""`lpim._validation`: one wording per argument mistake, the same words the strategies use today."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import find
from hypothesis.errors import InvalidArgument

from lpim import masks, strategies
from lpim._errors import UsageError, UsageValueError
from lpim._validation import allocating, check_device, check_floating_dtype, check_int
from lpim.batch import LaneBatch


@pytest.mark.parametrize("value", [True, 1.5, "3", None])
def test_check_int_refuses_non_ints_with_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=r"f: n must be an int >= 0; got"):
        check_int(value, "n", "f", minimum=0)


def test_check_int_refuses_small_values_with_the_callers_error() -> None:
    assert check_int(3, "n", "f", minimum=1) == 3
    with pytest.raises(ValueError, match=r"n must be >= 1; got 0 \(in f\)"):
        check_int(0, "n", "f", minimum=1)
    with pytest.raises(InvalidArgument, match="n must be >= 1"):
        check_int(0, "n", "f", minimum=1, value_error=InvalidArgument)


@pytest.mark.parametrize("value", [3, True, None, "not-a-device", "meta", "cuda:7"])
def test_check_device_says_what_the_strategies_say(value: object) -> None:
    """Same words as `lpim.strategies`' own device check, so it can move here unchanged."""
    if value == "cuda:7" and torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    with pytest.raises(InvalidArgument) as theirs:
        find(strategies.lane_batches(device=value), lambda _: True)
    with pytest.raises((TypeError, ValueError, InvalidArgument)) as ours:
        check_device(
            value,
            why_data="a lane batch's real points are checked to be finite",
            type_error=InvalidArgument,
            value_error=InvalidArgument,
        )
    assert str(ours.value) == str(theirs.value)


def test_check_device_and_dtype_accept_what_is_valid() -> None:
    assert check_device("cpu") == torch.device("cpu")
    assert check_floating_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(TypeError, match=r"dtype must be a floating torch\.dtype; got torch\.int64"):
        check_floating_dtype(torch.int64)


# -- allocation failures are decided by experiment ---------------------------------------------


def test_an_error_that_reads_like_memory_is_not_blamed_on_a_size_that_fits() -> None:
    """torch's wording decides nothing: the tensor is allocated alone, and it fits."""
    with pytest.raises(RuntimeError, match="CUDA out of memory") as info:
        with allocating(
            "a (2, 3) mask", "query_tokens", tensors=[((2, 3), torch.bool)], device="cpu"
        ):
            raise RuntimeError("CUDA out of memory (a message that only looks like one)")
    assert not isinstance(info.value, UsageError)


def test_any_error_is_blamed_on_a_size_that_cannot_be_allocated() -> None:
    """Whatever the block's error says, a tensor of the chosen size that cannot be allocated
    alone is a usage error naming the knobs."""
    huge = (10**9, 10**7)  # 10**16 bools: no machine holds them
    with pytest.raises(UsageValueError, match="lower query_tokens") as info:
        with allocating(
            "the (B*M, S) mask", "query_tokens", tensors=[(huge, torch.bool)], device="cpu"
        ):
            raise RuntimeError("an error whose words name no allocation")
    assert "the (B*M, S) mask is too large to allocate" in str(info.value)


def test_every_tensor_of_the_block_is_tried_not_only_the_result() -> None:
    """With a zero-sized axis the result is empty while an intermediate is not (the CI failure
    at 0 lanes: `from_lengths` built a (0, 10**13) mask from a (10**13,) `arange`): the size is
    blamed when any tensor the block builds cannot be allocated alone, and the message names
    that tensor."""
    tensors = [((10**13,), torch.int64), ((0, 10**13), torch.bool)]
    with pytest.raises(UsageValueError, match="lower query_tokens") as info:
        with allocating("the (0, S) mask", "query_tokens", tensors=tensors, device="cpu"):
            raise RuntimeError("whatever the arange said")
    assert "a (10000000000000,) torch.int64 tensor" in str(info.value)
    with pytest.raises(RuntimeError, match="whatever") as raw:
        with allocating("the (0, S) mask", "query_tokens", tensors=tensors[1:], device="cpu"):
            raise RuntimeError("whatever the arange said")
    assert not isinstance(raw.value, UsageError)


BIG = 10**13


@pytest.mark.parametrize(
    "call",
    [
        lambda: masks.from_lengths(torch.zeros(0, dtype=torch.int64), 1, 0, query_tokens=BIG),
        lambda: masks.from_lengths(torch.zeros(0, dtype=torch.int64), 1, BIG),
        lambda: masks.from_cu_seqlens(torch.zeros(1, dtype=torch.int32), 1, 0, query_tokens=BIG),
        lambda: masks.to_attn_mask_3d(torch.ones(0, 1, 3, dtype=torch.bool), 2, query_tokens=BIG),
        lambda: masks.to_attn_mask_3d(torch.ones(0, 1, 3, dtype=torch.bool), num_heads=BIG),
        lambda: masks.to_key_padding_mask(torch.ones(0, 1, 3, dtype=torch.bool), BIG),
        lambda: LaneBatch.from_lanes([[torch.zeros(1, 0)]], num_lanes=10**6, num_points=10**7),
    ],
    ids=["lengths-q", "lengths-N", "cu_seqlens-q", "attn3d-q", "attn3d-H", "kpm-q", "D=0"],
)
def test_zero_sized_axes_with_huge_knobs_give_a_result_or_a_usage_error(call: Any) -> None:
    """Every door that allocates what the caller sized, at a zero-sized axis and a huge knob:
    an (empty) result or the "too large to allocate" usage error, never torch's own error."""
    try:
        result = call()
    except UsageError as error:
        assert "too large to allocate" in str(error), error
    else:
        assert result is not None
