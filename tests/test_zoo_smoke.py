"""Smoke tests for lpim.zoo: every entry builds and runs, the correct ones are exact, and a few
bugs show exactly under the condition their docstring names.

Direct tests, without lpim.testing: the properties themselves are checked on the zoo elsewhere.
Tolerances are torch.testing.assert_close's defaults at float64 (rtol = atol = 1e-7), which is
five orders of magnitude above the rounding of these tiny encoders (~1e-15) and far below what a
mask bug produces (O(1)).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import Tensor, nn

from lpim.zoo import BUGS, CAUGHT_BY, CORRECT, ZooEntry
from lpim.zoo.correct import TorchTransformerFastPath

ALL = {**CORRECT, **BUGS}
# Correct under any data at any dtype: not those correct only under a narrower data contract
# (entry.contract) or computing in float32 whatever they are given.
ANYWHERE = {
    name: entry
    for name, entry in CORRECT.items()
    if not entry.contract and name != "float32_internal"
}
# 'runs' bugs raise at this dtype (float32 unless listed).
RAISES_AT = {"fill_minus_1e9_fp16": torch.float16}
LENGTHS = [[3, 0, 5, 1], [0, 0, 0, 0], [2, 4, 0, 5]]  # [B, M]: empty lanes and an empty sample
N = 5


def make_batch(
    layout: str = "scattered",
    garbage: float = 0.0,
    dtype: torch.dtype = torch.float32,
    lengths: list[list[int]] = LENGTHS,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """``points [B, M, N, 2]`` in a 50 m range and ``point_mask [B, M, N]`` with given lengths.

    A lane's real points are the same, in the same order, whatever the layout.
    """
    B, M = len(lengths), len(lengths[0])
    generator = torch.Generator().manual_seed(seed)
    values = (torch.rand(B, M, N, 2, generator=generator, dtype=torch.float64) - 0.5) * 100
    scatter = torch.Generator().manual_seed(seed + 1)  # slots only: values never depend on them
    point_mask = torch.zeros(B, M, N, dtype=torch.bool)
    points = torch.full((B, M, N, 2), garbage, dtype=torch.float64)
    for b, row in enumerate(lengths):
        for m, n in enumerate(row):
            if layout == "right":
                slots = torch.arange(n)
            elif layout == "left":
                slots = torch.arange(N - n, N)
            else:
                slots = torch.randperm(N, generator=scatter)[:n].sort().values
            point_mask[b, m, slots] = True
            points[b, m, slots] = values[b, m, :n]
    return points.to(dtype), point_mask


def outputs(encoder: nn.Module, points: Tensor, point_mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(lane_embedding, point_features)``; zeros for the features of an encoder that returns
    lane embeddings only (the protocol allows a bare tensor)."""
    out = encoder(points, point_mask)
    if isinstance(out, Tensor):
        return out, out.new_zeros(*point_mask.shape, out.shape[-1])
    return out.lane_embedding, out.point_features


def real_lane_gradient(lane_embedding: Tensor, lane_mask: Tensor, points: Tensor) -> Tensor:
    """d(sum of the real lanes' embeddings) / d(points); empty lanes are selected out."""
    (grad,) = torch.autograd.grad(
        torch.where(lane_mask[..., None], lane_embedding, 0).sum(), points
    )
    return grad


def build(entry: ZooEntry, dtype: torch.dtype = torch.float32) -> nn.Module:
    return entry.factory().to(dtype)


# -- the registry ------------------------------------------------------------------------------


def test_registry_is_complete_and_consistent() -> None:
    assert len(BUGS) >= 16 and len(CORRECT) >= 5
    assert not set(BUGS) & set(CORRECT)
    for table, is_bug in ((BUGS, True), (CORRECT, False)):
        for name, entry in table.items():
            assert entry.name == name and re.fullmatch(r"[a-z][a-z0-9_]*", name)
            assert (entry.caught_by in CAUGHT_BY) if is_bug else entry.caught_by is None
            assert re.fullmatch(r"[a-z][a-z0-9-]*", entry.bug_class)
            assert entry.summary and "\n" not in entry.summary
    with pytest.raises(AttributeError):
        BUGS["float_kpm"].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(BUGS))
def test_bug_docstrings_name_the_property_and_the_line(name: str) -> None:
    doc = type(BUGS[name].factory()).__doc__ or ""
    assert f"`{BUGS[name].caught_by}`" in doc and "Offending line" in doc


def test_factories_build_fresh_deterministic_modules_and_leave_the_rng_alone() -> None:
    state = torch.random.get_rng_state()
    first, second = BUGS["float_kpm"].factory(), BUGS["float_kpm"].factory()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first is not second
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert a is not b and torch.equal(a, b)


# -- every entry builds and runs ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
def test_entry_builds_in_eval_mode_and_runs_or_raises(name: str) -> None:
    entry = ALL[name]
    encoder = entry.factory()
    assert isinstance(encoder, nn.Module) and not encoder.training
    assert encoder.in_dim == 2
    dtype = RAISES_AT.get(name, torch.float32)
    points, point_mask = make_batch(layout="right", dtype=dtype)
    if entry.caught_by == "runs":
        with pytest.raises(RuntimeError):
            outputs(build(entry, dtype), points, point_mask)
        return
    lane_embedding, point_features = outputs(encoder, points, point_mask)
    assert lane_embedding.shape == (3, 4, 16) and lane_embedding.dtype == torch.float32
    assert point_features.shape == (3, 4, N, 16)


# -- the correct entries are exact -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ANYWHERE))
def test_correct_entry_equals_each_lane_alone_despite_nan_garbage(name: str) -> None:
    encoder = build(CORRECT[name], torch.float64)
    points, point_mask = make_batch("scattered", math.nan, torch.float64)
    lane_embedding, point_features = outputs(encoder, points, point_mask)
    assert lane_embedding.isfinite().all() and point_features[point_mask].isfinite().all()
    zero_points, _ = make_batch("scattered", 0.0, torch.float64)
    torch.testing.assert_close(outputs(encoder, zero_points, point_mask)[0], lane_embedding)
    for b, m in point_mask.any(-1).nonzero().tolist():
        alone = points[b, m][point_mask[b, m]][None, None]  # [1, 1, n, 2], every point real
        alone_embedding, alone_features = outputs(
            encoder, alone, torch.ones(alone.shape[:-1], dtype=torch.bool)
        )
        torch.testing.assert_close(lane_embedding[b, m], alone_embedding[0, 0])
        torch.testing.assert_close(point_features[b, m][point_mask[b, m]], alone_features[0, 0])


@pytest.mark.parametrize("layout", ["right", "left"])
def test_correct_entries_agree_across_layouts(layout: str) -> None:
    for name, entry in ANYWHERE.items():
        encoder = build(entry, torch.float64)
        scattered = outputs(encoder, *make_batch("scattered", math.inf, torch.float64))[0]
        other = outputs(encoder, *make_batch(layout, -1e30, torch.float64))[0]
        torch.testing.assert_close(other, scattered, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_correct_entries_run_in_half_precision_without_nan(dtype: torch.dtype) -> None:
    points, point_mask = make_batch("scattered", math.nan, dtype)
    for name, entry in ANYWHERE.items():
        lane_embedding, point_features = outputs(build(entry, dtype), points, point_mask)
        assert lane_embedding.isfinite().all(), name
        assert point_features[point_mask].isfinite().all(), name


def test_fast_path_entry_really_takes_torchs_nested_tensor_path() -> None:
    """Under no_grad torch's nested path pads with exact zeros; the slow path computes them."""
    encoder = CORRECT["torch_transformer_fast_path"].factory()
    front_mask = torch.tensor([[[True, True, False, False]]])  # [1, 1, 4], real points first
    tokens = torch.randn(1, 5, 16)  # [B*M, 1+N, C]
    assert isinstance(encoder, TorchTransformerFastPath)
    with torch.no_grad():
        fast = encoder.encode(tokens, front_mask)
    slow = encoder.encode(tokens, front_mask)
    assert (fast[0, 3:] == 0).all() and (slow[0, 3:] != 0).all()
    torch.testing.assert_close(fast[0, :3], slow[0, :3].detach())


# -- the bugs show where their docstrings say ---------------------------------------------------


def test_multiply_by_mask_is_exact_with_zero_padding_and_nan_with_nan_padding() -> None:
    bug, good = build(BUGS["multiply_by_mask"]), build(CORRECT["mha_key_padding_mask"])
    zero_padded = make_batch("right", 0.0)
    torch.testing.assert_close(outputs(bug, *zero_padded), outputs(good, *zero_padded))
    points, point_mask = make_batch("right", math.nan)
    lane_embedding, _ = outputs(bug, points, point_mask)
    padded_lanes = (point_mask.any(-1) & ~point_mask.all(-1))[..., None].expand_as(lane_embedding)
    assert lane_embedding[padded_lanes].isnan().all()


def test_nan_grad_from_empty_rows_has_a_clean_forward_and_nan_padded_gradients() -> None:
    bug = build(BUGS["nan_grad_from_empty_rows"])
    points, point_mask = make_batch("right", 0.0)
    points.requires_grad_()
    lane_embedding, point_features = outputs(bug, points, point_mask)
    assert lane_embedding.isfinite().all() and point_features.isfinite().all()
    lane_mask = point_mask.any(-1)
    (grad,) = torch.autograd.grad(
        torch.where(lane_mask[..., None], lane_embedding, 0).sum(), points
    )
    assert grad[~lane_mask].isnan().all()  # every padded slot of every empty lane
    assert grad[point_mask].isfinite().all()
    # its parent, with need_weights=False, is clean in both directions
    lane_embedding, _ = outputs(build(CORRECT["attention_pooling"]), points, point_mask)
    (grad,) = torch.autograd.grad(
        torch.where(lane_mask[..., None], lane_embedding, 0).sum(), points
    )
    assert grad.isfinite().all() and (grad[~point_mask] == 0).all()


def test_empty_lane_nan_need_weights_is_nan_on_empty_lanes_only() -> None:
    points, point_mask = make_batch()
    lane_embedding, _ = outputs(build(BUGS["empty_lane_nan_need_weights"]), points, point_mask)
    lane_mask = point_mask.any(-1)
    assert lane_embedding[~lane_mask].isnan().all() and lane_embedding[lane_mask].isfinite().all()


def test_fill_minus_1e9_raises_in_float16_only() -> None:
    entry = BUGS["fill_minus_1e9_fp16"]
    with pytest.raises(RuntimeError, match="overflow"):
        outputs(build(entry, torch.float16), *make_batch(dtype=torch.float16))
    points, point_mask = make_batch(dtype=torch.float64)
    torch.testing.assert_close(
        outputs(build(entry, torch.float64), points, point_mask),
        outputs(build(CORRECT["manual_softmax_additive"], torch.float64), points, point_mask),
    )


def test_repeat_head_order_is_exact_for_one_lane_and_wrong_in_a_batch() -> None:
    bug, good = build(BUGS["repeat_head_order"]), build(CORRECT["mha_3d_attn_mask"])
    one_lane = make_batch(lengths=[[3]])
    torch.testing.assert_close(outputs(bug, *one_lane), outputs(good, *one_lane))
    batch = make_batch()
    assert not torch.allclose(outputs(bug, *batch)[0], outputs(good, *batch)[0])


def test_slot_bugs_are_exact_under_right_padding_only() -> None:
    for name in ("slot_index_positions", "first_slot_pooling", "lengths_minus_one_indexing"):
        bug = build(BUGS[name], torch.float64)
        right = outputs(bug, *make_batch("right", dtype=torch.float64))[0]
        left = outputs(bug, *make_batch("left", dtype=torch.float64))[0]
        points, point_mask = make_batch("right", dtype=torch.float64)
        alone = points[2, 1][point_mask[2, 1]][None, None]  # 4 of 5 slots real
        ones = torch.ones(alone.shape[:-1], dtype=torch.bool)
        torch.testing.assert_close(right[2, 1], outputs(bug, alone, ones)[0][0, 0], msg=name)
        assert not torch.allclose(left[2, 1], right[2, 1]), name


def test_empty_lanes_take_sample_mean_leaves_real_lanes_alone_but_not_empty_ones() -> None:
    bug, good = build(BUGS["empty_lanes_take_sample_mean"]), build(CORRECT["mha_key_padding_mask"])
    points, point_mask = make_batch()
    lane_mask = point_mask.any(-1)
    bug_embedding = outputs(bug, points, point_mask)[0]
    good_embedding = outputs(good, points, point_mask)[0]
    torch.testing.assert_close(bug_embedding[lane_mask], good_embedding[lane_mask])
    fewer = point_mask.clone()
    fewer[0, 0] = False  # empty another lane of sample 0
    changed = outputs(bug, points, fewer)[0]
    assert not torch.allclose(changed[0, 1], bug_embedding[0, 1])  # lane (0, 1) was empty before


def test_nan_sentinel_is_nan_on_empty_lanes_and_leaves_gradients_clean() -> None:
    points, point_mask = make_batch()
    points.requires_grad_()
    lane_embedding, _ = outputs(build(BUGS["nan_sentinel_empty_lanes"]), points, point_mask)
    lane_mask = point_mask.any(-1)
    assert lane_embedding[~lane_mask].isnan().all() and lane_embedding[lane_mask].isfinite().all()
    (grad,) = torch.autograd.grad(
        torch.where(lane_mask[..., None], lane_embedding, 0).sum(), points
    )
    assert grad.isfinite().all()


def test_additive_minus_1e4_leaks_huge_garbage_but_not_zeros() -> None:
    bug, good = build(BUGS["additive_minus_1e4"]), build(CORRECT["manual_softmax_additive"])
    zero_padded = make_batch("right", 0.0)
    torch.testing.assert_close(outputs(bug, *zero_padded), outputs(good, *zero_padded))
    expected = outputs(good, *zero_padded)[0]
    # a padded key's score is about +-1e5 here: it wins the softmax when its sign is positive
    leaks = [
        not torch.allclose(outputs(bug, *make_batch("right", fill))[0], expected, equal_nan=True)
        for fill in (1e8, -1e8)
    ]
    assert any(leaks) and not all(leaks)


def test_cuda_only_fast_path_is_the_correct_encoder_on_cpu() -> None:
    batch = make_batch()
    torch.testing.assert_close(
        outputs(build(BUGS["cuda_only_fast_path"]), *batch),
        outputs(build(CORRECT["mha_key_padding_mask"]), *batch),
    )
