"""Fuzzed doors of lpim's core: no raw traceback from inside lpim (issue 20).

Each door (a public function, constructor, method or CLI command of the core) gets bad
arguments drawn by Hypothesis: wrong types, negative, zero and huge sizes, devices torch knows
but this machine lacks, sparse, nested, meta and zero-size tensors, non-bool masks. Every call
either succeeds with a result checked to be correct, or raises an `lpim._errors.UsageError`
(Hypothesis' `InvalidArgument` for a strategy's knobs; a plain `ValueError` / `TypeError`
naming the argument for the vendorable `lpim/encoder.py`), never anything else: no
`KeyError`, `IndexError`, `AttributeError`, `RuntimeError` or `AssertionError` from inside
lpim or torch.

"Huge" sizes are drawn at 1e13 and beyond: far past this machine's memory, so that an
allocation fails at once rather than being overcommitted and then filled. The examples per
door are `EXAMPLES` (printed by `test_print_example_counts` under `pytest -s`).

The deterministic tests at the end check that one mistake gets one sentence, whichever door
it comes through (`lpim._validation` holds the wording).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from lpim import LaneBatch, LaneSet, PriorEncoder, masks
from lpim._errors import UsageError
from lpim._validation import check_device, check_int, dense_message
from lpim.batch import Layout
from lpim.cli import main
from lpim.encoder import PriorEncoderLayer
from lpim.strategies import bev_maps, bev_queries, garbage_fills, lane_batches, lane_sets

EXAMPLES: dict[str, int] = {
    "check_device": 150,
    "LaneBatch.to": 100,
    "LaneBatch.from_lanes": 150,
    "LaneBatch(...)": 100,
    "LaneSet": 100,
    "PriorEncoder(...)": 80,
    "PriorEncoderLayer(...)": 60,
    "PriorEncoder.forward": 60,
    "masks.to_*": 150,
    "masks.from_*": 150,
    "masks.pack/unpack/to_nested": 100,
    "masks.diagnose": 150,
    "masks.validate": 100,
    "strategies.lane_batches/lane_sets": 80,
    "strategies.bev_queries/bev_maps": 60,
    "strategies.garbage_fills": 60,
    "lpim vendor": 12,
    "lpim diagnose": 30,
}
"""Hypothesis examples per door."""


def _settings(door: str) -> settings:
    return settings(
        max_examples=EXAMPLES[door],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


HUGE = st.sampled_from([10**13, 10**15, 2**62, 2**70, 10**30])
"""Sizes far beyond this machine's memory (and beyond int64)."""
NOT_AN_INT = st.sampled_from([None, "3", 2.0, 1.5, True, False, [2], (1,), object(), b"2"])
DEVICE_TYPES = [
    "cpu",
    "cuda",
    "mps",
    "xpu",
    "hpu",
    "ipu",
    "xla",
    "lazy",
    "vulkan",
    "mtia",
    "privateuseone",
    "meta",
    "fpga",
    "maia",
    "ve",
    "hip",
]
DEVICES = st.one_of(
    st.sampled_from(DEVICE_TYPES),
    st.builds(lambda t, i: f"{t}:{i}", st.sampled_from(DEVICE_TYPES), st.integers(0, 9)),
    st.sampled_from(["gpu", "tpu", "cuda:-1", "", "cpu:x", "CUDA", "cuda:0:1", " cpu"]),
    st.builds(torch.device, st.sampled_from(["cpu", "meta"])),
    st.text(max_size=8),
    st.integers(-2, 9),
    st.sampled_from([None, 1.0, True, b"cpu", ["cpu"]]),
)
"""Device arguments: types torch knows (most absent here), unknown names, wrong types."""
DTYPES = st.sampled_from(
    [
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.uint8,
        torch.bool,
        torch.complex64,
        "float32",
        float,
        None,
        5,
    ]
)


def _nested(*components: torch.Tensor) -> torch.Tensor:
    """A (strided-layout) nested tensor, without torch's prototype-API warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.nested.nested_tensor(list(components))


def usage_or_result(call: Callable[[], Any], *errors: type[BaseException]) -> Any:
    """`call()`'s result, or None when it raised a `UsageError` (or one of `errors`); any other
    exception fails the test, naming its type."""
    allowed = (UsageError, *errors)
    try:
        return call()
    except allowed as error:
        message = str(error)
        assert message and "\n  File " not in message, message
        return None
    except Exception as error:  # the door leaked an internal error
        raise AssertionError(f"{type(error).__name__} leaked: {error}") from error


def _on_cpu_only(device: object) -> bool:
    """True when `device` names this machine's CPU (where a success can be checked)."""
    try:
        return torch.device(device).type == "cpu"  # type: ignore[arg-type]
    except Exception:
        return False


# -- lpim._validation.check_device --------------------------------------------------------------


@_settings("check_device")
@given(device=DEVICES)
def test_check_device_gives_a_device_that_works_or_a_usage_error(device: object) -> None:
    chosen = usage_or_result(lambda: check_device(device))
    if chosen is not None:
        assert torch.empty(1, device=chosen).device.type == chosen.type  # it really is usable


@pytest.mark.parametrize("device", ["mps", "xpu", "hpu", "ipu", "xla", "lazy", "vulkan", "mtia"])
def test_check_device_says_a_device_torch_knows_is_not_available(device: str) -> None:
    try:
        torch.empty(0, device=device)
    except Exception:
        pass
    else:
        pytest.skip(f"torch can place tensors on {device!r} here")
    with pytest.raises(UsageError, match=rf"device must be available; got '{device}', but "):
        check_device(device)


# -- LaneBatch ----------------------------------------------------------------------------------


def _small_batch() -> LaneBatch:
    return LaneBatch.from_lanes([[torch.zeros(3, 2)], [torch.ones(1, 2), torch.ones(2, 2)]])


@_settings("LaneBatch.to")
@given(device=st.one_of(st.none(), DEVICES), dtype=st.one_of(st.none(), DTYPES))
def test_lane_batch_to(device: object, dtype: object) -> None:
    batch = _small_batch()
    moved = usage_or_result(lambda: batch.to(device, dtype))  # type: ignore[arg-type]
    if moved is not None:
        assert isinstance(moved, LaneBatch)
        if dtype is not None:
            assert moved.points.dtype == dtype
        if device is not None:
            assert moved.points.device.type == torch.device(device).type  # type: ignore[arg-type]
        assert torch.equal(moved.point_mask.cpu(), batch.point_mask)
        assert torch.equal(
            moved.points.cpu().double(), batch.points.to(moved.points.dtype).double()
        )


SIZES = st.one_of(st.integers(0, 4), st.integers(-3, -1), HUGE, NOT_AN_INT)
LANE_TENSORS = st.one_of(
    st.builds(lambda n, d: torch.randn(n, d), st.integers(0, 4), st.integers(1, 3)),
    st.builds(lambda n: torch.randn(n, 2).to_sparse(), st.integers(1, 3)),
    st.builds(lambda n: torch.zeros(n, 2, device="meta"), st.integers(0, 3)),
    st.builds(lambda n: torch.zeros(n, 2, dtype=torch.int64), st.integers(0, 3)),
    st.just(torch.zeros(2, 2, dtype=torch.bool)),
    st.just(torch.zeros(2, 2, dtype=torch.complex64)),
    st.just(torch.full((2, 2), float("nan"))),
    st.just(torch.zeros(3)),
    st.just(torch.zeros(1, 2, 2)),
    st.sampled_from([None, 3, "lane", [[0.0, 1.0]]]),
)
LANES = st.one_of(
    st.lists(st.lists(LANE_TENSORS, max_size=3), max_size=3),
    st.sampled_from([None, 5, "ab", b"ab", torch.zeros(2, 3, 2), [torch.zeros(3, 2)], [5]]),
)


@_settings("LaneBatch.from_lanes")
@given(
    lanes=LANES,
    num_lanes=st.one_of(st.none(), SIZES),
    num_points=st.one_of(st.none(), SIZES),
    layout=st.sampled_from(["right", "left", "scattered", "middle", 5, None, ["right"]]),
    point_dim=st.one_of(st.none(), SIZES),
    dtype=st.one_of(st.none(), DTYPES),
    device=st.one_of(st.none(), DEVICES),
    fill=st.sampled_from([0.0, -1, float("nan"), float("inf"), 1e300, "x", None, True]),
)
def test_lane_batch_from_lanes(**kwargs: Any) -> None:
    batch = usage_or_result(lambda: LaneBatch.from_lanes(**kwargs))
    if batch is None:
        return
    lanes = kwargs["lanes"]
    b, m, n, _ = batch.shape
    assert b == len(lanes)
    assert all(len(sample) <= m for sample in lanes)
    # The round trip: every lane's points, in order (not through 1e13 empty lane slots).
    if b * m <= 100 and n <= 100:
        got = batch.lanes()
        for sample, out in zip(lanes, got, strict=True):
            for lane, back in zip(sample, out, strict=False):
                assert torch.equal(back.cpu(), lane.to(back.dtype).cpu())


POINTS = st.one_of(
    st.builds(torch.zeros, st.tuples(*[st.integers(0, 2)] * 3, st.integers(0, 2))),
    st.just(torch.zeros(1, 1, 2, 2).to_sparse()),
    st.just(torch.zeros(1, 1, 2, 2, device="meta")),
    st.just(torch.zeros(1, 1, 2, 2, dtype=torch.int64)),
    st.just(torch.zeros(1, 1, 2, 2, dtype=torch.complex64)),
    st.just(torch.full((1, 1, 2, 2), float("nan"))),
    st.just(torch.zeros(1, 2, 2)),
    st.sampled_from([None, 0.0, [[[[0.0, 0.0]]]]]),
)
POINT_MASKS = st.one_of(
    st.builds(
        lambda shape, p: torch.rand(shape) < p,
        st.tuples(*[st.integers(0, 2)] * 3),
        st.floats(0, 1),
    ),
    st.just(torch.ones(1, 1, 2, dtype=torch.bool).to_sparse()),
    st.just(torch.ones(1, 1, 2, dtype=torch.bool, device="meta")),
    st.just(torch.ones(1, 1, 2, dtype=torch.int64)),
    st.just(torch.ones(1, 1, 2, dtype=torch.float32)),
    st.just(torch.ones(1, 2, dtype=torch.bool)),
    st.sampled_from([None, True, [[[True, True]]]]),
)


@_settings("LaneBatch(...)")
@given(points=POINTS, point_mask=POINT_MASKS)
def test_lane_batch_constructor(points: object, point_mask: object) -> None:
    batch = usage_or_result(lambda: LaneBatch(points, point_mask))  # type: ignore[arg-type]
    if batch is not None:
        assert isinstance(points, torch.Tensor) and isinstance(point_mask, torch.Tensor)
        assert points.is_floating_point() and point_mask.dtype == torch.bool
        real = points[point_mask]  # [R, D]
        assert bool(real.isfinite().all())
        repr(batch)
        assert batch.layout in get_args(Layout)


# -- LaneSet ------------------------------------------------------------------------------------


EMBEDDINGS = st.one_of(
    st.builds(torch.zeros, st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 3))),
    st.just(torch.zeros(1, 2, 3).to_sparse()),
    st.just(torch.zeros(1, 2, 3, device="meta")),
    st.just(torch.zeros(1, 2, 3, dtype=torch.int64)),
    st.just(torch.full((1, 2, 3), float("inf"))),
    st.sampled_from([None, 1.0]),
)
LANE_MASKS = st.one_of(
    st.builds(lambda shape: torch.rand(shape) < 0.5, st.tuples(*[st.integers(0, 2)] * 2)),
    st.just(torch.ones(1, 2, dtype=torch.bool).to_sparse()),
    st.just(torch.ones(1, 2, dtype=torch.uint8)),
    st.sampled_from([None, [[True, False]]]),
)


@_settings("LaneSet")
@given(
    embedding=EMBEDDINGS,
    lane_mask=LANE_MASKS,
    args=st.sampled_from([(), (torch.zeros(1, 2),), [1], None]),
    kwargs=st.sampled_from([{}, {"q": torch.zeros(1)}, [("q", 1)], None]),
    device=st.one_of(st.none(), DEVICES),
    dtype=st.one_of(st.none(), DTYPES),
    consumer=st.sampled_from([lambda e, m, *a, **k: e.sum(), 5, None]),
)
def test_lane_set(
    embedding: object,
    lane_mask: object,
    args: object,
    kwargs: object,
    device: object,
    dtype: object,
    consumer: object,
) -> None:
    lanes = usage_or_result(lambda: LaneSet(embedding, lane_mask, args, kwargs))  # type: ignore[arg-type]
    if lanes is None:
        return
    repr(lanes)
    moved = usage_or_result(lambda: lanes.to(device, dtype))  # type: ignore[arg-type]
    if moved is not None and dtype is not None:
        assert moved.lane_embedding.dtype == dtype
    out = usage_or_result(lambda: lanes.call(consumer))
    if out is not None:
        assert torch.equal(out, lanes.lane_embedding.sum())


# -- lpim/encoder.py: plain ValueError / TypeError naming the argument ----------------------------


ENCODER_SIZES = st.one_of(st.sampled_from([1, 2, 4, 8]), st.integers(-2, 0), HUGE, NOT_AN_INT)


def _names_the_argument(call: Callable[[], Any], names: list[str]) -> Any:
    """`call()`'s result, or None after a ValueError / TypeError whose message names one of
    `names`; anything else fails."""
    try:
        return call()
    except (ValueError, TypeError) as error:
        message = str(error)
        assert any(name in message for name in names), (names, message)
        assert "must" in message or "lower" in message, message
        return None
    except Exception as error:
        raise AssertionError(f"{type(error).__name__} leaked: {error}") from error


@_settings("PriorEncoder(...)")
@given(
    kwargs=st.fixed_dictionaries(
        {},
        optional={
            "in_dim": ENCODER_SIZES,
            "d_model": ENCODER_SIZES,
            "nhead": ENCODER_SIZES,
            "num_layers": ENCODER_SIZES,
            "dim_feedforward": ENCODER_SIZES,
            "dropout": st.sampled_from([0.0, 0.5, 1.0, -0.1, 2, float("nan"), "0.1", None]),
            "norm_first": st.sampled_from([True, False, "yes", 1, None]),
            "coord_range": st.sampled_from([1.0, 50, 0, -1.0, float("inf"), "50", None]),
            "packed": st.sampled_from([None, True, False, 1, "yes"]),
        },
    )
)
def test_prior_encoder_constructor(kwargs: dict[str, Any]) -> None:
    small = {"d_model": 8, "nhead": 2, "num_layers": 1, "dim_feedforward": 8} | kwargs
    encoder = _names_the_argument(lambda: PriorEncoder(**small), list(kwargs))
    if encoder is None:
        return
    encoder.eval()
    d = small.get("in_dim", 2)
    points = torch.randn(2, 3, 4, d)
    point_mask = torch.rand(2, 3, 4) < 0.6
    out = encoder(points, point_mask)
    assert out.lane_embedding.shape == (2, 3, small["d_model"])
    assert bool(out.lane_embedding.isfinite().all())
    assert bool((out.lane_embedding[~point_mask.any(-1)] == 0).all())


@_settings("PriorEncoderLayer(...)")
@given(
    d_model=ENCODER_SIZES,
    nhead=ENCODER_SIZES,
    dim_feedforward=ENCODER_SIZES,
    dropout=st.sampled_from([0.0, 0.1, -1, 1.5, "x"]),
    norm_first=st.sampled_from([True, False, None, "no"]),
)
def test_prior_encoder_layer_constructor(**kwargs: Any) -> None:
    layer = _names_the_argument(lambda: PriorEncoderLayer(**kwargs), list(kwargs))
    if layer is not None:
        reference = torch.nn.TransformerEncoderLayer(
            kwargs["d_model"], kwargs["nhead"], kwargs["dim_feedforward"], batch_first=True
        )
        assert set(layer.state_dict()) >= set(reference.state_dict())


@_settings("PriorEncoder.forward")
@given(points=POINTS, point_mask=POINT_MASKS)
def test_prior_encoder_forward(points: object, point_mask: object) -> None:
    encoder = PriorEncoder(d_model=8, nhead=2, num_layers=1, dim_feedforward=8).eval()
    out = _names_the_argument(lambda: encoder(points, point_mask), ["points", "point_mask"])
    if out is not None:
        assert isinstance(point_mask, torch.Tensor)
        assert out.lane_embedding.shape == (*point_mask.shape[:2], 8)
        assert bool(out.lane_embedding.isfinite().all())


# -- lpim.masks ---------------------------------------------------------------------------------


QUERY_TOKENS = st.one_of(st.integers(0, 3), st.integers(-3, -1), HUGE, NOT_AN_INT)
NUM_HEADS = st.one_of(st.integers(1, 4), st.integers(-2, 0), HUGE, NOT_AN_INT)
MASK_POINT_MASKS = st.one_of(
    POINT_MASKS,
    st.just(_nested(torch.ones(2, 3, dtype=torch.bool))),
    st.just(torch.ones(0, 0, 0, dtype=torch.bool)),
)
TO = {
    "to_key_padding_mask": masks.to_key_padding_mask,
    "to_sdpa_mask": masks.to_sdpa_mask,
    "to_attention_mask": masks.to_attention_mask,
    "to_lengths": masks.to_lengths,
    "keep_tokens": masks.keep_tokens,
}


@_settings("masks.to_*")
@given(
    name=st.sampled_from([*TO, "to_attn_mask_3d", "to_additive_mask", "to_cu_seqlens"]),
    point_mask=MASK_POINT_MASKS,
    query_tokens=QUERY_TOKENS,
    num_heads=NUM_HEADS,
    dtype=DTYPES,
)
def test_mask_converters(
    name: str, point_mask: Any, query_tokens: Any, num_heads: Any, dtype: Any
) -> None:
    if name == "to_attn_mask_3d":
        call = lambda: masks.to_attn_mask_3d(point_mask, num_heads, query_tokens)  # noqa: E731
    elif name == "to_additive_mask":
        call = lambda: masks.to_additive_mask(point_mask, dtype, query_tokens)  # noqa: E731
    elif name == "to_cu_seqlens":
        call = lambda: masks.to_cu_seqlens(point_mask, query_tokens)  # noqa: E731
    else:
        call = lambda: TO[name](point_mask, query_tokens)  # noqa: E731
    result = usage_or_result(call)
    if result is None or point_mask.device.type == "meta":
        return
    b, m, n = point_mask.shape
    q = query_tokens
    keep = torch.cat([torch.ones(b * m, q, dtype=torch.bool), point_mask.reshape(b * m, n)], 1)
    if name == "to_cu_seqlens":
        offsets, longest = result
        assert offsets.tolist() == [0, *keep.sum(1).cumsum(0).tolist()]
        assert longest == (int(keep.sum(1).max()) if b * m else 0)
    elif name == "to_lengths":
        assert torch.equal(result, keep.sum(1))
    elif name == "to_attn_mask_3d":
        assert result.shape == (b * m * num_heads, q + n, q + n)
        # every query row of a lane blocks the lane's padded keys (no per-row loop: with 0
        # lanes and a huge query_tokens, unbind would build 10**15 empty views)
        if result.numel():  # (0 lanes with a huge query_tokens: a shape too big to compare)
            per_query = (~keep)[:, None, :].expand(-1, q + n, -1)  # [B*M, L, S]
            assert torch.equal(result[::num_heads], per_query)
    elif name == "to_additive_mask":
        assert torch.equal(result[:, 0, 0] == 0, keep) and result.dtype == dtype
    elif name == "to_key_padding_mask":
        assert torch.equal(result, ~keep)
    elif name == "to_sdpa_mask":
        assert torch.equal(result[:, 0, 0], keep)
    else:
        assert torch.equal(result.bool(), keep)


def _bad_masks(mask: torch.Tensor) -> st.SearchStrategy[Any]:
    """`mask` as it is, and its sparse, meta, zero-size, re-typed and non-tensor variants."""
    variants = [
        mask,
        mask.to_sparse(),
        mask.to("meta"),
        mask[:0],
        mask[..., :0],
        mask.to(torch.int64),
        mask.to(torch.float32),
        mask.to(torch.complex64),
        mask.unsqueeze(0),
        mask.tolist(),
        None,
    ]
    if mask.dim() >= 3:
        variants += [mask[:, :0], mask[:, :, :0]]
    return st.sampled_from(variants)


PM = torch.tensor([[[True, True, False], [False, False, False]]])
FROM = {
    "from_key_padding_mask": (masks.from_key_padding_mask, masks.to_key_padding_mask(PM, 1)),
    "from_sdpa_mask": (masks.from_sdpa_mask, masks.to_sdpa_mask(PM, 1)),
    "from_additive_mask": (masks.from_additive_mask, masks.to_additive_mask(PM, query_tokens=1)),
    "from_attention_mask": (masks.from_attention_mask, masks.to_attention_mask(PM, 1)),
}


@_settings("masks.from_*")
@given(
    data=st.data(),
    name=st.sampled_from([*FROM, "from_attn_mask_3d", "from_lengths", "from_cu_seqlens"]),
    num_lanes=st.one_of(st.integers(1, 3), st.integers(-1, 0), HUGE, NOT_AN_INT),
    num_points=st.one_of(st.integers(0, 4), st.integers(-2, -1), HUGE, NOT_AN_INT),
    query_tokens=QUERY_TOKENS,
    num_heads=NUM_HEADS,
)
def test_mask_inverses(
    data: st.DataObject,
    name: str,
    num_lanes: Any,
    num_points: Any,
    query_tokens: Any,
    num_heads: Any,
) -> None:
    if name == "from_attn_mask_3d":
        mask = data.draw(_bad_masks(masks.to_attn_mask_3d(PM, 2, 1)))
        call = lambda: masks.from_attn_mask_3d(mask, num_heads, num_lanes, query_tokens)  # noqa: E731
    elif name == "from_lengths":
        mask = data.draw(_bad_masks(masks.to_lengths(PM, 1)))
        call = lambda: masks.from_lengths(mask, num_lanes, num_points, query_tokens)  # noqa: E731
    elif name == "from_cu_seqlens":
        mask = data.draw(_bad_masks(masks.to_cu_seqlens(PM, 1)[0]))
        call = lambda: masks.from_cu_seqlens(mask, num_lanes, num_points, query_tokens)  # noqa: E731
    else:
        inverse, built = FROM[name]
        mask = data.draw(_bad_masks(built))
        call = lambda: inverse(mask, num_lanes, query_tokens)  # noqa: E731
    point_mask = usage_or_result(call)
    if point_mask is None:
        return
    assert point_mask.dtype == torch.bool and point_mask.dim() == 3
    if point_mask.shape == PM.shape and query_tokens == 1:  # read back what was built
        if name in ("from_lengths", "from_cu_seqlens"):  # right-padded by construction
            assert torch.equal(point_mask.sum(-1), PM.sum(-1))
        else:
            assert torch.equal(point_mask, PM)


@_settings("masks.pack/unpack/to_nested")
@given(
    points=POINTS,
    point_mask=MASK_POINT_MASKS,
    packed=st.sampled_from(
        [
            torch.zeros(2, 4),
            torch.zeros(2, 4).to_sparse(),
            torch.zeros(2, 4, device="meta"),
            torch.zeros(2, 4, dtype=torch.int64),
            torch.zeros(2, 4, dtype=torch.bool),
            torch.zeros(0, 4),
            None,
        ]
    ),
    fill=st.sampled_from([0.0, 1, float("nan"), 2**70, -1.5, "x", None]),
    which=st.sampled_from(["pack", "unpack", "to_nested"]),
)
def test_pack_unpack_to_nested(
    points: Any, point_mask: Any, packed: Any, fill: Any, which: str
) -> None:
    if which == "pack":
        out = usage_or_result(lambda: masks.pack(points, point_mask))
        if out is not None:  # exactly the real points, NaN where a real point holds NaN
            torch.testing.assert_close(out, points[point_mask], rtol=0, atol=0, equal_nan=True)
    elif which == "to_nested":
        out = usage_or_result(lambda: masks.to_nested(points, point_mask))
        if out is not None:
            assert out.size(0) == point_mask.shape[0] * point_mask.shape[1]
    else:
        out = usage_or_result(lambda: masks.unpack(packed, point_mask, fill))
        if out is not None:
            assert torch.equal(out[point_mask], packed)
            padded = out[~point_mask]
            if not math.isnan(fill):
                assert bool((padded == float(fill)).all())


DIAGNOSE_MASKS = st.one_of(
    st.sampled_from(
        [
            masks.to_key_padding_mask(PM),
            masks.to_key_padding_mask(PM)[:, :0],
            masks.to_key_padding_mask(PM)[:0],
            masks.to_key_padding_mask(PM).to_sparse(),
            masks.to_key_padding_mask(PM).to("meta"),
            masks.to_key_padding_mask(PM).to(torch.complex64),
            masks.to_attn_mask_3d(PM, 2),
            masks.to_attn_mask_3d(PM, 2)[:, :0],
            masks.to_sdpa_mask(PM)[:, :0],
            masks.to_sdpa_mask(PM)[:, :, :0],
            masks.to_additive_mask(PM)[:, :0],
            masks.to_lengths(PM)[:0],
            _nested(torch.zeros(2, 3)),
            torch.full((2, 3), float("nan")),
            torch.tensor(1),
            torch.zeros(2, 3, 1, 1, 1),
            None,
            [[True]],
        ]
    ),
    st.builds(lambda shape: torch.rand(shape) < 0.5, st.lists(st.integers(0, 3), max_size=4)),
)


@_settings("masks.diagnose")
@given(
    mask=DIAGNOSE_MASKS,
    point_mask=st.one_of(st.just(PM), MASK_POINT_MASKS),
    num_heads=st.one_of(st.none(), NUM_HEADS),
    query_tokens=st.one_of(st.none(), QUERY_TOKENS),
    intended=st.sampled_from([None, "key_padding_mask", "sdpa", "nope", 5, ["sdpa"]]),
)
def test_diagnose(
    mask: Any, point_mask: Any, num_heads: Any, query_tokens: Any, intended: Any
) -> None:
    diagnosis = usage_or_result(
        lambda: masks.diagnose(mask, point_mask, num_heads, query_tokens, intended=intended)
    )
    if diagnosis is not None:
        assert isinstance(diagnosis, masks.Diagnosis) and str(diagnosis)
        assert diagnosis.mistake is None or diagnosis.mistake in masks.MISTAKES
        correct = diagnosis.ok and diagnosis.convention not in ("point_mask", "nested")
        if correct and intended is None and "query_tokens=Q" not in diagnosis.fix:
            heads = _heads(diagnosis.fix) if "num_heads=" in diagnosis.fix else None
            q = int(diagnosis.fix.split("query_tokens=")[1].split(")")[0].split(",")[0])
            masks.validate(  # what diagnose calls correct, validate accepts
                mask,
                str(diagnosis.convention),
                point_mask=point_mask,
                num_heads=heads,
                query_tokens=q,
            )


def _heads(fix: str) -> int:
    """The `num_heads` a diagnosis' fix call names."""
    return int(fix.split("num_heads=")[1].split(",")[0].split(")")[0])


@_settings("masks.validate")
@given(
    mask=DIAGNOSE_MASKS,
    convention=st.sampled_from([*masks.CONVENTIONS, "nope", 5, ["sdpa"]]),
    point_mask=st.one_of(st.none(), st.just(PM), MASK_POINT_MASKS),
    num_heads=st.one_of(st.none(), NUM_HEADS),
    query_tokens=QUERY_TOKENS,
)
def test_validate(
    mask: Any, convention: Any, point_mask: Any, num_heads: Any, query_tokens: Any
) -> None:
    usage_or_result(
        lambda: masks.validate(
            mask, convention, point_mask=point_mask, num_heads=num_heads, query_tokens=query_tokens
        )
    )


# -- lpim.strategies ----------------------------------------------------------------------------


KNOB_SIZES = st.one_of(
    st.integers(0, 3),
    st.integers(-2, -1),
    HUGE,
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.integers(0, 2), HUGE),
    NOT_AN_INT,
)


@_settings("strategies.lane_batches/lane_sets")
@given(
    data=st.data(),
    which=st.sampled_from(["lane_batches", "lane_sets"]),
    sizes=st.fixed_dictionaries({}, optional={"batch_size": KNOB_SIZES, "num_lanes": KNOB_SIZES}),
    width=KNOB_SIZES,
    device=DEVICES,
    dtype=DTYPES,
    garbage=st.sampled_from([None, "zeros", "nan", [], ["inf", "nope"], 5, "any"]),
    flag=st.sampled_from([True, False, 1, None]),
)
def test_lane_strategies(
    data: st.DataObject,
    which: str,
    sizes: dict[str, Any],
    width: Any,
    device: Any,
    dtype: Any,
    garbage: Any,
    flag: Any,
) -> None:
    knobs = {**sizes, "device": device, "dtype": dtype, "garbage": garbage, "empty_lanes": flag}
    if which == "lane_batches":
        strategy = lane_batches(num_points=width, **knobs)
    else:
        strategy = lane_sets(embed_dim=width, **knobs)
    drawn = usage_or_result(lambda: data.draw(strategy), InvalidArgument)
    if drawn is not None:
        assert isinstance(drawn, LaneBatch if which == "lane_batches" else LaneSet)
        drawn.validate()
        assert drawn.shape[-1] >= 1 and (flag is True or flag is False)


@_settings("strategies.bev_queries/bev_maps")
@given(
    data=st.data(),
    which=st.sampled_from(["bev_queries", "bev_maps"]),
    size=KNOB_SIZES,
    width=st.one_of(st.integers(-1, 4), HUGE, NOT_AN_INT),
    batch_size=st.one_of(st.integers(0, 2), st.integers(-2, -1), HUGE, NOT_AN_INT),
    dtype=DTYPES,
    device=DEVICES,
)
def test_bev_strategies(
    data: st.DataObject,
    which: str,
    size: Any,
    width: Any,
    batch_size: Any,
    dtype: Any,
    device: Any,
) -> None:
    def draw() -> Any:
        factory = (
            bev_queries(num_queries=size, embed_dim=width)
            if which == "bev_queries"
            else bev_maps(channels=width, height=size)
        )
        return data.draw(factory(batch_size, dtype, device))

    drawn = usage_or_result(draw, InvalidArgument)
    if drawn is not None:
        (tensor,) = drawn
        assert tensor.shape[0] == batch_size and tensor.dtype == dtype
        assert bool(tensor.isfinite().all())


@_settings("strategies.garbage_fills")
@given(
    kind=st.sampled_from(["zeros", "finite", "large", "inf", "nan", "repeat_last", "x", 5, []]),
    dtype=DTYPES,
    bound=st.sampled_from([1.0, 0, 50, -1, float("nan"), float("inf"), "1", None]),
)
def test_garbage_fills(kind: Any, dtype: Any, bound: Any) -> None:
    fills = usage_or_result(lambda: garbage_fills(kind, dtype, bound))
    if fills is not None:
        assert isinstance(fills, dict)
        if kind == "large":
            assert all(abs(v) <= torch.finfo(dtype).max for v in fills.values())


# -- the CLI doors ------------------------------------------------------------------------------


DEST_SHAPES = st.sampled_from(
    [
        "afile/x.py",  # parent is a file
        "afile/sub/x.py",  # an ancestor is a file
        "afile/sub/",
        "folder.py",  # an existing folder named x.py: gets encoder.py
        "taken/",  # a folder whose encoder.py is itself a folder
        "out/encoder.py",  # a fresh path: works
        "notes.txt",
        "bad\0name.py",
        "x" * 300 + ".py",
    ]
)


@_settings("lpim vendor")
@given(dest=DEST_SHAPES, force=st.booleans())
def test_cli_vendor(dest: str, force: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "afile").write_text("x")
        (root / "folder.py").mkdir()
        (root / "taken" / "encoder.py").mkdir(parents=True)
        argv = ["vendor", str(root / dest)] + (["--force"] if force else [])
        status = usage_or_result(lambda: main(argv))
        assert status in (0, 2), status
        if status == 0:
            written = root / dest / "encoder.py" if (root / dest).is_dir() else root / dest
            assert written.read_text().startswith("# Vendored from lpim")


@_settings("lpim diagnose")
@given(
    mask=st.sampled_from(["kpm", "sparse", "nested", "dict", "text", "folder", "missing"]),
    point_mask=st.sampled_from(["pm", "sparse_pm", "kpm", "text"]),
    flags=st.lists(
        st.sampled_from(
            [
                ["--query-tokens", "99999999999"],
                ["--query-tokens", "-1"],
                ["--query-tokens", "1"],
                ["--num-heads", str(10**12)],
                ["--num-heads", "0"],
                ["--num-heads", "2"],
                ["--intended", "sdpa"],
            ]
        ),
        max_size=2,
    ),
)
def test_cli_diagnose(mask: str, point_mask: str, flags: list[list[str]]) -> None:
    kpm = masks.to_key_padding_mask(PM)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        torch.save(kpm, root / "kpm")
        torch.save(kpm.to_sparse(), root / "sparse")
        torch.save(_nested(torch.zeros(2)), root / "nested")
        torch.save({"a": 1}, root / "dict")
        torch.save(PM, root / "pm")
        torch.save(PM.to_sparse(), root / "sparse_pm")
        (root / "text").write_text("hello")
        (root / "folder").mkdir()
        argv = ["diagnose", str(root / mask), "--point-mask", str(root / point_mask)]
        argv += [word for flag in flags for word in flag]
        status = usage_or_result(lambda: main(argv))
        assert status in (0, 1, 2), status


def test_cli_vendor_under_a_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    assert main(["vendor", str(tmp_path / "afile" / "sub" / "deeper" / "x.py")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lpim vendor: error: DEST:") and "is a file, not a folder" in err
    assert len(err.splitlines()) == 1


def test_cli_vendor_onto_a_folder_named_like_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.py").mkdir()  # an existing folder is a folder, whatever its name
    assert main(["vendor", str(tmp_path / "x.py")]) == 0
    assert (tmp_path / "x.py" / "encoder.py").is_file()
    (tmp_path / "taken" / "encoder.py").mkdir(parents=True)  # where the file would go
    assert main(["vendor", str(tmp_path / "taken"), "--force"]) == 2
    assert "is a folder; expected a .py file to write" in capsys.readouterr().err


def test_cli_vendor_into_a_read_only_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if os.access(read_only, os.W_OK):
            pytest.skip(
                "running as root (or on a file system without permissions): chmod 555 "
                "does not block writes here"
            )
        assert main(["vendor", str(read_only / "sub/")]) == 2
        err = capsys.readouterr().err
        assert "lpim vendor: error: DEST: cannot write" in err and "Permission denied" in err
    finally:
        read_only.chmod(0o755)


def test_cli_vendor_a_path_the_system_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vendor", "bad\0name.py"]) == 2
    assert "lpim vendor: error: DEST: cannot write" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("files", "flags", "message"),
    [
        (("sparse", "pm"), [], "MASK ("),
        (("kpm", "sparse"), [], "--point-mask ("),
        (("folder", "pm"), [], "is a folder"),
        (("dict", "pm"), [], "holds a dict"),
        (("text", "pm"), [], "cannot read"),
        (("kpm", "pm"), ["--query-tokens", "99999999999"], "lower query_tokens"),
    ],
)
def test_cli_diagnose_usage_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: tuple[str, str],
    flags: list[str],
    message: str,
) -> None:
    torch.save(masks.to_key_padding_mask(PM), tmp_path / "kpm")
    torch.save(PM.to_sparse(), tmp_path / "sparse")
    torch.save({"a": 1}, tmp_path / "dict")
    torch.save(PM, tmp_path / "pm")
    (tmp_path / "text").write_text("hello")
    (tmp_path / "folder").mkdir()
    mask, point_mask = (str(tmp_path / name) for name in files)
    assert main(["diagnose", mask, "--point-mask", point_mask, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lpim diagnose: error: ") and message in err, err
    assert len(err.splitlines()) == 1


def test_cli_diagnose_takes_a_huge_num_heads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    torch.save(masks.to_attn_mask_3d(PM, 2), tmp_path / "mask")
    torch.save(PM, tmp_path / "pm")
    argv = ["diagnose", str(tmp_path / "mask"), "--point-mask", str(tmp_path / "pm")]
    assert main([*argv, "--num-heads", str(10**12)]) == 1  # a judgement, not a crash
    assert "num_heads = 1000000000000" in capsys.readouterr().out


# -- one mistake, one sentence -------------------------------------------------------------------


def _message(call: Callable[[], Any]) -> str:
    try:
        call()
    except (UsageError, InvalidArgument, ValueError, TypeError) as error:
        return str(error)
    raise AssertionError("no error")


def _first_draw(strategy: st.SearchStrategy[Any]) -> None:
    from hypothesis import find

    find(strategy, lambda _: True, settings=settings(database=None, max_examples=1))


@pytest.mark.parametrize("device", ["gpu", "mps", "xpu", "cuda:7", "meta", 5])
def test_a_bad_device_gets_one_sentence_from_every_batch_door(device: Any) -> None:
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    batch = _small_batch()
    said = {
        "check_device": _message(
            lambda: check_device(
                device, why_data="a lane batch's real points are checked to be finite"
            )
        ),
        "LaneBatch.to": _message(lambda: batch.to(device)),
        "LaneBatch.from_lanes": _message(
            lambda: LaneBatch.from_lanes([[torch.zeros(2, 2)]], device=device)
        ),
        "lane_batches": _message(lambda: _first_draw(lane_batches(device=device))),
    }
    assert len(set(said.values())) == 1, said
    lanes = LaneSet(torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool))
    for_sets = {
        "LaneSet.to": _message(lambda: lanes.to(device)),
        "lane_sets": _message(lambda: _first_draw(lane_sets(device=device))),
    }
    assert len(set(for_sets.values())) == 1, for_sets


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, "float32"])
def test_a_bad_dtype_gets_one_sentence_from_every_door(dtype: Any) -> None:
    lanes = LaneSet(torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool))
    said = {
        "LaneBatch.to": _message(lambda: _small_batch().to(dtype=dtype)),
        "LaneBatch.from_lanes": _message(
            lambda: LaneBatch.from_lanes([[torch.zeros(2, 2)]], dtype=dtype)
        ),
        "LaneSet.to": _message(lambda: lanes.to(dtype=dtype)),
        "lane_batches": _message(lambda: _first_draw(lane_batches(dtype=dtype))),
        "to_additive_mask": _message(lambda: masks.to_additive_mask(PM, dtype)),
        "garbage_fills": _message(lambda: garbage_fills("large", dtype)),
    }
    assert len(set(said.values())) == 1, said
    assert next(iter(said.values())) == f"dtype must be a floating torch.dtype; got {dtype!r}"


def test_a_sparse_tensor_gets_one_sentence_from_every_door(tmp_path: Path) -> None:
    sparse_points = torch.zeros(1, 1, 2, 2).to_sparse()
    sparse_mask = PM.to_sparse()
    points_sentence = dense_message(sparse_points, "points")
    mask_sentence = dense_message(sparse_mask, "point_mask")
    encoder = PriorEncoder(d_model=8, nhead=2, num_layers=1, dim_feedforward=8)
    assert _message(lambda: LaneBatch(sparse_points, torch.ones(1, 1, 2, dtype=torch.bool))) == (
        points_sentence
    )
    assert _message(lambda: encoder(sparse_points, torch.ones(1, 1, 2, dtype=torch.bool))) == (
        points_sentence  # lpim/encoder.py spells it itself: vendorable
    )
    assert _message(lambda: masks.pack(sparse_points, torch.ones(1, 1, 2, dtype=torch.bool)))
    for door, call in {
        "to_key_padding_mask": lambda: masks.to_key_padding_mask(sparse_mask),
        "diagnose": lambda: masks.diagnose(masks.to_key_padding_mask(PM), sparse_mask),
        "validate": lambda: masks.validate(
            masks.to_key_padding_mask(PM), "key_padding_mask", point_mask=sparse_mask
        ),
        "LaneBatch": lambda: LaneBatch(torch.zeros(1, 2, 3, 2), sparse_mask),
        "encoder": lambda: encoder(torch.zeros(1, 2, 3, 2), sparse_mask),
    }.items():
        said = _message(call).splitlines()[0]
        assert said.endswith(mask_sentence), (door, said)


def test_the_encoders_size_wording_is_check_ints() -> None:
    """`lpim/encoder.py` cannot import `check_int`; it says the same sentences."""
    for value, expected in [(0, ValueError), ("8", TypeError), (True, TypeError)]:
        with pytest.raises(expected) as ours:
            PriorEncoder(num_layers=value)
        with pytest.raises(expected) as shared:
            check_int(value, "num_layers", minimum=1)
        assert str(ours.value) == str(shared.value)


def test_print_example_counts() -> None:
    """The examples each door gets (run with `-s` to see them)."""
    for door, count in EXAMPLES.items():
        print(f"{door:<40} {count:>5} examples")
    assert sum(EXAMPLES.values()) > 0
