"""The tolerance rule: its constants against torch's own, its scaling, ``error_ratio`` on special
values, ``encoder_scale``, and an empirical anchor: on a real encoder the rule passes the correct
batched output at float32, bfloat16 and float16 and fails deliberately wrong ones."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import pytest
import torch
from torch.testing._comparison import default_tolerances

import lpim
from lpim.tolerance import (
    ASSERT_CLOSE_DEFAULTS,
    OBSERVED_FACTOR,
    UNIT_ROUNDOFF,
    Tolerance,
    encoder_scale,
    tolerance,
)

FLOATS = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
LOW = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # The encoders here are tiny: threads only add contention (on a busy machine a 2-thread
    # forward pass was measured 100x slower than a 1-thread one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- constants -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_floors_at_k1_depth1_are_assert_close_defaults(dtype: torch.dtype) -> None:
    rtol, atol = default_tolerances(dtype)  # torch's own table, not a copy of it
    rule = tolerance(dtype, 1, 1)
    assert (rule.rtol, rule.atol) == (rtol, atol)
    assert ASSERT_CLOSE_DEFAULTS[dtype] == (rtol, atol)
    assert (rule.dtype, rule.reduction_length, rule.depth) == (dtype, 1, 1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_unit_roundoff_is_half_of_torch_eps(dtype: torch.dtype) -> None:
    assert UNIT_ROUNDOFF[dtype] == torch.finfo(dtype).eps / 2


def test_the_table_covers_exactly_the_floating_dtypes_torch_has_defaults_for() -> None:
    assert set(ASSERT_CLOSE_DEFAULTS) == set(UNIT_ROUNDOFF) == set(FLOATS)


# -- scaling ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_rtol_is_the_default_until_sqrt_k_u_exceeds_it_then_grows_like_sqrt_k(
    dtype: torch.dtype,
) -> None:
    rtol_default, _ = default_tolerances(dtype)
    u = UNIT_ROUNDOFF[dtype]
    crossover = (rtol_default / u) ** 2  # sqrt(K) * u == rtol_default
    below = max(1, math.floor(crossover * 0.9))
    assert tolerance(dtype, below).rtol == rtol_default
    above = math.ceil(crossover * 1.1) + 1
    assert tolerance(dtype, above).rtol == pytest.approx(math.sqrt(above) * u, rel=1e-12)
    # past the crossover, 4x the length gives 2x the rtol; atol does not depend on K
    assert tolerance(dtype, 4 * above).rtol == pytest.approx(
        2 * tolerance(dtype, above).rtol, rel=1e-12
    )
    assert tolerance(dtype, 4 * above).atol == tolerance(dtype, 1).atol


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("k", [1, 64, 10**6])
def test_rtol_and_atol_grow_like_sqrt_depth(dtype: torch.dtype, k: int) -> None:
    one = tolerance(dtype, k, 1)
    for depth in (4, 9, 14):
        deep = tolerance(dtype, k, depth)
        assert deep.rtol == pytest.approx(one.rtol * math.sqrt(depth), rel=1e-12)
        assert deep.atol == pytest.approx(one.atol * math.sqrt(depth), rel=1e-12)


def test_concrete_values_for_the_lpim_scale() -> None:
    # K = 1024 (the LPIM FFN), depth 30: float32 is past its crossover (K ~ 475), bfloat16 too.
    assert tolerance(torch.float32, 1024, 30).rtol == pytest.approx(
        32 * 2.0**-24 * math.sqrt(30), rel=1e-12
    )
    assert tolerance(torch.bfloat16, 1024, 30).rtol == pytest.approx(
        32 * 2.0**-8 * math.sqrt(30), rel=1e-12
    )
    assert tolerance(torch.float32, 1024, 30).atol == pytest.approx(1e-5 * math.sqrt(30))


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64, torch.float8_e4m3fn])
def test_unknown_dtype_raises_naming_the_supported_ones(dtype: torch.dtype) -> None:
    with pytest.raises(ValueError, match=str(dtype)) as caught:
        tolerance(dtype)
    for supported in FLOATS:
        assert str(supported) in str(caught.value)


# -- error_ratio -----------------------------------------------------------------------------------


def _ratio(rule: Tolerance, actual: float, expected: float, drift: float = 0.0) -> float:
    got = rule.error_ratio(
        torch.tensor([actual], dtype=torch.float64),
        torch.tensor([expected], dtype=torch.float64),
        drift,
    )
    assert got.dtype == torch.float64
    return float(got.item())


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("actual", "expected", "ratio"),
    [
        (NAN, NAN, 0.0),
        (INF, INF, 0.0),
        (-INF, -INF, 0.0),
        (1.5, 1.5, 0.0),
        (0.0, -0.0, 0.0),
        (NAN, 1.0, INF),
        (1.0, NAN, INF),
        (INF, 1.0, INF),
        (1.0, INF, INF),
        (INF, -INF, INF),
        (NAN, INF, INF),
        (1e308, -1e308, INF),  # the difference overflows
    ],
)
def test_error_ratio_on_special_values(actual: float, expected: float, ratio: float) -> None:
    assert _ratio(tolerance(torch.float32), actual, expected) == ratio


def test_a_nan_pair_does_not_hide_a_real_mismatch() -> None:
    rule = tolerance(torch.float32)
    actual = torch.tensor([NAN, 2.0, 1.0])
    expected = torch.tensor([NAN, 1.0, 1.0])
    ratio = rule.error_ratio(actual, expected)
    assert not ratio.isnan().any()
    assert float(ratio.max()) > 1e4
    assert ratio.tolist()[0] == 0.0 and ratio.tolist()[2] == 0.0


@pytest.mark.parametrize("dtype", LOW)
def test_error_ratio_is_the_error_over_the_documented_allowance(dtype: torch.dtype) -> None:
    rule = tolerance(dtype, 256, 9)
    expected, drift = 3.0, 1e-3
    allowed = OBSERVED_FACTOR * drift + rule.atol + rule.rtol * abs(expected)
    assert OBSERVED_FACTOR == 2.0
    assert _ratio(rule, expected + 0.5 * allowed, expected, drift) == pytest.approx(0.5)
    assert _ratio(rule, expected - allowed, expected, drift) == pytest.approx(1.0)
    # the same error without the observed term is over the limit: the 2 * drift term is applied
    assert _ratio(rule, expected - allowed, expected, 0.0) > 1.0
    assert float(rule.allowed(torch.tensor([expected]), drift)) == pytest.approx(allowed)


@pytest.mark.parametrize("drift", [NAN, INF, -1e-3])
def test_a_drift_that_would_disable_the_rule_is_rejected(drift: float) -> None:
    with pytest.raises(ValueError, match="drift"):
        tolerance(torch.float32).error_ratio(torch.ones(2), torch.ones(2), drift)


# -- encoder_scale ---------------------------------------------------------------------------------


def test_encoder_scale_of_the_prior_encoder() -> None:
    encoder = lpim.PriorEncoder(d_model=32, nhead=4, num_layers=2, dim_feedforward=64)
    # K: the widest nn.Linear input is linear2 (dim_feedforward = 64 inputs).
    # depth, counted from the structure (documented: each nn.Linear, and 3 per
    # nn.MultiheadAttention for its in-projection, scores and weighted values):
    #   pos_embed: Linear(2, 32), Linear(32, 32)                           -> 2
    #   per layer: self_attn (3) + self_attn.out_proj + linear1 + linear2  -> 6, x 2 layers
    expected_depth = 2 + 2 * (3 + 1 + 1 + 1)
    assert expected_depth == 14
    # cross-check the hand count against the module tree
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    attentions = [m for m in encoder.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert (len(linears), len(attentions)) == (8, 2)
    assert max(m.in_features for m in linears) == 64
    assert encoder_scale(encoder, fallback_length=9) == (64, expected_depth)
    # the fallback (the caller's token count) is a lower bound on K, not replaced by it
    assert encoder_scale(encoder, fallback_length=500) == (500, expected_depth)


def test_encoder_scale_of_a_plain_function_is_the_fallback_and_depth_1() -> None:
    def encode(points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        return points.sum(-2)

    assert encoder_scale(encode, fallback_length=21) == (21, 1)
    assert encoder_scale(encode, fallback_length=0) == (1, 1)


def test_encoder_scale_of_a_module_without_matmuls_has_depth_1() -> None:
    assert encoder_scale(torch.nn.ReLU(), fallback_length=7) == (7, 1)


# -- empirical anchor ------------------------------------------------------------------------------

N_POINTS, N_LANES = 6, 5
REAL_COUNTS = [[5, 1, 0, 3], [2, 6], [], [4, 0, 0, 6, 1]]  # lanes per sample, points per lane


def _lanes() -> list[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        [(torch.rand(n, 2, generator=generator, dtype=torch.float64) * 2 - 1) * 50 for n in sample]
        for sample in REAL_COUNTS
    ]


def _per_lane(
    encoder: torch.nn.Module, lanes: list[list[torch.Tensor]], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each real lane alone, unpadded: ``lane_embedding [K, C]`` and real-point features
    ``[T, C]`` (in lane order)."""
    embeddings, points = [], []
    for sample in lanes:
        for lane in sample:
            if lane.shape[0] == 0:
                continue
            alone = lpim.LaneBatch.from_lanes([[lane]], dtype=dtype)  # [1, 1, n, 2], no padding
            out = encoder(alone.points, alone.point_mask)
            embeddings.append(out.lane_embedding[0, 0])
            points.append(out.point_features[0, 0])
    return torch.stack(embeddings), torch.cat(points)


def _batched(
    output: lpim.PriorEncoderOutput, batch: lpim.LaneBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batched output at real lanes ``[K, C]`` and real points ``[T, C]``, in lane order."""
    return output.lane_embedding[batch.lane_mask], output.point_features[batch.point_mask]


@pytest.mark.parametrize("dtype", LOW)
def test_the_rule_passes_correct_batched_outputs_and_fails_wrong_ones(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    encoder = lpim.PriorEncoder(d_model=64, nhead=4, num_layers=2, dim_feedforward=128)
    encoder = encoder.eval().to(dtype)
    twin = copy.deepcopy(encoder).double()  # the same (rounded) weights, exact-ish arithmetic
    lanes = _lanes()
    k, depth = encoder_scale(encoder, fallback_length=N_POINTS + 1)
    assert (k, depth) == (128, 14)
    rule = tolerance(dtype, k, depth)

    with torch.no_grad():
        reference = _per_lane(encoder, lanes, dtype)  # y_s
        exact = _per_lane(twin, lanes, torch.float64)  # y_64
        # the observed term, per output: how far this encoder drifts from float64 on these lanes
        drifts = [
            float((y.double() - y64).abs().max()) for y, y64 in zip(reference, exact, strict=True)
        ]
        assert all(drift > 0 for drift in drifts)

        correct: list[float] = []
        wrong: dict[str, list[float]] = {"other lane": [], "scaled": [], "mask ignored": []}
        for layout in ("right", "left", "scattered"):
            batch = lpim.LaneBatch.from_lanes(
                lanes, N_LANES, N_POINTS, layout, dtype=dtype, fill=math.nan
            )
            assert batch.layout == layout
            batched = _batched(encoder(batch.points, batch.point_mask), batch)
            for actual, expected, drift in zip(batched, reference, drifts, strict=True):
                assert actual.shape == expected.shape
                correct.append(float(rule.error_ratio(actual, expected, drift).max()))
                # deliberately wrong: another lane's output, and one 10 rtol off
                shifted = actual.roll(1, dims=0)
                wrong["other lane"].append(float(rule.error_ratio(shifted, expected, drift).max()))
                scaled = actual.double() * (1 + 10 * rule.rtol)
                wrong["scaled"].append(float(rule.error_ratio(scaled, expected, drift).max()))
            # a mask bug: every slot of a real lane treated as real (zero padding attended)
            zero_filled = lpim.LaneBatch.from_lanes(lanes, N_LANES, N_POINTS, layout, dtype=dtype)
            leaky_mask = zero_filled.lane_mask[..., None].expand_as(zero_filled.point_mask)
            leaky = encoder(zero_filled.points, leaky_mask).lane_embedding[batch.lane_mask]
            wrong["mask ignored"].append(
                float(rule.error_ratio(leaky, reference[0], drifts[0]).max())
            )

    print(
        f"\n{dtype}: rtol {rule.rtol:.3g}, atol {rule.atol:.3g}, "
        f"drift (lane, point) {drifts[0]:.3g}, {drifts[1]:.3g}; "
        f"max ratio correct {max(correct):.3g}; min ratio wrong "
        + ", ".join(f"{name} {min(ratios):.3g}" for name, ratios in wrong.items())
    )
    assert max(correct) <= 1.0
    for name, ratios in wrong.items():
        assert min(ratios) > 1.0, f"{name} passed the rule at {dtype}: {ratios}"
