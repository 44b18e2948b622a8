"""PointNet encoder returning ``(embedding, valid)``: lpim's own implementation, from the paper.

Family: the PointNet-style encoders (Qi et al., CVPR 2017) that motion-prediction and planning
models run on map polylines and agent histories alike: a shared MLP (Linear, LayerNorm, ReLU,
twice) lifts every point slot, a max-pool over the polyline's real points gives its embedding,
and the forward returns it *with* its validity, ``(embedding [B, M, C], valid [B, M])``, for the
scene encoder that reads the polylines next. lpim reads that tuple as it comes: the default
`output` picks the one ``[B, M, C]`` tensor among its parts, so no adapter is needed.

Loader's data contract: real points first and zeros after them (``layout="right"``,
``garbage="zeros"``); polylines and samples may be empty (``valid`` says which).

What lpim finds (``check_encoder``, float32, 10 examples a property):

- `PointNetValid` (`build_encoder`) runs the shared MLP on **every** slot, padded ones too, and
  masks only at the max-pool (padded features selected to ``-inf``, so they never win). The
  forward is right whatever the padded slots hold, NaN included: it passes every property under
  its loader's contract, and under any *finite* garbage (``garbage="finite"``). With the default
  contract, ``gradients_ignore_padding`` fails: the pool sends a padded slot a zero gradient,
  but the first Linear's weight gradient sums ``gradient x input`` over every slot it ran on,
  and a NaN or inf in a padded slot makes that ``0 * NaN``: NaN in ``mlp.0.weight``'s gradient
  (lpim names the parameter), so one optimiser step on such a batch puts NaN into the weights
  while the loss looks finite. Huge finite garbage (``garbage="any_finite"``) does it too: the
  first Linear overflows to inf, LayerNorm turns that into NaN, and its backward is the same
  ``0 * NaN``. ``--garbage finite`` (or the loader's ``--garbage zeros``) is the contract flag
  that narrows it, as lpim's message says.
- `build_fixed` selects the padded points to zero *before* the MLP (``torch.where``, never a
  multiplication: ``0 * NaN`` is NaN), as the hazard's remedy says. It passes the default
  contract: any layout, any garbage, empty lanes and samples.

Run it from this folder::

    lpim check pointnet_valid:build_encoder --layout right --garbage zeros    # exit 0
    lpim check pointnet_valid:build_encoder                                  # exit 1
    lpim check pointnet_valid:build_fixed                                    # exit 0
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PointNetValid(nn.Module):
    """``forward(points [B, M, N, D], point_mask [B, M, N]) -> (embedding, valid)``.

    The embedding is ``[B, M, C]`` and ``valid`` ``[B, M]``. ``point_mask`` is True at real
    points; ``valid`` is True for a polyline with a real point, and the embedding of one
    without is zeros.

    Args:
        in_dim: ``D``, coordinates (and attributes) per point; lpim reads it from here.
        hidden: width of the point features.
        out_dim: ``C``, the embedding width.
        coord_range: coordinates are divided by this.
        select_first: the fix; False runs the MLP on every slot's points as they come.
    """

    def __init__(
        self,
        in_dim: int = 2,
        hidden: int = 32,
        out_dim: int = 32,
        coord_range: float = 50.0,
        select_first: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.coord_range = coord_range
        self.select_first = select_first
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.LayerNorm(hidden),
            nn.ReLU(),
        )
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, points: Tensor, point_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(embedding [B, M, C], valid [B, M])``."""
        real = point_mask[..., None]  # [B, M, N, 1]
        # --8<-- [start:select]
        if self.select_first:  # the fix: padded points are zeros, by selection, before the MLP
            points = torch.where(real, points, 0)  # [B, M, N, D]
        x = self.mlp(points / self.coord_range)  # [B, M, N, H], every slot
        x = torch.where(real, x, float("-inf"))  # padded features never win the max
        # --8<-- [end:select]
        valid = point_mask.any(dim=-1)  # [B, M]
        pooled = torch.where(valid[..., None], x.amax(dim=2), 0)  # [B, M, H]; 0 when empty
        embedding = torch.where(valid[..., None], self.out(pooled), 0)  # [B, M, C]
        return embedding, valid


def build_encoder() -> PointNetValid:
    """The encoder as written (MLP on every slot); seed-0 weights, eval mode."""
    torch.manual_seed(0)
    return PointNetValid().eval()


def build_fixed() -> PointNetValid:
    """The fix: the same weights, padded points selected to zero before the MLP."""
    torch.manual_seed(0)
    return PointNetValid(select_first=True).eval()
