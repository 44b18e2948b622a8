"""Which crash is the dtype's, by experiment (`lpim.testing._dtype_probe`), not by torch's
wording (issue 21, item 6)."""

from __future__ import annotations

import torch
from hypothesis import settings

from lpim import LaneBatch
from lpim.testing import EncoderPropertyError, assert_gradients_isolated, check_encoder
from lpim.testing._dtype_probe import crash_of, dtype_unsupported, runs_at_float32
from lpim.testing._encoder_properties import lanes_alone_trouble
from lpim.zoo import BUGS

FAST = settings(max_examples=5, database=None, deadline=None, derandomize=True)


class Conv1dInFloat32(torch.nn.Module):
    """Correct (a per-point Conv1d, masked mean), but it feeds the conv float32 whatever the
    module's dtype: cast to bfloat16, torch says "Input type (float) and bias type
    (c10::BFloat16) should be the same", naming one dtype in a way no word list knew."""

    in_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 8, 1)

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        b, m, n, d = points.shape
        x = points.reshape(b * m, n, d).transpose(1, 2).float()  # [B*M, D, N]
        h = self.conv(x).transpose(1, 2).reshape(b, m, n, -1)  # [B, M, N, C]
        keep = point_mask[..., None]
        total = torch.where(keep, h, 0.0).sum(2)  # [B, M, C]
        return (total / keep.sum(2).clamp(min=1)).to(points.dtype)


class SaysNothing(torch.nn.Module):
    """Correct at float32; at float16 it raises with a message that names no dtype at all."""

    in_dim = 2

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        if points.dtype == torch.float16:
            raise RuntimeError("this kernel is not available")
        keep = point_mask[..., None]
        return torch.where(keep, points, 0.0).sum(2) / keep.sum(2).clamp(min=1)


def test_a_crash_whose_message_names_no_dtype_is_the_dtypes_when_float32_runs() -> None:
    report = check_encoder(
        SaysNothing(), dtype=[torch.float32, torch.float16], properties="finite", settings=FAST
    )
    rows = {r.dtype: r for r in report.results}
    assert rows[torch.float32].verdict == "pass"
    assert rows[torch.float16].verdict == "unsupported", str(report)
    assert "alone and unpadded" in rows[torch.float16].note


def test_a_dtype_mismatch_in_a_conv_is_unsupported_not_a_runs_failure() -> None:
    report = check_encoder(
        Conv1dInFloat32(), dtype=[torch.float32, torch.bfloat16], properties="finite", settings=FAST
    )
    rows = {r.dtype: r for r in report.results}
    assert rows[torch.bfloat16].verdict == "unsupported", str(report)
    assert rows[torch.float32].verdict == "pass"


def test_a_fill_that_overflows_the_dtype_stays_a_failure() -> None:
    bug = BUGS["fill_minus_1e9_fp16"].factory()
    try:
        check_encoder(bug, dtype=torch.float16, properties="finite", settings=FAST)
    except EncoderPropertyError as failure:
        assert failure.property_name == "runs"
    else:
        raise AssertionError("a -1e9 fill in float16 passed")
    crash = crash_of(
        lambda: torch.zeros(2, dtype=torch.float16).masked_fill(
            torch.ones(2, dtype=torch.bool), -1e9
        ),
        torch.float16,
    )
    assert crash is not None and crash.overflow == -1e9 and "masked_fill" in crash.op


def test_the_float32_run_is_outside_autocast() -> None:
    """Under autocast an op that cannot take the autocast dtype fails at the probe; the float32
    comparison must run with autocast off, or it fails too and the crash is blamed on the code."""

    def at_dtype() -> None:
        out = torch.zeros(4, 3)
        out[torch.tensor([0, 1])] = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(3, 3))

    with torch.autocast("cpu", dtype=torch.bfloat16):
        reason = dtype_unsupported(
            at_dtype,
            lambda: runs_at_float32(at_dtype, torch.device("cpu")),
            torch.bfloat16,
            torch.device("cpu"),
            mode="under autocast",
            alternative="check it at float32",
        )
    assert "bfloat16 tensors meet in aten.index_put" in reason.replace("float32 and ", ""), reason


def test_code_that_fails_at_float32_too_is_not_the_dtypes() -> None:
    def broken() -> None:
        raise RuntimeError("always")

    assert (
        dtype_unsupported(
            broken,
            lambda: runs_at_float32(broken, torch.device("cpu")),
            torch.float16,
            torch.device("cpu"),
            mode="cast to it",
            alternative="",
        )
        == ""
    )


class ZeroBiasLayerNorm(torch.nn.Module):
    """Correct masking (a per-point MLP, masked max-pool), zero-initialised biases and
    LayerNorm(eps=1e-12), as road encoders are written: a point at the origin is an exactly-zero
    vector, whose LayerNorm backward overflows in float16 (eps is 0 there), padding or none."""

    in_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(2, 16)
        torch.nn.init.zeros_(self.embed.bias)
        self.norm = torch.nn.LayerNorm(16, eps=1e-12)

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        keep = point_mask[..., None]
        h = self.norm(self.embed(torch.where(keep, points, 0.0)))  # [B, M, N, C]
        pooled = h.masked_fill(~keep, float("-inf")).amax(2)  # [B, M, C]
        return torch.where(point_mask.any(-1, keepdim=True), pooled, 0.0)


class ZeroBiasLayerNormNanOnEmpty(ZeroBiasLayerNorm):
    """The same, with a real mask bug: empty lanes' -inf max is selected away only after a
    division, so their NaN reaches the backward pass at every dtype."""

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        keep = point_mask[..., None]
        h = self.norm(self.embed(torch.where(keep, points, 0.0)))  # [B, M, N, C]
        pooled = h.masked_fill(~keep, float("-inf")).amax(2)  # [B, M, C]
        scaled = pooled / pooled.abs().amax(-1, keepdim=True)  # -inf / inf = NaN on empty lanes
        return torch.where(point_mask.any(-1, keepdim=True), scaled, 0.0)


def _origin_lane(dtype: torch.dtype) -> LaneBatch:
    """One lane of one real point at the origin, no padding: the shrunk example."""
    return LaneBatch(torch.zeros(1, 1, 1, 2, dtype=dtype), torch.ones(1, 1, 1, dtype=torch.bool))


def test_the_float16_layernorm_overflow_is_the_dtypes_by_experiment() -> None:
    """The measured case: float16 LayerNorm backward on an exactly-zero vector. Lanes alone and
    unpadded show NaN gradients at float16 and none at float32, so the row is the dtype's."""
    encoder = ZeroBiasLayerNorm().eval()
    half = encoder.to(torch.float16)
    assert "gradient" in lanes_alone_trouble(half, _origin_lane(torch.float16))
    assert lanes_alone_trouble(ZeroBiasLayerNorm().eval(), _origin_lane(torch.float32)) == ""
    report = check_encoder(
        ZeroBiasLayerNorm(),
        dtype=[torch.float32, torch.float16],
        properties="gradients_isolated",
        settings=FAST,
    )
    rows = {r.dtype: r for r in report.results}
    assert rows[torch.float32].verdict == "pass", str(report)
    assert rows[torch.float16].verdict == "unsupported", str(report)
    assert rows[torch.float16].note.startswith("float16 numerics, not a mask bug")
    assert "plain float32" in rows[torch.float16].note


def test_a_mask_bug_at_a_low_dtype_stays_a_failure() -> None:
    """NaN from empty lanes at float16: the lanes alone (never empty) give none, so it is the
    encoder's, not the dtype's."""
    try:
        check_encoder(
            ZeroBiasLayerNormNanOnEmpty(),
            dtype=torch.float16,
            properties="gradients_isolated",
            empty_lanes=True,
            settings=settings(FAST, max_examples=30),
        )
    except EncoderPropertyError as failure:
        assert failure.property_name == "gradients_isolated"
        assert not (~failure.example.lane_mask).all()
    else:
        raise AssertionError("NaN gradients from empty lanes at float16 passed")


def test_a_nonfinite_gradient_is_blamed_on_masked_rows_only_when_there_is_one() -> None:
    class NormAtOrigin(torch.nn.Module):
        in_dim = 2

        def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
            keep = point_mask[..., None]
            length = torch.where(keep, points, 0.0).pow(2).sum(-1, keepdim=True).sqrt()
            return torch.where(keep, length, 0.0).sum(2)  # [B, M, 1]; sqrt'(0) is inf

    try:
        assert_gradients_isolated(NormAtOrigin(), _origin_lane(torch.float32))
    except EncoderPropertyError as failure:
        assert "no masked row" in failure.detail, failure.detail
        assert "from masked rows" not in failure.detail
    else:
        raise AssertionError("a NaN gradient passed")
    padded = LaneBatch(torch.zeros(1, 1, 2, 2), torch.tensor([[[True, False]]]))
    try:
        assert_gradients_isolated(NormAtOrigin(), padded)
    except EncoderPropertyError as failure:
        assert "from masked rows" in failure.detail, failure.detail


def test_an_autocast_rows_example_is_not_shown_as_float32() -> None:
    failure = EncoderPropertyError("finite", "NaN", _origin_lane(torch.float32))
    assert "autocast" not in str(failure)
    failure.dtype = str(torch.float16)  # what the check sets: the row's dtype
    failure.refresh()
    assert "run under torch.autocast at float16" in str(failure), str(failure)


class WideRange(torch.nn.Module):
    """Correct masking, but its first Linear's outputs exceed float16's range (65504) for
    coordinates of the contract's range: under autocast at float16 the matmul overflows to inf,
    on any lane, padded or not."""

    in_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 8)
        with torch.no_grad():
            self.linear.weight.fill_(1e4)

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        keep = point_mask[..., None]
        h = torch.where(keep, self.linear(torch.where(keep, points, 0.0)), 0.0)  # [B, M, N, 8]
        return h.sum(2) / keep.sum(2).clamp(min=1)


def test_under_autocast_the_probe_runs_in_autocast_and_float32_outside_it() -> None:
    """Were the float32 side run inside autocast, it would overflow too and the row would be
    blamed on the encoder; were the probe run outside it, it would see nothing."""
    report = check_encoder(
        WideRange(),
        dtype=torch.float16,
        precision="autocast",
        properties="finite",
        settings=settings(FAST, max_examples=20),
    )
    (row,) = report.results
    assert row.verdict == "unsupported", str(report)
    assert "(under autocast)" in row.note and "plain float32" in row.note


class MultipliesByMask(torch.nn.Module):
    """A mask bug at any dtype: padded NaN times 0 is NaN."""

    in_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 4)

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        weight = point_mask[..., None].to(points.dtype)
        h = self.linear(points) * weight  # BUG: 0 * NaN
        return h.sum(2) / weight.sum(2).clamp(min=1)


def test_an_autocast_rows_failure_says_so_and_stays_a_failure() -> None:
    try:
        check_encoder(
            MultipliesByMask(),
            dtype=torch.float16,
            precision="autocast",
            properties="ignores_nonfinite_padding",
            settings=FAST,
        )
    except EncoderPropertyError as failure:
        assert failure.example.points.dtype == torch.float32  # inputs stay float32 under autocast
        assert "float32, cpu" in str(failure)
        assert "run under torch.autocast at float16" in str(failure), str(failure)
    else:
        raise AssertionError("0 * NaN under autocast passed")
