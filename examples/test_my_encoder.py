"""Testing your own lane encoder with lpim's pytest plugin: copy this file next to your model.

Installing lpim registers the plugin; nothing to add to conftest.py. Run

    pytest examples/test_my_encoder.py --hypothesis-profile lpim-dev     # while editing
    pytest examples/test_my_encoder.py --hypothesis-profile lpim-ci      # in CI: derandomized
    pytest examples/test_my_encoder.py --lpim-device all                 # CPU and every GPU

The encoder below stands for yours: an MTR-style PointNet (per-point MLP, masked max-pool over
the real points, zeros for empty lanes), written the way lpim recommends.
"""

from __future__ import annotations

import torch
from hypothesis import given
from torch import nn

from lpim.strategies import lane_batches
from lpim.testing import assert_ignores_padding, assert_matches_unpadded


class PolylineEncoder(nn.Module):
    """``points [B, M, N, D]``, ``point_mask [B, M, N]`` (True = real) -> ``[B, M, C]``."""

    def __init__(self, in_dim: int = 2, hidden: int = 32) -> None:
        super().__init__()
        self.in_dim = in_dim  # lpim reads the point dimension from here
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        real = point_mask[..., None]  # [B, M, N, 1]
        points = torch.where(real, points, 0)  # select, never multiply: 0 * NaN is NaN
        features = self.mlp(points)  # [B, M, N, C]
        features = features.masked_fill(~real, float("-inf"))  # padded slots never win the max
        pooled = features.amax(dim=2)  # [B, M, C]; -inf for an empty lane
        return torch.where(point_mask.any(dim=-1)[..., None], pooled, 0)  # empty lanes: 0


def build_encoder() -> PolylineEncoder:
    torch.manual_seed(0)
    return PolylineEncoder().eval()


def test_every_property_holds(lpim_check) -> None:
    # One line: every property at float64, float32, bfloat16 and float16, on each --lpim-device,
    # with the loaded Hypothesis profile. A failure shows the shrunk batch and a reproducer.
    report = lpim_check(build_encoder)
    assert report.passed


ENCODER = build_encoder()


@given(lane_batches(num_lanes=(1, 12), num_points=(1, 20), layout="scattered", garbage="nan"))
def test_scattered_padding_with_nan_garbage(batch) -> None:
    # The asserts work inside your own @given tests, with your own batch shapes.
    assert_matches_unpadded(ENCODER, batch)
    assert_ignores_padding(ENCODER, batch)


@given(batch=lane_batches(batch_size=(1, 4), num_lanes=(1, 8)))
def test_on_each_device(lpim_device, batch) -> None:
    # lpim_device is session-scoped, so it mixes with @given without a health-check complaint.
    encoder = build_encoder().to(lpim_device)
    assert_matches_unpadded(encoder, batch.to(device=lpim_device))
