"""The sanitizer measured against the zoo, on realistic batches (B = 8; M = 50 and 200; 8 heads).

Every correct encoder and lpim.PriorEncoder: zero findings. Every bug: exactly the kind its
docstring names ("Sanitizer: found as `KIND`"), or none at all where it says "needs
check_encoder" (so the table in the docs is what the sanitizer does, both ways).
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from torch import nn

import lpim
from lpim import LaneBatch, PriorEncoder
from lpim.zoo import BUGS, CORRECT, ZooEntry, sanitizer_verdict

torch.set_num_threads(1)

HEADS = 8
N = 20  # points per lane; lanes have 10-20 real points (50-100 %), 1 query token in front


def realistic_batch(num_lanes: int, lane_fill: tuple[float, float], seed: int) -> LaneBatch:
    """B = 8 samples of ``num_lanes`` slots, right-padded, the rest empty lanes (LPIM's fill)."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(8):
        low, high = lane_fill
        real = max(
            1, round((low + (high - low) * float(torch.rand((), generator=gen))) * num_lanes)
        )
        counts = torch.randint(N // 2, N + 1, (real,), generator=gen)
        samples.append([torch.rand(int(c), 2, generator=gen) * 100 - 50 for c in counts])
    return LaneBatch.from_lanes(samples, num_lanes=num_lanes, num_points=N, layout="right")


BATCHES = {
    "M50": realistic_batch(50, (0.10, 0.30), seed=0),  # 10-30 % of 50 lanes real
    "M200": realistic_batch(200, (0.025, 0.075), seed=1),  # 2.5-7.5 % of 200 (the seed's crash)
}


def with_heads(entry: ZooEntry) -> nn.Module:
    """The zoo encoder rebuilt with 8 heads where it takes heads (seed-0 weights, eval mode)."""
    encoder = entry.factory()
    kind = type(encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if isinstance(encoder, PriorEncoder):
            return PriorEncoder(in_dim=2, d_model=16, nhead=HEADS, num_layers=1,
                                dim_feedforward=32).eval()  # fmt: skip
        if "nhead" in inspect.signature(kind).parameters:
            return kind(nhead=HEADS).eval()
    return encoder


def run(
    encoder: nn.Module, batch: LaneBatch, allow: list[str] | None = None
) -> lpim.sanitizer.SanitizeReport:
    session = lpim.sanitize("collect", allow=allow)
    with torch.no_grad(), warnings.catch_warnings(), session as report:
        warnings.simplefilter("ignore")  # torch's nested-tensor prototype warning
        try:
            encoder(batch.points, batch.point_mask)
        except RuntimeError:
            pass  # seed_crash_3d_mask: torch raises after the sanitizer recorded it
    return report


# Correct by design while some attention rows have no key: their docstrings say why the 0
# that this path gives is relied on. The sanitizer reports such rows (another path gives NaN),
# and `allow` is how a user says the pattern is intended.
INTENDED_FULLY_MASKED = {"attention_pooling"}


@pytest.mark.parametrize("size", list(BATCHES))
@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_encoders_give_no_finding(name: str, size: str) -> None:
    allow = ["fully_masked_rows"] if name in INTENDED_FULLY_MASKED else []
    report = run(with_heads(CORRECT[name]), BATCHES[size], allow=allow)
    assert report.ok, report.table()
    if allow:
        assert run(with_heads(CORRECT[name]), BATCHES[size]).kinds() == {"fully_masked_rows"}
    # the others call no torch attention: pooling, or a softmax written out by hand
    if name not in ("pointnet_masked_max", "masked_mean", "last_real_point",
                    "manual_softmax_additive", "float32_internal",
                    "gru_packed_right_padding"):  # fmt: skip
        assert report.calls >= 1  # it was seen: attention ran under the sanitizer


@pytest.mark.parametrize("size", list(BATCHES))
def test_prior_encoder_realistic_size_gives_no_finding(size: str) -> None:
    torch.manual_seed(0)
    encoder = PriorEncoder(in_dim=2, d_model=64, nhead=HEADS, num_layers=2).eval()
    report = run(encoder, BATCHES[size])
    assert report.ok and report.calls >= 1, report.table()


@pytest.mark.parametrize("size", list(BATCHES))
@pytest.mark.parametrize("name", list(BUGS))
def test_each_bug_is_found_as_its_docstring_says(name: str, size: str) -> None:
    kind, _ = sanitizer_verdict(BUGS[name])
    report = run(with_heads(BUGS[name]), BATCHES[size])
    expected = set() if kind is None else {kind}
    assert report.kinds() == expected, (
        f"{name}: the docstring says {kind or 'needs check_encoder'}; the sanitizer found "
        f"{sorted(report.kinds())}\n{report.table()}"
    )
    if kind is not None:
        assert all(f.where.startswith("tests") or "test_sanitize_zoo.py" in f.where
                   for f in report.findings), report.table()  # fmt: skip


def test_multiply_by_mask_shows_as_nonfinite_output_with_nan_garbage() -> None:
    """What its docstring says besides "needs check_encoder": NaN garbage is found."""
    batch = BATCHES["M50"]
    garbage = torch.where(batch.point_mask[..., None], batch.points, float("nan"))
    with torch.no_grad(), lpim.sanitize("collect") as report:
        with_heads(BUGS["multiply_by_mask"])(garbage, batch.point_mask)
    assert report.kinds() == {"nonfinite_output"}
