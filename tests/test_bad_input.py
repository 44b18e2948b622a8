"""Bad input, fuzzed: every public entry point against every kind of malformed input.

Each kind either works as documented (zero-size, non-contiguous, expanded, requires-grad inputs
give what their plain counterparts give) or raises the documented error type with a message that
names what was expected and what came; never an ``IndexError``, a bare ``RuntimeError`` from deep
inside torch, NaN output or a silent wrong answer. Hypothesis draws the sizes, values, dtypes and
the particular bad value of each kind.

:data:`BAD_INPUT_KINDS` is the table of kinds per entry point; every test below is parametrized
from it, so the counts in the closing figures are ``len()`` of its rows.

Mixed devices: without CUDA the ``meta`` device stands in for a second device (it has shapes and
dtypes but no values). Shape-only converters accept meta masks (their output is meta too);
anything that reads values refuses them with its documented error. ``test_cuda_mixed_devices``
repeats the mixed-device cases with a real second device where CUDA exists and skips otherwise.

"A mask that marks real points where there are none": a ``True`` slot *is* a real point, whatever
it holds. A padded slot wrongly marked ``True`` that holds a finite fill (zeros, a repeated last
point) cannot be told from a real point there and is encoded as one; one that holds NaN or inf
(the usual padding garbage) is refused as a non-finite real point. For masks built from counts,
a length beyond ``N`` or offsets past the end are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra.numpy import arrays

from lpim import LaneBatch, LaneSet, PriorEncoder, masks
from lpim.cli import main
from lpim.masks import CONVENTIONS, MISTAKES, MaskConventionError
from lpim.strategies import bev_queries, lane_batches, lane_sets, padded_tensors
from lpim.testing import check_encoder, check_lane_consumer
from lpim.tolerance import encoder_scale, tolerance
from lpim.zoo.consumers import MaskedMeanPool
from lpim.zoo.misbehaving import MaskedMeanEncoder

BAD_INPUT_KINDS: dict[str, tuple[str, ...]] = {
    "masks.to_* converters and keep_tokens (8 functions)": (
        "not_a_tensor",
        "wrong_rank",
        "int_mask",
        "uint8_mask",
        "float_mask",
        "float64_mask",
        "zero_size",
        "non_contiguous",
        "expanded",
        "meta_device",
        "query_tokens_negative",
        "query_tokens_not_int",
        "num_heads_bad",
        "dtype_bad",
    ),
    "masks.from_* inverses (7 functions)": (
        "not_a_tensor",
        "wrong_rank",
        "wrong_dtype",
        "zero_size",
        "non_contiguous",
        "expanded",
        "meta_device",
        "num_lanes_bad",
        "query_tokens_bad",
        "not_a_padding_mask",
        "requires_grad",
    ),
    "masks.pack / unpack / to_nested": (
        "not_a_tensor",
        "wrong_rank",
        "mismatched_shapes",
        "mixed_devices",
        "meta_device",
        "zero_size",
        "non_contiguous",
        "expanded",
        "requires_grad",
        "wrong_row_count",
    ),
    "masks.validate": (
        "not_a_tensor",
        "unknown_convention",
        "wrong_rank",
        "wrong_dtype",
        "wrong_shape",
        "zero_size",
        "non_contiguous",
        "expanded",
        "mixed_devices",
        "meta_device",
        "inverted_polarity",
        "scalar_args_bad",
        "point_mask_bad",
    ),
    "masks.diagnose": (
        "any_rank_dtype_shape",
        "not_a_tensor",
        "nan_inf_values",
        "zero_size",
        "non_contiguous",
        "expanded",
        "mixed_devices",
        "meta_device",
        "point_mask_bad",
        "scalar_args_bad",
    ),
    "LaneBatch": (
        "not_a_tensor",
        "wrong_rank",
        "int_points",
        "int_mask",
        "uint8_mask",
        "float_mask",
        "float64_mask",
        "mismatched_shapes",
        "mixed_devices",
        "meta_device",
        "zero_size",
        "zero_coordinates",
        "non_contiguous",
        "expanded",
        "requires_grad",
        "nan_inf_real_points",
        "nan_inf_padded_slots",
        "mask_marks_padding_real",
    ),
    "PriorEncoder.forward": (
        "not_a_tensor",
        "wrong_rank",
        "int_points",
        "int_mask",
        "uint8_mask",
        "float_mask",
        "float64_mask",
        "mismatched_shapes",
        "wrong_point_dim",
        "dtype_mismatch",
        "mixed_devices",
        "meta_device",
        "zero_size",
        "non_contiguous",
        "expanded",
        "requires_grad",
        "nan_inf_real_points",
        "nan_inf_padded_slots",
        "mask_marks_padding_real",
    ),
    "strategies.lane_batches / padded_tensors": (
        "negative_size",
        "reversed_range",
        "size_wrong_type",
        "size_strategy_draws_bad",
        "zero_size",
        "point_dim_zero",
        "unknown_layout",
        "unknown_garbage",
        "non_float_dtype",
        "bad_device",
        "bad_coord_range",
        "non_bool_flag",
        "no_point_slots_but_no_empty_lanes",
    ),
    "testing.check_encoder arguments": (
        "not_callable",
        "point_dim_bad",
        "dtype_bad",
        "device_bad",
        "settings_bad",
        "properties_bad",
        "sizes_bad",
        "factory_bad",
        "deadline_bad",
    ),
    "testing.check_lane_consumer arguments": (
        "not_callable",
        "embed_dim_bad",
        "other_inputs_bad",
        "order_invariant_bad",
        "strict_bad",
        "dtype_bad",
        "device_bad",
        "settings_bad",
        "properties_bad",
        "sizes_bad",
        "threads_bad",
        "factory_bad",
        "progress_bad",
    ),
    "strategies.lane_sets": (
        "negative_size",
        "reversed_range",
        "size_wrong_type",
        "size_strategy_draws_bad",
        "zero_size",
        "embed_dim_zero",
        "unknown_garbage",
        "non_float_dtype",
        "bad_device",
        "bad_value_range",
        "non_bool_flag",
        "other_inputs_not_callable",
        "other_inputs_returns_bad",
    ),
    "LaneSet": (
        "not_a_tensor",
        "wrong_rank",
        "int_embedding",
        "int_mask",
        "uint8_mask",
        "float_mask",
        "mismatched_shapes",
        "mixed_devices",
        "meta_device",
        "zero_size",
        "zero_width",
        "non_contiguous",
        "expanded",
        "requires_grad",
        "nan_inf_real_lanes",
        "nan_inf_padded_lanes",
        "args_kwargs_bad",
        "to_bad",
    ),
    "lpim check-consumer (CLI arguments)": (
        "target_bad",
        "other_inputs_bad",
        "embed_dim_bad",
        "dtype_bad",
        "property_bad",
        "device_bad",
        "sizes_bad",
        "threads_bad",
    ),
    "lpim check (CLI arguments)": (
        "target_bad",
        "dtype_bad",
        "property_bad",
        "point_dim_bad",
        "max_examples_bad",
        "device_bad",
        "deadline_bad",
        "unknown_option",
    ),
}
"""Kinds of bad input tried, per public entry point."""

FUZZ = settings(
    max_examples=8,
    deadline=None,
    database=None,
    # nested_given: the strategy and check_encoder tests run a @given inside their own
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.nested_given,
    ],
)
"""Modest: each kind is a separate test, and every test here must stay quick."""

HAS_CUDA = torch.cuda.is_available()

# -- what a clear error looks like -------------------------------------------------------------

NEVER = (
    IndexError,
    KeyError,
    ZeroDivisionError,
    AttributeError,
    NotImplementedError,
    AssertionError,
)


def raises_clearly(
    call: Callable[[], object],
    types: type[BaseException] | tuple[type[BaseException], ...],
    *words: str,
) -> BaseException:
    """``call()`` raises one of ``types`` (never an internal error type), whose message names
    what was expected and what came, and contains each of ``words``."""
    try:
        call()
    except NEVER as error:  # before ``types``: a ValueError subclass is fine, these are not
        raise AssertionError(f"internal error {type(error).__name__}: {error}") from error
    except types as error:
        message = str(error)
        if type(error) is RuntimeError:
            raise AssertionError(f"a bare RuntimeError from torch: {message}") from error
        assert re.search(r"expect|must|needs", message), message
        assert re.search(r"\bgot\b|came|holds?\b|\bdrew\b|asked for|disagrees with", message), (
            message
        )
        for word in words:
            assert word in message, (word, message)
        return error
    raise AssertionError(f"no error from {call}; expected {types}")


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """``("ok", result)`` or ``("error", (type, message))``, to compare two calls."""
    try:
        return "ok", call()
    except (MaskConventionError, ValueError, TypeError) as error:
        return "error", (type(error), str(error))


def same(a: Any, b: Any) -> bool:
    """Equal results: tensors by value (NaN equal), tuples elementwise, the rest by ==."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and bool(
                ((a == b) | (a.isnan() & b.isnan()) if a.is_floating_point() else (a == b)).all()
            )
        )
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def same_outcome(first: tuple[str, Any], second: tuple[str, Any]) -> bool:
    if first[0] != second[0]:
        return False
    if first[0] == "error":
        return bool(first[1][0] is second[1][0])
    return same(first[1], second[1])


# -- drawing masks -----------------------------------------------------------------------------

sizes = st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 5))
positive_sizes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5))


@st.composite
def point_masks(draw: st.DrawFn, shape: tuple[int, int, int] | None = None) -> torch.Tensor:
    b, m, n = shape if shape is not None else draw(positive_sizes)
    return torch.from_numpy(draw(arrays(np.bool_, (b, m, n))))


@st.composite
def zero_size_masks(draw: st.DrawFn) -> torch.Tensor:
    b, m, n = draw(positive_sizes)
    which = draw(st.sampled_from(["B", "M", "N"]))
    shape = (0 if which == "B" else b, 0 if which == "M" else m, 0 if which == "N" else n)
    return torch.zeros(shape, dtype=torch.bool)


def non_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous layout (every other element of a twice-wider one)."""
    wide = torch.stack([tensor, tensor], dim=-1).flatten(-2)  # [..., 2*last]
    view = wide[..., ::2]
    assert torch.equal(view, tensor) and (view.numel() <= 1 or not view.is_contiguous())
    return view


def expanded(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor[:1]`` expanded along dim 0 (stride 0): a view sharing one row."""
    return tensor[:1].expand_as(tensor)


not_tensors = st.sampled_from([None, 3, 2.5, "mask", [[True, False]], np.ones((1, 1, 1), bool)])

# -- the converters ----------------------------------------------------------------------------

CONVERTERS: dict[str, Callable[[torch.Tensor, int], object]] = {
    "keep_tokens": lambda pm, q: masks.keep_tokens(pm, q),
    "to_key_padding_mask": lambda pm, q: masks.to_key_padding_mask(pm, q),
    "to_attn_mask_3d": lambda pm, q: masks.to_attn_mask_3d(pm, 2, q),
    "to_additive_mask": lambda pm, q: masks.to_additive_mask(pm, torch.float32, q),
    "to_sdpa_mask": lambda pm, q: masks.to_sdpa_mask(pm, q),
    "to_attention_mask": lambda pm, q: masks.to_attention_mask(pm, q),
    "to_lengths": lambda pm, q: masks.to_lengths(pm, q),
    "to_cu_seqlens": lambda pm, q: masks.to_cu_seqlens(pm, q),
}
READS_VALUES = {"to_lengths", "to_cu_seqlens"}

MASK_DTYPES = {
    "int_mask": [torch.int8, torch.int32, torch.int64],
    "uint8_mask": [torch.uint8],
    "float_mask": [torch.float16, torch.bfloat16, torch.float32],
    "float64_mask": [torch.float64],
}


def _right_padded(pm: torch.Tensor) -> torch.Tensor:
    """A right-padded mask with ``pm``'s counts (lengths can only describe right padding)."""
    return torch.arange(pm.shape[-1]) < pm.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    "kind", BAD_INPUT_KINDS["masks.to_* converters and keep_tokens (8 functions)"]
)
@FUZZ
@given(data=st.data(), q=st.integers(0, 2))
def test_converters(kind: str, data: st.DataObject, q: int) -> None:
    for name in CONVERTERS:
        _converter_case(name, kind, data, q)


def _converter_case(name: str, kind: str, data: st.DataObject, q: int) -> None:
    convert = CONVERTERS[name]
    pm = data.draw(point_masks())
    if name == "to_lengths":
        pm = _right_padded(pm)
    if kind == "not_a_tensor":
        raises_clearly(lambda: convert(data.draw(not_tensors), q), MaskConventionError, "tensor")
    elif kind == "wrong_rank":
        rank = data.draw(st.sampled_from([0, 1, 2, 4, 5]))
        bad = torch.zeros((2,) * rank, dtype=torch.bool)
        raises_clearly(lambda: convert(bad, q), MaskConventionError, "[B, M, N]")
    elif kind in MASK_DTYPES:
        dtype = data.draw(st.sampled_from(MASK_DTYPES[kind]))
        raises_clearly(
            lambda: convert(pm.to(dtype), q), MaskConventionError, "torch.bool", str(dtype)
        )
    elif kind == "zero_size":
        empty = data.draw(zero_size_masks())
        b, m, n = empty.shape
        result = convert(empty, q)
        first = result[0] if isinstance(result, tuple) else result
        assert isinstance(first, torch.Tensor)
        rows = (
            b * m + 1
            if name == "to_cu_seqlens"
            else b * m * (2 if name == "to_attn_mask_3d" else 1)
        )
        assert first.shape[0] == rows
        if name not in ("to_lengths", "to_cu_seqlens"):
            assert first.shape[-1] == q + n
    elif kind in ("non_contiguous", "expanded"):
        variant = non_contiguous(pm) if kind == "non_contiguous" else expanded(pm)
        plain = variant.contiguous()
        assert same_outcome(
            outcome(lambda: convert(variant, q)), outcome(lambda: convert(plain, q))
        )
    elif kind == "meta_device":
        meta = pm.to("meta")
        if name in READS_VALUES:
            raises_clearly(lambda: convert(meta, q), MaskConventionError, "meta")
        else:
            result, reference = convert(meta, q), convert(pm, q)
            assert isinstance(result, torch.Tensor) and isinstance(reference, torch.Tensor)
            assert result.device.type == "meta" and result.shape == reference.shape
            assert result.dtype == reference.dtype
    elif kind == "query_tokens_negative":
        raises_clearly(
            lambda: convert(pm, data.draw(st.integers(-5, -1))), ValueError, "query_tokens"
        )
    elif kind == "query_tokens_not_int":
        bad = data.draw(st.sampled_from([1.5, True, "1", None, 2.0]))
        raises_clearly(lambda: convert(pm, bad), TypeError, "query_tokens")  # type: ignore[arg-type]
    elif kind == "num_heads_bad":
        heads = data.draw(st.sampled_from([0, -1, -8, 2.0, None, True, "2"]))
        error = ValueError if isinstance(heads, int) and not isinstance(heads, bool) else TypeError
        raises_clearly(lambda: masks.to_attn_mask_3d(pm, heads, q), error, "num_heads")  # type: ignore[arg-type]
    elif kind == "dtype_bad":
        dtype = data.draw(st.sampled_from([torch.int32, torch.bool, "float32", float, None]))
        raises_clearly(lambda: masks.to_additive_mask(pm, dtype, q), TypeError, "dtype")  # type: ignore[arg-type]
    else:
        raise AssertionError(f"untested kind {kind}")


# -- the inverses ------------------------------------------------------------------------------

# name -> (build from point_mask and q, inverse(mask, num_lanes, num_points, q), dtype to use)
INVERSES: dict[
    str,
    tuple[
        Callable[[torch.Tensor, int], torch.Tensor], Callable[..., torch.Tensor], list[torch.dtype]
    ],
] = {
    "from_key_padding_mask": (
        lambda pm, q: masks.to_key_padding_mask(pm, q),
        lambda mask, m, n, q: masks.from_key_padding_mask(mask, m, q),
        [torch.int64, torch.uint8, torch.float32],
    ),
    "from_attn_mask_3d": (
        lambda pm, q: masks.to_attn_mask_3d(pm, 2, q),
        lambda mask, m, n, q: masks.from_attn_mask_3d(mask, 2, m, q),
        [torch.int64, torch.float32],
    ),
    "from_additive_mask": (
        lambda pm, q: masks.to_additive_mask(pm, torch.float32, q),
        lambda mask, m, n, q: masks.from_additive_mask(mask, m, q),
        [torch.int64, torch.bool],
    ),
    "from_sdpa_mask": (
        lambda pm, q: masks.to_sdpa_mask(pm, q),
        lambda mask, m, n, q: masks.from_sdpa_mask(mask, m, q),
        [torch.int64, torch.float64],
    ),
    "from_attention_mask": (
        lambda pm, q: masks.to_attention_mask(pm, q),
        lambda mask, m, n, q: masks.from_attention_mask(mask, m, q),
        [torch.float32, torch.float64],
    ),
    "from_lengths": (
        lambda pm, q: masks.to_lengths(pm, q),
        lambda mask, m, n, q: masks.from_lengths(mask, m, n, q),
        [torch.float32, torch.bool],
    ),
    "from_cu_seqlens": (
        lambda pm, q: masks.to_cu_seqlens(pm, q)[0],
        lambda mask, m, n, q: masks.from_cu_seqlens(mask, m, n, q),
        [torch.float32, torch.bool],
    ),
}
RANK = {
    "from_key_padding_mask": 2,
    "from_attn_mask_3d": 3,
    "from_additive_mask": 4,
    "from_sdpa_mask": 4,
    "from_attention_mask": 2,
    "from_lengths": 1,
    "from_cu_seqlens": 1,
}


def _corrupted(name: str, mask: torch.Tensor, q: int) -> torch.Tensor:
    """A mask of the right shape and dtype whose values no point mask can produce."""
    bad = mask.clone()
    if name == "from_key_padding_mask":
        bad[0, 0] = True  # a masked query column
    elif name == "from_attn_mask_3d":
        bad[1, -1, -1] = ~bad[0, -1, -1]  # head 1 of lane 0 disagrees with head 0
    elif name == "from_additive_mask":
        bad[0, 0, 0, -1] = -1e4  # a finite fill
    elif name == "from_sdpa_mask":
        bad[0, 0, 0, 0] = False  # a masked query column
    elif name == "from_attention_mask":
        bad[0, -1] = 2  # not 0/1
    elif name == "from_lengths":
        bad[0] = 99  # longer than the lane
    else:
        bad[-1] = bad[-1] + 99  # offsets past the end
    return bad


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["masks.from_* inverses (7 functions)"])
@FUZZ
@given(data=st.data(), q=st.integers(1, 2))
def test_inverses(kind: str, data: st.DataObject, q: int) -> None:
    for name in INVERSES:
        _inverse_case(name, kind, data, q)


def _inverse_case(name: str, kind: str, data: st.DataObject, q: int) -> None:
    build, inverse, wrong_dtypes = INVERSES[name]
    pm = _right_padded(data.draw(point_masks()))
    b, m, n = pm.shape
    mask = build(pm, q)
    if kind == "not_a_tensor":
        raises_clearly(lambda: inverse(data.draw(not_tensors), m, n, q), MaskConventionError)
    elif kind == "wrong_rank":
        rank = data.draw(st.sampled_from([r for r in range(6) if r != RANK[name]]))
        bad = torch.zeros((1,) * rank, dtype=mask.dtype)
        raises_clearly(lambda: inverse(bad, m, n, q), MaskConventionError, f"{RANK[name]}-D")
    elif kind == "wrong_dtype":
        dtype = data.draw(st.sampled_from(wrong_dtypes))
        raises_clearly(lambda: inverse(mask.to(dtype), m, n, q), MaskConventionError)
    elif kind == "zero_size":
        empty = data.draw(zero_size_masks())
        _, em, en = empty.shape
        if em == 0:  # no lane per sample: num_lanes must still be >= 1, so nothing to split
            raises_clearly(lambda: inverse(build(empty, q), 0, en, q), ValueError, "num_lanes")
        else:
            assert torch.equal(inverse(build(empty, q), em, en, q), empty)
    elif kind in ("non_contiguous", "expanded"):
        variant = non_contiguous(mask) if kind == "non_contiguous" else expanded(mask)
        plain = variant.contiguous()
        assert same_outcome(
            outcome(lambda: inverse(variant, m, n, q)), outcome(lambda: inverse(plain, m, n, q))
        )
    elif kind == "meta_device":
        raises_clearly(lambda: inverse(mask.to("meta"), m, n, q), MaskConventionError, "meta")
    elif kind == "num_lanes_bad":
        lanes = data.draw(st.sampled_from([0, -1, 2.0, None, True]))
        error = ValueError if isinstance(lanes, int) and not isinstance(lanes, bool) else TypeError
        raises_clearly(lambda: inverse(mask, lanes, n, q), error, "num_lanes")
        if b * m % (m + 1):  # a count that does not divide the rows
            raises_clearly(lambda: inverse(mask, m + 1, n, q), MaskConventionError, "num_lanes")
    elif kind == "query_tokens_bad":
        bad_q = data.draw(st.sampled_from([-1, 1.5, None]))
        error = ValueError if isinstance(bad_q, int) else TypeError
        raises_clearly(lambda: inverse(mask, m, n, bad_q), error, "query_tokens")
    elif kind == "not_a_padding_mask":
        raises_clearly(lambda: inverse(_corrupted(name, mask, q), m, n, q), MaskConventionError)
    elif kind == "requires_grad":
        if not mask.is_floating_point():
            return  # only float masks can require grad
        assert torch.equal(inverse(mask.clone().requires_grad_(), m, n, q), pm)
    else:
        raise AssertionError(f"untested kind {kind}")


# -- pack / unpack / to_nested -----------------------------------------------------------------


@st.composite
def batches(
    draw: st.DrawFn, shape: tuple[int, int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points [B, M, N, 2] float32, point_mask [B, M, N])``, finite real points."""
    pm = draw(point_masks(shape))
    values = draw(arrays(np.float32, (*pm.shape, 2), elements=st.floats(-50, 50, width=32)))
    return torch.from_numpy(values), pm


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["masks.pack / unpack / to_nested"])
@FUZZ
@given(data=st.data())
def test_pack_unpack_nested(kind: str, data: st.DataObject) -> None:
    points, pm = data.draw(batches())
    packed = masks.pack(points, pm)
    if kind == "not_a_tensor":
        bad = data.draw(not_tensors)
        raises_clearly(lambda: masks.pack(bad, pm), MaskConventionError)
        raises_clearly(lambda: masks.unpack(bad, pm), MaskConventionError)
        raises_clearly(lambda: masks.pack(points, bad), MaskConventionError)
    elif kind == "wrong_rank":
        raises_clearly(lambda: masks.pack(points[..., 0], pm), MaskConventionError, "[B, M, N, D]")
        raises_clearly(lambda: masks.unpack(packed[:, 0], pm), MaskConventionError, "[T, C]")
    elif kind == "mismatched_shapes":
        raises_clearly(lambda: masks.pack(points[:, :, :-1], pm), MaskConventionError)
    elif kind in ("mixed_devices", "meta_device"):
        pts_meta = points.to("meta")
        raises_clearly(lambda: masks.pack(pts_meta, pm), MaskConventionError, "device")
        raises_clearly(lambda: masks.unpack(packed.to("meta"), pm), MaskConventionError, "device")
        if kind == "meta_device":
            raises_clearly(lambda: masks.pack(pts_meta, pm.to("meta")), MaskConventionError, "meta")
            raises_clearly(
                lambda: masks.to_nested(pts_meta, pm.to("meta")), MaskConventionError, "meta"
            )
    elif kind == "zero_size":
        empty = data.draw(zero_size_masks())
        pts = torch.zeros((*empty.shape, 2))
        assert masks.pack(pts, empty).shape == (0, 2)
        assert masks.unpack(torch.zeros(0, 3), empty).shape == (*empty.shape, 3)
        assert masks.to_nested(pts, empty).size(0) == empty.shape[0] * empty.shape[1]
    elif kind in ("non_contiguous", "expanded"):
        make = non_contiguous if kind == "non_contiguous" else expanded
        pts_v, pm_v = make(points), make(pm)
        assert torch.equal(
            masks.pack(pts_v, pm_v), masks.pack(pts_v.contiguous(), pm_v.contiguous())
        )
        packed_v = masks.pack(pts_v, pm_v)
        assert torch.equal(masks.unpack(packed_v, pm_v), masks.unpack(packed_v, pm_v.contiguous()))
    elif kind == "requires_grad":
        leaf = points.clone().requires_grad_()
        out = masks.unpack(masks.pack(leaf, pm), pm)
        out.sum().backward()
        assert leaf.grad is not None and torch.equal(
            leaf.grad, pm[..., None].expand_as(leaf).float()
        )
    elif kind == "wrong_row_count":
        extra = torch.cat([packed, packed[:1] if packed.shape[0] else torch.zeros(1, 2)])
        raises_clearly(lambda: masks.unpack(extra, pm), MaskConventionError, "T = point_mask.sum()")
    else:
        raise AssertionError(f"untested kind {kind}")


# -- validate ----------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "key_padding_mask": lambda pm, q: masks.to_key_padding_mask(pm, q),
    "attn_mask_3d": lambda pm, q: masks.to_attn_mask_3d(pm, 2, q),
    "additive": lambda pm, q: masks.to_additive_mask(pm, torch.float32, q),
    "sdpa": lambda pm, q: masks.to_sdpa_mask(pm, q),
    "attention_mask": lambda pm, q: masks.to_attention_mask(pm, q),
    "lengths": lambda pm, q: masks.to_lengths(pm, q),
    "cu_seqlens": lambda pm, q: masks.to_cu_seqlens(pm, q)[0],
}
WRONG_DTYPES = {
    "key_padding_mask": [torch.int64, torch.uint8, torch.float32, torch.float64],
    "attn_mask_3d": [torch.int64, torch.uint8],
    "additive": [torch.int64, torch.bool],
    "sdpa": [torch.int64, torch.uint8, torch.float64],
    "attention_mask": [torch.float32, torch.float64],
    "lengths": [torch.float32, torch.bool],
    "cu_seqlens": [torch.int64, torch.float32],
}


def _validate(mask: object, convention: str, pm: torch.Tensor | None, q: int, **kw: Any) -> None:
    masks.validate(
        mask, convention, point_mask=pm, num_heads=kw.get("num_heads", 2), query_tokens=q
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["masks.validate"])
@FUZZ
@given(data=st.data(), q=st.integers(1, 2))
def test_validate(kind: str, data: st.DataObject, q: int) -> None:
    for convention in BUILDERS:
        _validate_case(convention, kind, data, q)


def _validate_case(convention: str, kind: str, data: st.DataObject, q: int) -> None:
    build = BUILDERS[convention]
    pm = _right_padded(data.draw(point_masks()))
    mask = build(pm, q)
    if kind == "not_a_tensor":
        raises_clearly(
            lambda: _validate(data.draw(not_tensors), convention, pm, q),
            MaskConventionError,
            "tensor",
        )
    elif kind == "unknown_convention":
        name = data.draw(st.text(max_size=12).filter(lambda s: s not in CONVENTIONS))
        raises_clearly(lambda: _validate(mask, name, pm, q), ValueError, "unknown convention")
    elif kind == "wrong_rank":
        bad = mask.reshape(-1) if mask.dim() > 1 else mask[None]
        raises_clearly(lambda: _validate(bad, convention, pm, q), MaskConventionError)
    elif kind == "wrong_dtype":
        dtype = data.draw(st.sampled_from(WRONG_DTYPES[convention]))
        raises_clearly(lambda: _validate(mask.to(dtype), convention, pm, q), MaskConventionError)
    elif kind == "wrong_shape":
        bad = torch.cat([mask, mask[:1]])  # one row too many
        raises_clearly(lambda: _validate(bad, convention, pm, q), MaskConventionError)
    elif kind == "zero_size":
        empty = data.draw(zero_size_masks())
        _validate(build(empty, q), convention, empty, q)
        _validate(build(empty, q), convention, None, q)
    elif kind in ("non_contiguous", "expanded"):
        variant = non_contiguous(mask) if kind == "non_contiguous" else expanded(mask)
        plain = variant.contiguous()
        assert same_outcome(
            outcome(lambda: _validate(variant, convention, pm, q)),
            outcome(lambda: _validate(plain, convention, pm, q)),
        )
        _validate(non_contiguous(mask), convention, non_contiguous(pm), q)  # a correct one: fine
    elif kind == "mixed_devices":
        raises_clearly(
            lambda: _validate(mask.to("meta"), convention, pm, q), MaskConventionError, "device"
        )
    elif kind == "meta_device":
        meta = mask.to("meta")
        raises_clearly(
            lambda: _validate(meta, convention, pm.to("meta"), q), MaskConventionError, "meta"
        )
        raises_clearly(lambda: _validate(meta, convention, None, q), MaskConventionError, "meta")
    elif kind == "inverted_polarity":
        if convention in ("lengths", "cu_seqlens", "additive") or not bool(pm.any()):
            return  # counts have no polarity; an additive mask's opposite is not 0/-inf
        inverted = ~mask if mask.dtype == torch.bool else 1 - mask
        raises_clearly(lambda: _validate(inverted, convention, pm, q), MaskConventionError)
    elif kind == "scalar_args_bad":
        heads = data.draw(st.sampled_from([0, -2, 1.5, True]))
        raises_clearly(
            lambda: _validate(mask, convention, pm, q, num_heads=heads),
            (ValueError, TypeError),
            "num_heads",
        )
        bad_q = data.draw(st.sampled_from([-1, 0.5, None]))
        raises_clearly(
            lambda: _validate(mask, convention, pm, bad_q), (ValueError, TypeError), "query_tokens"
        )  # type: ignore[arg-type]
    elif kind == "point_mask_bad":
        bad = data.draw(st.sampled_from([pm.int(), pm.float(), pm[0], pm[..., None]]))
        raises_clearly(
            lambda: _validate(mask, convention, bad, q), MaskConventionError, "point_mask"
        )
    else:
        raise AssertionError(f"untested kind {kind}")


# -- diagnose ----------------------------------------------------------------------------------

ANY_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
]


def _is_diagnosis(result: object) -> None:
    assert isinstance(result, masks.Diagnosis)
    assert result.mistake is None or result.mistake in MISTAKES
    assert result.convention is None or result.convention in CONVENTIONS
    assert str(result) and result.fix


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["masks.diagnose"])
@FUZZ
@given(data=st.data(), q=st.integers(0, 2), heads=st.integers(1, 3))
def test_diagnose(kind: str, data: st.DataObject, q: int, heads: int) -> None:
    pm = data.draw(point_masks())
    convention = data.draw(st.sampled_from(list(BUILDERS)))
    right = _right_padded(pm)
    if kind == "any_rank_dtype_shape":
        shape = data.draw(st.lists(st.integers(0, 6), max_size=5))
        dtype = data.draw(st.sampled_from(ANY_DTYPES))
        mask = torch.from_numpy(
            data.draw(arrays(np.int8, tuple(shape), elements=st.integers(-1, 2)))
        ).to(dtype)
        _is_diagnosis(masks.diagnose(mask, pm, heads, q))
    elif kind == "not_a_tensor":
        result = masks.diagnose(data.draw(not_tensors), pm, heads, q)  # type: ignore[arg-type]
        _is_diagnosis(result)
        assert result.mistake == "unrecognised"
    elif kind == "nan_inf_values":
        mask = masks.to_additive_mask(pm, torch.float32, q)
        fill = data.draw(st.sampled_from([float("nan"), float("inf"), 1e30, -1e4]))
        mask = mask.masked_fill(mask == 0, fill) if data.draw(st.booleans()) else mask.fill_(fill)
        result = masks.diagnose(mask, pm, heads, q)
        _is_diagnosis(result)
        # NaN or +inf anywhere is no additive mask; a fill that replaced nothing (every slot
        # already -inf, as in an all-padded batch without query tokens) leaves a correct one.
        if bool(mask.isnan().any()) or bool((mask == float("inf")).any()):
            assert not result.ok
    elif kind == "zero_size":
        empty = data.draw(zero_size_masks())
        result = masks.diagnose(BUILDERS[convention](empty, q), empty, 2, q)
        _is_diagnosis(result)
    elif kind in ("non_contiguous", "expanded"):
        mask = BUILDERS[convention](right, q)
        variant = non_contiguous(mask) if kind == "non_contiguous" else expanded(mask)
        a = masks.diagnose(variant, right, 2, q)
        b = masks.diagnose(variant.contiguous(), right, 2, q)
        assert (a.convention, a.mistake, a.advice) == (b.convention, b.mistake, b.advice)
        if kind == "non_contiguous":
            assert a.ok, a.advice
    elif kind == "mixed_devices":
        mask = BUILDERS[convention](right, q)
        raises_clearly(
            lambda: masks.diagnose(mask.to("meta"), right, 2, q), MaskConventionError, "meta"
        )
    elif kind == "meta_device":
        meta = right.to("meta")
        raises_clearly(
            lambda: masks.diagnose(BUILDERS["key_padding_mask"](meta, q), meta, 2, q),
            MaskConventionError,
            "meta",
        )
    elif kind == "point_mask_bad":
        bad = data.draw(st.sampled_from([pm.int(), pm.float(), pm[0], pm[..., None], None, "pm"]))
        raises_clearly(lambda: masks.diagnose(pm, bad, 2, q), MaskConventionError, "point_mask")  # type: ignore[arg-type]
    elif kind == "scalar_args_bad":
        heads_bad = data.draw(st.sampled_from([0, -1, 1.5, True]))
        raises_clearly(
            lambda: masks.diagnose(pm, pm, heads_bad, q), (ValueError, TypeError), "num_heads"
        )  # type: ignore[arg-type]
        q_bad = data.draw(st.sampled_from([-1, 0.5, "1"]))  # None: inferred from the mask
        raises_clearly(
            lambda: masks.diagnose(pm, pm, 2, q_bad), (ValueError, TypeError), "query_tokens"
        )  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown convention"):
            masks.diagnose(pm, pm, 2, q, intended="padding")
    else:
        raise AssertionError(f"untested kind {kind}")


# -- LaneBatch and PriorEncoder.forward --------------------------------------------------------


def tiny_encoder() -> PriorEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PriorEncoder(d_model=8, nhead=2, num_layers=1, dim_feedforward=16).eval()


ENCODER = tiny_encoder()


def _encode(points: object, pm: object) -> torch.Tensor:
    out = ENCODER(points, pm)  # type: ignore[arg-type]
    assert bool(out.lane_embedding.isfinite().all()) and bool(out.point_features.isfinite().all())
    return torch.cat([out.lane_embedding.flatten(), out.point_features.flatten()])


def _close(actual: torch.Tensor, expected: torch.Tensor, n: int) -> None:
    """Within the tolerance rule for the tiny encoder at float32 (a different memory layout
    may change the reduction order)."""
    k, depth = encoder_scale(ENCODER, fallback_length=n + 1)
    rule = tolerance(torch.float32, k, depth)
    torch.testing.assert_close(actual, expected, rtol=rule.rtol, atol=rule.atol)


BATCH_ERRORS: dict[str, tuple[type[Exception], str]] = {
    "not_a_tensor": (TypeError, "Tensor"),
    "wrong_rank": (ValueError, "[B, M, N, D]"),
    "int_points": (TypeError, "floating"),
    "int_mask": (TypeError, "torch.bool"),
    "uint8_mask": (TypeError, "torch.bool"),
    "float_mask": (TypeError, "torch.bool"),
    "float64_mask": (TypeError, "torch.bool"),
    "mismatched_shapes": (ValueError, "shape"),
    "mixed_devices": (ValueError, "device"),
    "meta_device": (ValueError, "meta"),
    "nan_inf_real_points": (ValueError, "finite"),
    "wrong_point_dim": (ValueError, "in_dim"),
    "dtype_mismatch": (TypeError, "dtype"),
    "zero_coordinates": (ValueError, "D >= 1"),
}


def _bad_pair(
    kind: str, data: st.DataObject, points: torch.Tensor, pm: torch.Tensor
) -> tuple[object, object]:
    """The malformed ``(points, point_mask)`` of ``kind``."""
    if kind == "not_a_tensor":
        bad = data.draw(not_tensors)
        return (bad, pm) if data.draw(st.booleans()) else (points, bad)
    if kind == "wrong_rank":
        return (points[..., 0], pm) if data.draw(st.booleans()) else (points[None], pm[None])
    if kind == "int_points":
        return points.to(
            data.draw(st.sampled_from([torch.int32, torch.int64, torch.complex64]))
        ), pm
    if kind in MASK_DTYPES:
        return points, pm.to(data.draw(st.sampled_from(MASK_DTYPES[kind])))
    if kind == "mismatched_shapes":
        extra = (
            torch.cat([pm, pm[..., :1]], -1)
            if data.draw(st.booleans())
            else torch.cat([pm, pm[:, :1]], 1)
        )
        return points, extra  # one point slot or one lane too many
    if kind == "mixed_devices":
        return (points.to("meta"), pm) if data.draw(st.booleans()) else (points, pm.to("meta"))
    if kind == "meta_device":
        return points.to("meta"), pm.to("meta")
    if kind == "nan_inf_real_points":
        fill = data.draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        bad = points.clone()
        bad[tuple(int(i) for i in pm.nonzero()[0])] = fill
        return bad, pm
    if kind == "wrong_point_dim":
        return torch.zeros((*pm.shape, data.draw(st.sampled_from([1, 3]))), dtype=points.dtype), pm
    if kind == "dtype_mismatch":
        return points.to(data.draw(st.sampled_from([torch.float64, torch.float16]))), pm
    if kind == "zero_coordinates":
        return points[..., :0], pm
    raise AssertionError(kind)


def _real_batch(data: st.DataObject) -> tuple[torch.Tensor, torch.Tensor]:
    points, pm = data.draw(batches())
    pm = pm.clone()
    pm[0, 0, 0] = True  # at least one real point
    return points, pm


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["LaneBatch"])
@FUZZ
@given(data=st.data())
def test_lane_batch(kind: str, data: st.DataObject) -> None:
    points, pm = _real_batch(data)
    if kind in BATCH_ERRORS:
        error, word = BATCH_ERRORS[kind]
        bad_points, bad_mask = _bad_pair(kind, data, points, pm)
        raises_clearly(lambda: LaneBatch(bad_points, bad_mask), error, word)  # type: ignore[arg-type]
    elif kind == "zero_size":
        empty = data.draw(zero_size_masks())
        batch = LaneBatch(torch.zeros((*empty.shape, 2)), empty)
        assert batch.lengths.shape == empty.shape[:2] and repr(batch)
        assert [len(sample) for sample in batch.lanes()] == [empty.shape[1]] * empty.shape[0]
    elif kind in ("non_contiguous", "expanded"):
        make = non_contiguous if kind == "non_contiguous" else expanded
        batch = LaneBatch(make(points), make(pm))
        plain = LaneBatch(make(points).contiguous(), make(pm).contiguous())
        assert repr(batch) == repr(plain) and torch.equal(batch.lengths, plain.lengths)
    elif kind == "requires_grad":
        leaf = points.clone().requires_grad_()
        batch = LaneBatch(leaf, pm)
        assert batch.points is leaf  # nothing copied: gradients reach the caller's tensor
    elif kind == "nan_inf_padded_slots":
        fill = data.draw(st.sampled_from([float("nan"), float("inf"), 1e30]))
        batch = LaneBatch(torch.where(pm[..., None], points, fill), pm)
        assert torch.equal(batch.lengths, pm.sum(-1))
    elif kind == "mask_marks_padding_real":
        wrongly_real = pm | data.draw(point_masks(tuple(pm.shape)))  # type: ignore[arg-type]
        assume_more = bool((wrongly_real & ~pm).any())
        garbage = torch.where(pm[..., None], points, float("nan"))
        if assume_more:
            raises_clearly(lambda: LaneBatch(garbage, wrongly_real), ValueError, "finite")
        zero_filled = torch.where(pm[..., None], points, 0.0)
        batch = LaneBatch(zero_filled, wrongly_real)  # a finite fill: encoded as real points
        assert torch.equal(batch.lengths, wrongly_real.sum(-1))
    else:
        raise AssertionError(f"untested kind {kind}")


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["PriorEncoder.forward"])
@FUZZ
@given(data=st.data())
def test_prior_encoder_forward(kind: str, data: st.DataObject) -> None:
    points, pm = _real_batch(data)
    if kind in BATCH_ERRORS:
        error, word = BATCH_ERRORS[kind]
        bad_points, bad_mask = _bad_pair(kind, data, points, pm)
        raises_clearly(lambda: ENCODER(bad_points, bad_mask), error, word)  # type: ignore[arg-type]
    elif kind == "zero_size":
        empty = data.draw(zero_size_masks())
        out = ENCODER(torch.zeros((*empty.shape, 2)), empty)
        assert out.lane_embedding.shape == (*empty.shape[:2], 8)
        assert out.point_features.shape == (*empty.shape, 8)
        assert not bool(out.lane_embedding.any())  # no real lane: exact zeros
    elif kind in ("non_contiguous", "expanded"):
        make = non_contiguous if kind == "non_contiguous" else expanded
        _close(
            _encode(make(points), make(pm)),
            _encode(make(points).contiguous(), make(pm).contiguous()),
            pm.shape[-1],
        )
    elif kind == "requires_grad":
        leaf = points.clone().requires_grad_()
        out = ENCODER(leaf, pm)
        out.lane_embedding.sum().backward()
        assert leaf.grad is not None and bool(leaf.grad.isfinite().all())
        assert not bool(leaf.grad[~pm].any())  # padded slots: exact zero gradient
    elif kind == "nan_inf_padded_slots":
        fill = data.draw(st.sampled_from([float("nan"), float("inf"), -1e30]))
        garbage = _encode(torch.where(pm[..., None], points, fill), pm)
        _close(garbage, _encode(torch.where(pm[..., None], points, 0.0), pm), pm.shape[-1])
    elif kind == "mask_marks_padding_real":
        wrongly_real = pm | data.draw(point_masks(tuple(pm.shape)))  # type: ignore[arg-type]
        if bool((wrongly_real & ~pm).any()):
            nan_filled = torch.where(pm[..., None], points, float("nan"))
            raises_clearly(lambda: ENCODER(nan_filled, wrongly_real), ValueError, "non-finite")
        _encode(torch.where(pm[..., None], points, 0.0), wrongly_real)  # finite fill: real points
    else:
        raise AssertionError(f"untested kind {kind}")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device for a real second device")
def test_cuda_mixed_devices() -> None:
    points, pm = torch.zeros(1, 2, 3, 2), torch.ones(1, 2, 3, dtype=torch.bool)
    raises_clearly(lambda: LaneBatch(points.cuda(), pm), ValueError, "device")
    raises_clearly(lambda: ENCODER(points.cuda(), pm.cuda()), ValueError, "device")
    raises_clearly(lambda: masks.pack(points.cuda(), pm), MaskConventionError, "device")
    kpm = masks.to_key_padding_mask(pm, 1)
    raises_clearly(
        lambda: masks.validate(kpm.cuda(), "key_padding_mask", point_mask=pm, query_tokens=1),
        MaskConventionError,
        "device",
    )


# -- strategies' knobs -------------------------------------------------------------------------


def _draw_one(strategy: st.SearchStrategy[Any]) -> Any:
    """Draw one example (the strategy's errors surface when drawing)."""
    found: list[Any] = []

    @settings(max_examples=1, database=None, deadline=None)
    @given(strategy)
    def draw(value: Any) -> None:
        found.append(value)

    draw()
    return found[0]


SIZE_KNOBS = ["batch_size", "num_lanes", "num_points", "point_dim"]


def _knob_value(kind: str, data: st.DataObject, knob: str) -> dict[str, Any]:
    low = 1 if knob in ("point_dim", "embed_dim") else 0
    if kind == "negative_size":
        return {knob: data.draw(st.integers(-10, low - 1))}
    if kind == "reversed_range":
        lo = data.draw(st.integers(low + 1, 6))
        return {knob: (lo, data.draw(st.integers(low, lo - 1)))}
    if kind == "size_wrong_type":
        return {knob: data.draw(st.sampled_from(["2", 2.0, True, None, (1, 2, 3), (1.0, 2)]))}
    if kind == "size_strategy_draws_bad":
        return {knob: st.just(data.draw(st.integers(-5, low - 1)))}
    if kind == "point_dim_zero":
        return {"point_dim": 0}
    if kind == "unknown_layout":
        return {"layout": data.draw(st.sampled_from(["diagonal", "", 3, ["right", "up"]]))}
    if kind == "unknown_garbage":
        return {"garbage": data.draw(st.sampled_from(["ones", "NaN", 0, ["zeros", "junk"]]))}
    if kind == "non_float_dtype":
        return {
            "dtype": data.draw(
                st.sampled_from([torch.int32, torch.bool, "float32", float, st.just(torch.int8)])
            )
        }
    if kind == "bad_device":
        return {
            "device": data.draw(
                st.sampled_from(
                    ["nowhere", "cuda:x", "meta", 3, None, *([] if HAS_CUDA else ["cuda"])]
                )
            )
        }
    if kind == "bad_coord_range":
        return {
            "coord_range": data.draw(
                st.sampled_from([0, -1.0, float("nan"), float("inf"), "50", None])
            )
        }
    if kind == "non_bool_flag":
        flag = data.draw(st.sampled_from(["empty_lanes", "empty_samples", "all_empty"]))
        return {flag: data.draw(st.sampled_from([1, 0, "yes", None]))}
    if kind == "no_point_slots_but_no_empty_lanes":
        return {"num_points": 0, "empty_lanes": False}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["strategies.lane_batches / padded_tensors"])
@settings(FUZZ, max_examples=6)
@given(data=st.data())
def test_strategy_knobs(kind: str, data: st.DataObject) -> None:
    for entry in ("lane_batches", "padded_tensors"):
        _strategy_case(entry, kind, data)


def _strategy_case(entry: str, kind: str, data: st.DataObject) -> None:
    make = lane_batches if entry == "lane_batches" else padded_tensors
    knob = data.draw(st.sampled_from(SIZE_KNOBS))
    if kind == "zero_size":
        zero = data.draw(st.sampled_from(["batch_size", "num_lanes", "num_points"]))
        drawn = _draw_one(make(**{zero: 0}))
        points = drawn.points if entry == "lane_batches" else drawn[0]
        assert points.shape[SIZE_KNOBS.index(zero)] == 0
        return
    knobs = _knob_value(kind, data, knob)
    raises_clearly(lambda: _draw_one(make(**knobs)), InvalidArgument)


# -- check_encoder's arguments -----------------------------------------------------------------

QUICK = settings(max_examples=1, database=None, deadline=None)


def _check_args(kind: str, data: st.DataObject) -> tuple[dict[str, Any], type[Exception], str]:
    """``(keyword arguments, error type, a word the message must hold)`` for ``kind``."""
    if kind == "point_dim_bad":
        value = data.draw(st.sampled_from([0, -1, 3, True, "2", 2.5]))
        error = ValueError if isinstance(value, int) and not isinstance(value, bool) else TypeError
        return {"point_dim": value}, error, "point_dim"
    if kind == "dtype_bad":
        value = data.draw(
            st.sampled_from([torch.int32, torch.bool, "float8", [], [torch.float32, torch.int8], 3])
        )
        return {"dtype": value}, TypeError if value == 3 else ValueError, "dtype"
    if kind == "device_bad":
        value = data.draw(st.sampled_from(["nowhere", "meta", 7, *([] if HAS_CUDA else ["cuda"])]))
        return {"device": value}, TypeError if value == 7 else ValueError, "device"
    if kind == "settings_bad":
        return (
            {"settings": data.draw(st.sampled_from(["lpim-ci", {"max_examples": 2}, 5]))},
            TypeError,
            "settings",
        )
    if kind == "properties_bad":
        value = data.draw(st.sampled_from([["fast"], [], "finit", ["finite", "runs"]]))
        return {"properties": value}, ValueError, "properties"
    if kind == "sizes_bad":
        knob = data.draw(st.sampled_from(["batch_size", "num_lanes", "num_points"]))
        value = data.draw(st.sampled_from([-1, (3, 1), "2", (1, 2, 3)]))
        # a wrong type is a TypeError, through every door and on both sides
        return {knob: value}, ValueError if value in (-1, (3, 1)) else TypeError, knob
    if kind == "factory_bad":
        value = data.draw(st.sampled_from(["no_colon", ":expr", "module:", 3]))
        return {"factory": value}, TypeError if value == 3 else ValueError, "factory"
    if kind == "deadline_bad":
        value = data.draw(st.sampled_from([0, -1.0, float("inf"), float("nan"), "1s"]))
        return {"deadline": value}, TypeError if value == "1s" else ValueError, "deadline"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["testing.check_encoder arguments"])
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_check_encoder_arguments(kind: str, data: st.DataObject) -> None:
    if kind == "not_callable":
        bad = data.draw(not_tensors | st.just(torch.zeros(2)))
        raises_clearly(
            lambda: check_encoder(bad, point_dim=2, settings=QUICK), TypeError, "callable"
        )  # type: ignore[arg-type]
        return
    kwargs, error, word = _check_args(kind, data)
    raises_clearly(
        lambda: check_encoder(MaskedMeanEncoder(), **{"settings": QUICK, **kwargs}), error, word
    )


def test_check_encoder_accepts_one_property_name() -> None:
    report = check_encoder(
        MaskedMeanEncoder(), dtype=torch.float64, settings=QUICK, properties="finite"
    )
    assert [r.property_name for r in report.results] == ["finite"]


# -- lane sets: LaneSet, lane_sets and check_lane_consumer's arguments ---------------------------

BAD_DEVICES = ["gpu", "cuda:99", "cuda:x", "nowhere", "meta", *([] if HAS_CUDA else ["cuda"])]
"""Device strings that must be refused: unknown to torch, not available here, or ``meta``."""


@st.composite
def lane_pairs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """A valid ``(lane_embedding [B, M, C], lane_mask [B, M])``: real lanes finite, padded
    lanes zeros."""
    b, m, c = draw(positive_sizes)
    lane_mask = torch.from_numpy(draw(arrays(np.bool_, (b, m))))
    values = st.floats(-4, 4, allow_nan=False, allow_infinity=False, width=32)
    embedding = torch.from_numpy(draw(arrays(np.float32, (b, m, c), elements=values)))
    return torch.where(lane_mask[..., None], embedding, 0.0), lane_mask


LANE_SET_ERRORS: dict[str, tuple[type[Exception], str]] = {
    "int_embedding": (TypeError, "lane_embedding"),
    "int_mask": (TypeError, "lane_mask.bool()"),
    "uint8_mask": (TypeError, "lane_mask.bool()"),
    "float_mask": (TypeError, "lane_mask.bool()"),
    "mismatched_shapes": (ValueError, "lane_mask must have shape"),
    "mixed_devices": (ValueError, "device"),
    "meta_device": (ValueError, "meta"),
    "zero_width": (ValueError, "C >= 1"),
    "nan_inf_real_lanes": (ValueError, "finite"),
}


def _bad_lane_pair(
    kind: str, data: st.DataObject, embedding: torch.Tensor, lane_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    b, m, _ = embedding.shape
    if kind == "int_embedding":
        dtype = data.draw(st.sampled_from([torch.int32, torch.int64, torch.bool, torch.uint8]))
        return embedding.to(dtype), lane_mask
    if kind in ("int_mask", "uint8_mask", "float_mask"):
        dtypes = {
            "int_mask": [torch.int8, torch.int32, torch.int64],
            "uint8_mask": [torch.uint8],
            "float_mask": [torch.float16, torch.float32, torch.float64],
        }[kind]
        return embedding, lane_mask.to(data.draw(st.sampled_from(dtypes)))
    if kind == "mismatched_shapes":
        shape = data.draw(
            st.tuples(st.integers(0, 4), st.integers(0, 5)).filter(lambda bm: bm != (b, m))
            | st.sampled_from([(b, m, 1), (b * m,), ()])
        )
        return embedding, torch.ones(shape, dtype=torch.bool)
    if kind == "mixed_devices":  # meta stands in for a second device
        if data.draw(st.booleans()):
            return embedding.to("meta"), lane_mask
        return embedding, lane_mask.to("meta")
    if kind == "meta_device":
        return embedding.to("meta"), lane_mask.to("meta")
    if kind == "zero_width":
        return torch.zeros(b, m, 0), lane_mask
    if kind == "nan_inf_real_lanes":
        real = lane_mask.clone()
        real[data.draw(st.integers(0, b - 1)), data.draw(st.integers(0, m - 1))] = True
        bad = embedding.clone()
        bad[real] = data.draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        return bad, real
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["LaneSet"])
@FUZZ
@given(data=st.data())
def test_lane_set(kind: str, data: st.DataObject) -> None:
    embedding, lane_mask = data.draw(lane_pairs())
    if kind in LANE_SET_ERRORS:
        error, word = LANE_SET_ERRORS[kind]
        bad_embedding, bad_mask = _bad_lane_pair(kind, data, embedding, lane_mask)
        raises_clearly(lambda: LaneSet(bad_embedding, bad_mask), error, word)
    elif kind == "not_a_tensor":
        bad: Any = data.draw(not_tensors)
        if data.draw(st.booleans()):
            raises_clearly(lambda: LaneSet(bad, lane_mask), TypeError, "lane_embedding")
        else:
            raises_clearly(lambda: LaneSet(embedding, bad), TypeError, "lane_mask")
    elif kind == "wrong_rank":
        rank = data.draw(st.sampled_from([0, 1, 2, 4, 5]))
        wrong = torch.zeros((2,) * rank)
        mask = torch.ones(wrong.shape[:2], dtype=torch.bool)
        raises_clearly(lambda: LaneSet(wrong, mask), ValueError, "[B, M, C]")
    elif kind == "zero_size":
        b, m = data.draw(st.sampled_from([(0, 3), (2, 0), (0, 0)]))
        lanes = LaneSet(torch.zeros(b, m, 4), torch.zeros(b, m, dtype=torch.bool))
        assert lanes.shape == (b, m, 4) and repr(lanes)
    elif kind in ("non_contiguous", "expanded"):
        make = non_contiguous if kind == "non_contiguous" else expanded
        lanes = LaneSet(make(embedding), make(lane_mask))
        plain = LaneSet(make(embedding).contiguous(), make(lane_mask).contiguous())
        assert repr(lanes) == repr(plain)
    elif kind == "requires_grad":
        leaf = embedding.clone().requires_grad_()
        assert LaneSet(leaf, lane_mask).lane_embedding is leaf  # nothing copied
    elif kind == "nan_inf_padded_lanes":
        fill = data.draw(st.sampled_from([float("nan"), float("inf"), -1e30]))
        lanes = LaneSet(torch.where(lane_mask[..., None], embedding, fill), lane_mask)
        assert lanes.shape == tuple(embedding.shape)
    elif kind == "args_kwargs_bad":
        which = data.draw(st.sampled_from(["args", "kwargs"]))
        choices: list[Any] = [[1], None, 3, "q"] if which == "args" else [[1], None, 3, ("a", 1)]
        extra: dict[str, Any] = {which: data.draw(st.sampled_from(choices))}
        raises_clearly(lambda: LaneSet(embedding, lane_mask, **extra), TypeError, which)
    elif kind == "to_bad":
        lanes = LaneSet(embedding, lane_mask)
        if data.draw(st.booleans()):
            device: Any = data.draw(st.sampled_from([*BAD_DEVICES, 3]))
            error = TypeError if device == 3 else ValueError
            raises_clearly(lambda: lanes.to(device=device), error, "device")
        else:
            dtype: Any = data.draw(st.sampled_from([torch.int32, torch.bool, "float16", float]))
            raises_clearly(lambda: lanes.to(dtype=dtype), TypeError, "dtype")
    else:
        raise AssertionError(f"untested kind {kind}")


LANE_SET_KNOBS = ["batch_size", "num_lanes", "embed_dim"]


def _lane_sets_knobs(kind: str, data: st.DataObject) -> dict[str, Any]:
    if kind in ("negative_size", "reversed_range", "size_wrong_type", "size_strategy_draws_bad"):
        return _knob_value(kind, data, data.draw(st.sampled_from(LANE_SET_KNOBS)))
    if kind == "embed_dim_zero":
        return {"embed_dim": data.draw(st.sampled_from([0, (0, 0), st.just(0)]))}
    if kind in ("unknown_garbage", "non_float_dtype", "non_bool_flag"):
        return _knob_value(kind, data, "")
    if kind == "bad_device":
        return {"device": data.draw(st.sampled_from([*BAD_DEVICES, 3, None]))}
    if kind == "bad_value_range":
        bad: list[Any] = [0, -1.0, float("nan"), float("inf"), "4", None, True]
        return {"value_range": data.draw(st.sampled_from(bad))}
    if kind == "other_inputs_not_callable":
        not_callables: list[Any] = [5, "bev_queries", [1], (st.just(()),)]
        return {"other_inputs": data.draw(st.sampled_from(not_callables))}
    if kind == "other_inputs_returns_bad":
        returned = data.draw(st.sampled_from([5, (), None, st.just(5), st.just([1, 2])]))
        return {"other_inputs": lambda b, dtype, device: returned}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["strategies.lane_sets"])
@settings(FUZZ, max_examples=6)
@given(data=st.data())
def test_lane_sets_knobs(kind: str, data: st.DataObject) -> None:
    if kind == "zero_size":
        zero = data.draw(st.sampled_from(["batch_size", "num_lanes"]))
        lanes = _draw_one(lane_sets(**{zero: 0}))
        assert lanes.shape[LANE_SET_KNOBS.index(zero)] == 0
        return
    knobs = _lane_sets_knobs(kind, data)
    (name,) = knobs
    raises_clearly(lambda: _draw_one(lane_sets(**knobs)), InvalidArgument, name)


CONSUMER = MaskedMeanPool(embed_dim=4).eval()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _consumer_args(kind: str, data: st.DataObject) -> tuple[dict[str, Any], type[Exception], str]:
    """``(keyword arguments, error type, a word the message must hold)`` for ``kind``: a
    wrong type gives TypeError, a wrong value ValueError."""
    if kind == "embed_dim_bad":
        value = data.draw(st.integers(-10, 0) | st.sampled_from([True, "4", 4.0, (1, 4)]))
        return {"embed_dim": value}, ValueError if _is_int(value) else TypeError, "embed_dim"
    if kind == "other_inputs_bad":
        other: list[Any] = [5, "bev_queries", [bev_queries()], torch.zeros(1)]
        return {"other_inputs": data.draw(st.sampled_from(other))}, TypeError, "other_inputs"
    if kind in ("order_invariant_bad", "strict_bad"):
        name = kind.removesuffix("_bad")
        flags: list[Any] = [1, 0, "yes", 1.0]  # None leaves the default, as for every keyword
        return {name: data.draw(st.sampled_from(flags))}, TypeError, name
    if kind == "threads_bad":
        value = data.draw(st.integers(-5, 0) | st.sampled_from(["2", True, 1.5]))
        return {"threads": value}, ValueError if _is_int(value) else TypeError, "threads"
    if kind == "progress_bad":
        progress: list[Any] = [5, "print", [print]]
        return {"progress": data.draw(st.sampled_from(progress))}, TypeError, "progress"
    if kind == "sizes_bad":
        knob = data.draw(st.sampled_from(["batch_size", "num_lanes"]))
        value = data.draw(
            st.integers(-5, -1)
            | st.tuples(st.integers(1, 5), st.integers(-5, 0))
            | st.sampled_from(["2", 2.5, True, (1, 2, 3), (1, "2"), [1, 2]])
        )
        ints = _is_int(value) or (
            isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) for v in value)
        )
        return {knob: value}, ValueError if ints else TypeError, knob
    if kind == "device_bad":
        device: Any = data.draw(st.sampled_from([*BAD_DEVICES, 7, torch.float32]))
        return {"device": device}, ValueError if isinstance(device, str) else TypeError, "device"
    if kind == "properties_bad":
        names: list[Any] = [["fast"], [], "finit", ["finite", "runs"], "runs", 5]
        value = data.draw(st.sampled_from(names))
        return {"properties": value}, TypeError if value == 5 else ValueError, "properties"
    return _check_args(kind, data)  # the arguments check_encoder shares: same draws, same errors


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["testing.check_lane_consumer arguments"])
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_check_lane_consumer_arguments(kind: str, data: st.DataObject) -> None:
    if kind == "not_callable":
        bad: Any = data.draw(not_tensors | st.just(torch.zeros(2)))
        raises_clearly(
            lambda: check_lane_consumer(bad, embed_dim=4, settings=QUICK), TypeError, "callable"
        )
        return
    kwargs, error, word = _consumer_args(kind, data)
    raises_clearly(
        lambda: check_lane_consumer(CONSUMER, **{"settings": QUICK, **kwargs}), error, word
    )


def test_check_lane_consumer_accepts_one_property_name() -> None:
    """A bare string is one name, as in check_encoder (never iterated letter by letter)."""
    report = check_lane_consumer(CONSUMER, dtype=torch.float64, settings=QUICK, properties="finite")
    assert [r.property_name for r in report.results] == ["finite"]


def _message(call: Callable[[], object]) -> str:
    try:
        call()
    except (ValueError, TypeError) as error:
        return str(error)
    raise AssertionError(f"no error from {call}")


@pytest.mark.parametrize(
    "mistake",
    [{"device": "gpu"}, {"device": "meta"}, {"device": 7}, {"settings": 5}, {"factory": 3}],
)
def test_one_wording_per_mistake_in_the_checks(mistake: dict[str, Any]) -> None:
    """The same mistake made to check_encoder and check_lane_consumer: the same message."""
    encoder = _message(lambda: check_encoder(MaskedMeanEncoder(), **mistake))
    consumer = _message(lambda: check_lane_consumer(CONSUMER, **mistake))
    assert encoder == consumer


@pytest.mark.parametrize(
    "mistake", [{"device": "gpu"}, {"device": 3}, {"empty_lanes": 1}, {"dtype": torch.int8}]
)
def test_one_wording_per_mistake_in_the_strategies(mistake: dict[str, Any]) -> None:
    """The same knob mistake made to lane_batches and lane_sets: the same message."""
    batches = _message(lambda: _draw_one(lane_batches(**mistake)))
    sets = _message(lambda: _draw_one(lane_sets(**mistake)))
    assert batches == sets


def test_one_wording_for_a_bad_dtype_or_device_of_to() -> None:
    """LaneSet.to says what lane_sets says of the same dtype or device."""
    lanes = LaneSet(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool))
    assert _message(lambda: lanes.to(dtype=torch.int8)) == _message(
        lambda: _draw_one(lane_sets(dtype=torch.int8))
    )
    assert _message(lambda: lanes.to(device="gpu")) == _message(
        lambda: _draw_one(lane_sets(device="gpu"))
    )


# -- the CLI's arguments -----------------------------------------------------------------------

TARGET = "lpim.zoo.misbehaving:MaskedMeanEncoder"


def _cli_argv(kind: str, data: st.DataObject) -> tuple[list[str], str]:
    """``(argv, a word stderr must hold)`` for ``kind``."""
    if kind == "target_bad":
        target = data.draw(
            st.sampled_from(
                [
                    "lpim.encoder",
                    "no_such_module_xyz:E",
                    "lpim.encoder:Nope",
                    "lpim:__version__",
                    ":",
                    "lpim.zoo.misbehaving:MaskedMeanEncoder(",
                ]
            )
        )
        return ["check", target], "check"
    if kind == "dtype_bad":
        return [
            "check",
            TARGET,
            "--dtype",
            data.draw(st.sampled_from(["int8", "float", "fp16", ""])),
        ], "--dtype"
    if kind == "property_bad":
        return [
            "check",
            TARGET,
            "--property",
            data.draw(st.sampled_from(["fast", "runs", "inputs_unchanged", ""])),
        ], "--property"
    if kind == "point_dim_bad":
        value = data.draw(st.sampled_from(["0", "-1", "3", "abc", "2.5"]))
        return ["check", TARGET, "--point-dim", value], "--point-dim"  # the flag, never the keyword
    if kind == "max_examples_bad":
        value = data.draw(st.sampled_from(["0", "-3", "x"]))
        return ["check", TARGET, "--max-examples", value], "--max-examples"
    if kind == "device_bad":
        value = data.draw(st.sampled_from(["nowhere", "meta", *([] if HAS_CUDA else ["cuda"])]))
        return ["check", TARGET, "--device", value], "device"
    if kind == "deadline_bad":
        value = data.draw(st.sampled_from(["0", "-1", "inf", "nan", "1s"]))
        return ["check", TARGET, "--deadline", value], "--deadline"
    if kind == "unknown_option":
        return [
            "check",
            TARGET,
            data.draw(st.sampled_from(["--fast", "--seed=3", "-z"])),
        ], "unrecognized"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["lpim check (CLI arguments)"])
@settings(FUZZ, max_examples=6)
@given(data=st.data())
def test_cli_arguments(
    kind: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    argv, word = _cli_argv(kind, data)
    _usage_error(argv, word, tmp_path_factory, reproducers=kind != "unknown_option")


CONSUMER_TARGET = "lpim.zoo.consumers:MaskedMeanPool"


def _consumer_cli_argv(kind: str, data: st.DataObject) -> tuple[list[str], str]:
    """``(argv, a word stderr must hold)`` for ``kind`` of ``lpim check-consumer``."""
    if kind == "target_bad":
        target = data.draw(
            st.sampled_from(["lpim.zoo.consumers", "no_such_module_xyz:C", "lpim:__version__"])
        )
        return ["check-consumer", target], "check-consumer"
    argv = ["check-consumer", CONSUMER_TARGET]
    if kind == "other_inputs_bad":
        value = data.draw(
            st.sampled_from(["lpim:__version__", "no_such_module_xyz:f", "lpim.strategies:nope"])
        )
        return [*argv, "--other-inputs", value], "other-inputs"
    if kind == "embed_dim_bad":
        value = data.draw(st.sampled_from(["0", "-3", "x", "2.5"]))
        return [*argv, "--embed-dim", value], "--embed-dim"
    if kind == "dtype_bad":
        return [*argv, "--dtype", data.draw(st.sampled_from(["int8", "fp16", ""]))], "--dtype"
    if kind == "property_bad":
        value = data.draw(st.sampled_from(["fast", "runs", "ignores_padding", ""]))
        return [*argv, "--property", value], "--property"
    if kind == "device_bad":
        return [*argv, "--device", data.draw(st.sampled_from(BAD_DEVICES))], "device"
    if kind == "sizes_bad":
        flag = data.draw(st.sampled_from(["--batch-size", "--num-lanes"]))
        return [*argv, flag, data.draw(st.sampled_from(["-1", "3-1", "x", "1.5"]))], flag
    if kind == "threads_bad":
        return [*argv, "--threads", data.draw(st.sampled_from(["0", "-2", "x"]))], "--threads"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", BAD_INPUT_KINDS["lpim check-consumer (CLI arguments)"])
@settings(FUZZ, max_examples=6)
@given(data=st.data())
def test_consumer_cli_arguments(
    kind: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    argv, word = _consumer_cli_argv(kind, data)
    _usage_error(argv, word, tmp_path_factory, reproducers=True)


def _usage_error(
    argv: list[str], word: str, tmp_path_factory: pytest.TempPathFactory, *, reproducers: bool
) -> None:
    """``lpim *argv`` exits 2 with a one-line error naming ``word``, and runs nothing."""
    import contextlib
    import io

    directory: Path = tmp_path_factory.mktemp("reproducers")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*argv, "--reproducer-dir", str(directory)] if reproducers else argv)
    message = err.getvalue()
    assert status == 2, (argv, out.getvalue(), message)
    assert "Traceback" not in message and "error:" in message and word in message, message
    assert not out.getvalue().strip(), out.getvalue()  # nothing ran


def test_closing_figures() -> None:
    """The figures the issue asks for: kinds per entry point (and in all), each one tested."""
    counts = {entry: len(kinds) for entry, kinds in BAD_INPUT_KINDS.items()}
    assert all(len(set(kinds)) == len(kinds) for kinds in BAD_INPUT_KINDS.values())
    assert sum(counts.values()) >= 100, counts
