"""VectorNet polyline subgraph: lpim's own implementation, from the paper's description.

Family: the polyline subgraph of VectorNet (Gao et al., CVPR 2020) and the vectorized map
encoders built on it. A polyline of ``n`` points becomes ``n - 1`` vectors
``[start point, end point]`` between consecutive points; each subgraph layer applies an MLP
(Linear, LayerNorm, ReLU) to every vector, max-pools over the polyline's vectors and concatenates
the pooled feature to each vector's; a final max-pool gives the polyline embedding.

Loader's data contract: VectorNet-style loaders pad each polyline on the right with zeros and
keep a mask of the real points.

What lpim finds (``check_encoder``, float32, 10 examples a property):

- `VectorNetSubgraph` builds vectors only between consecutive *real* points (the real points are
  first gathered to the front, in order, so left or scattered padding works too). It passes the
  default contract. A polyline with one point has no vector and gets zeros, alone or padded.
- `VectorIntoPaddingSubgraph` is the off-by-one seen in the wild: it builds a vector from every
  real point to the *next slot* (``torch.roll`` along the points), so a polyline of ``n`` real
  points makes ``n`` vectors, the last one ending in the first padded slot (zeros, from this
  loader) and, when the polyline fills the row, wrapping round to the first point. Caught by
  ``matches_unpadded`` even under the loader's own contract (``layout="right"``,
  ``garbage="zeros"``): the lane padded and the same lane alone give different embeddings.

Run it from this folder::

    lpim check vectornet_subgraph:build_encoder
    lpim check vectornet_subgraph:build_buggy_encoder --layout right --garbage zeros
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SubgraphLayer(nn.Module):
    """One subgraph layer: ``[B, M, V, C] -> [B, M, V, 2H]`` on the real vectors."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.LayerNorm(hidden), nn.ReLU())

    def forward(self, x: Tensor, vector_mask: Tensor) -> Tensor:
        """Node features concatenated with their polyline's max-pool."""
        x = self.mlp(x)  # [B, M, V, H]
        pooled = masked_max(x, vector_mask)  # [B, M, H]
        return torch.cat([x, pooled[:, :, None].expand_as(x)], dim=-1)  # [B, M, V, 2H]


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max over the real entries of dim 2: ``[B, M, V, C] -> [B, M, C]``, 0 when none is real."""
    x = torch.where(mask[..., None], x, float("-inf"))  # padded entries never win
    pooled = x.amax(dim=2)  # [B, M, C]; -inf where no entry is real
    return torch.where(mask.any(dim=-1)[..., None], pooled, 0)


class VectorNetSubgraph(nn.Module):
    """``forward(points [B, M, N, D], point_mask [B, M, N]) -> [B, M, C]`` (True = real point).

    Args:
        in_dim: ``D``, coordinates per point; lpim reads it from here.
        hidden: ``H``; the embedding width ``C`` is ``2H``.
        num_layers: subgraph layers.
        coord_range: coordinates are divided by this (metres to about [-1, 1]).
    """

    def __init__(
        self, in_dim: int = 2, hidden: int = 16, num_layers: int = 3, coord_range: float = 50.0
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.coord_range = coord_range
        widths = [2 * in_dim] + [2 * hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(SubgraphLayer(w, hidden) for w in widths)

    # --8<-- [start:vectors]
    def vectors(self, points: Tensor, point_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``[start, end]`` between consecutive real points: ``[B, M, N, 2D]`` and its mask."""
        # Gather each polyline's real points to the front, keeping their order (stable sort).
        order = torch.argsort((~point_mask).to(torch.uint8), dim=-1, stable=True)  # [B, M, N]
        gathered = torch.gather(points, 2, order[..., None].expand_as(points))  # [B, M, N, D]
        real = torch.gather(point_mask, 2, order)  # [B, M, N]: True for a prefix
        gathered = torch.where(real[..., None], gathered, 0)  # padded points: 0, by selection
        # One zero slot more, so that N = 1 still gives a (padded) vector to pool over.
        gathered = nn.functional.pad(gathered, (0, 0, 0, 1))  # [B, M, N+1, D]
        real = nn.functional.pad(real, (0, 1))  # [B, M, N+1]
        vectors = torch.cat([gathered[:, :, :-1], gathered[:, :, 1:]], dim=-1)  # [B, M, N, 2D]
        return vectors, real[:, :, 1:]  # a vector is real when its end point is

    # --8<-- [end:vectors]

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Polyline embeddings ``[B, M, 2H]``; zeros for fewer than two real points."""
        x, vector_mask = self.vectors(points / self.coord_range, point_mask)  # [B, M, V, 2D]
        for layer in self.layers:
            x = layer(x, vector_mask)  # [B, M, V, 2H]
        return masked_max(x, vector_mask)  # [B, M, 2H]


# --8<-- [start:buggy]
class VectorIntoPaddingSubgraph(VectorNetSubgraph):
    """Bug: a vector from every real point to the next *slot*, padded or not.

    ``torch.roll`` pairs point ``i`` with slot ``i + 1`` and keeps the vectors whose start is
    real: the last real point's vector ends in the first padded slot, or, for a polyline that
    fills the row (as when it is checked alone, unpadded), in its own first point. Caught by
    ``matches_unpadded``.
    """

    def vectors(self, points: Tensor, point_mask: Tensor) -> tuple[Tensor, Tensor]:
        points = torch.where(point_mask[..., None], points, 0)  # [B, M, N, D]
        end = torch.roll(points, shifts=-1, dims=2)  # the bug: the next slot, not the next point
        return torch.cat([points, end], dim=-1), point_mask  # [B, M, N, 2D], [B, M, N]


# --8<-- [end:buggy]


def build_encoder() -> VectorNetSubgraph:
    """Correct subgraph, seed-0 weights, eval mode."""
    torch.manual_seed(0)
    return VectorNetSubgraph().eval()


def build_buggy_encoder() -> VectorIntoPaddingSubgraph:
    """The vector-into-padding bug, same weights, eval mode."""
    torch.manual_seed(0)
    return VectorIntoPaddingSubgraph().eval()
