"""Which crash is the dtype's, by experiment (`lpim.testing.dtype_probe`), not by torch's
wording (issue 21, item 6)."""

from __future__ import annotations

import torch
from hypothesis import settings

from lpim.testing import EncoderPropertyError, check_encoder
from lpim.testing.dtype_probe import crash_of, dtype_unsupported, runs_at_float32
from lpim.zoo import BUGS

FAST = settings(max_examples=5, database=None, deadline=None)


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
