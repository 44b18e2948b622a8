"""MTR-style PointNet polyline encoder: lpim's own implementation, from the paper's description.

Family: the polyline encoder of MTR (Motion Transformer, Shi et al., NeurIPS 2022) and the
PointNet-style map encoders derived from it. Each map polyline is a set of points; a pre-MLP
(Linear, BatchNorm1d, ReLU) lifts every point, a max-pool over the polyline's real points gives
a polyline feature, a second MLP reads ``[point feature, pooled feature]`` per point, a second
max-pool and an output MLP give the polyline embedding, and a polyline without any real point
gets zeros.

Loader's data contract: MTR's loader cuts map polylines into fixed-length segments and fills
invalid points with zeros (a mask says which are real); real points come first. This encoder
needs none of it.

What lpim finds: it passes the default contract (any layout, any garbage including NaN and inf,
empty lanes and empty samples), because padded points are *selected* to zero before the MLP
(never multiplied: ``0 * NaN`` is NaN) and their features, which have left a ReLU and so are
>= 0, are selected to zero before each max-pool, so they never beat a real point.
BatchNorm1d runs in eval mode (the running statistics, a per-channel affine map, so no point
reads another). Run it from this folder::

    lpim check mtr_polyline:build_encoder
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _mlp_bn_relu(in_features: int, out_features: int) -> nn.Module:
    """Linear, BatchNorm1d over channels, ReLU: one PointNet layer on ``[P, C]`` points."""
    return nn.Sequential(
        nn.Linear(in_features, out_features, bias=False),
        nn.BatchNorm1d(out_features),
        nn.ReLU(),
    )


class PointNetPolylineEncoder(nn.Module):
    """``forward(points [B, M, N, D], point_mask [B, M, N]) -> [B, M, C]`` (True = real point).

    Args:
        in_channels: ``D``, coordinates (and attributes) per point; lpim reads it from here.
        hidden_dim: width of the point features.
        out_channels: ``C``, the polyline embedding width.
    """

    def __init__(self, in_channels: int = 2, hidden_dim: int = 32, out_channels: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.pre_mlp = _mlp_bn_relu(in_channels, hidden_dim)
        self.mlp = nn.Sequential(
            _mlp_bn_relu(2 * hidden_dim, hidden_dim), _mlp_bn_relu(hidden_dim, hidden_dim)
        )
        self.out_mlp = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_channels)
        )

    @staticmethod
    def _per_point(layer: nn.Module, x: Tensor) -> Tensor:
        """Apply a ``[P, C]`` layer to ``[B, M, N, C]`` points."""
        B, M, N, C = x.shape
        out: Tensor = layer(x.reshape(B * M * N, C))  # [B*M*N, C']
        return out.reshape(B, M, N, -1)  # [B, M, N, C']

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Polyline embeddings ``[B, M, C]``; zeros for a polyline without real points."""
        real = point_mask[..., None]  # [B, M, N, 1]
        x = torch.where(real, points, 0)  # [B, M, N, D]: padded points are zeros, by selection
        x = self._per_point(self.pre_mlp, x)  # [B, M, N, H], >= 0 after the ReLU
        x = torch.where(real, x, 0)  # padded features 0: they never win the max
        pooled = x.amax(dim=2, keepdim=True)  # [B, M, 1, H]
        x = torch.cat([x, pooled.expand_as(x)], dim=-1)  # [B, M, N, 2H]
        x = self._per_point(self.mlp, x)  # [B, M, N, H], >= 0
        x = torch.where(real, x, 0)
        pooled = x.amax(dim=2)  # [B, M, H]
        out: Tensor = self.out_mlp(pooled)  # [B, M, C]
        return torch.where(point_mask.any(dim=-1)[..., None], out, 0)  # empty polylines: 0


def build_encoder() -> PointNetPolylineEncoder:
    """Seed-0 weights and non-trivial BatchNorm running statistics, eval mode."""
    torch.manual_seed(0)
    encoder = PointNetPolylineEncoder()
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm1d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)  # as after training, not the identity
            module.running_var.uniform_(0.5, 2.0)
    return encoder.eval()
