"""VectorNet-style sub-graph with self-attention: lpim's own implementation, from the papers.

Family: the polyline sub-graphs that followed VectorNet (Gao et al., CVPR 2020) and replaced its
per-vector MLP with self-attention over a polyline's points (a Transformer layer per polyline,
then a max-pool to one polyline feature). The collate step *merges* the batch's polylines into
one ``[P, L, D]`` tensor, ``L`` the longest polyline of the batch, each one's real points first
and zeros after them (``pad_sequence``), with a key padding mask from the lengths; attention is
run on the merged rows and a max-pool over the points gives each polyline's embedding.

Loader's data contract: every polyline has at least one point (the loader drops empty ones and
asserts it; so does this encoder), so no sample is empty either; the loader writes real points
first and zeros after them. Here the merge itself gathers each polyline's real points to the
front and selects the rest to zero, so any layout and any garbage reach it as its loader's.

What lpim finds (``check_encoder``, float32, 10 examples a property):

- `AttentionSubgraph` (`build_encoder`) is the bug: its max-pool runs over **all** ``L`` merged
  rows, the padded ones too. The key padding mask keeps padded *keys* out of every row's
  attention, but a padded row is still a *query*: it attends to the polyline's real points and
  comes out as a finite, ordinary-looking feature that can win the max. Whether a polyline has
  padded rows depends on the *other* polylines (``L`` is the longest in the batch), so its
  embedding changes when another lane grows longer than it, and differs from the same polyline
  run alone. Under its loader's contract (``empty_lanes=False, empty_samples=False,
  layout="right", garbage="zeros"``) ``matches_unpadded`` fails: the smallest example is a
  one-point polyline beside a longer one. ``lanes_independent`` passes: its variations move
  lanes within the batch, so the batch's longest polyline keeps its length, and under this
  contract none is emptied or filled. With the default contract ``runs`` fails as well: an
  empty lane trips the assertion, which is the contract to state, not a bug.
- `build_fixed` pools over the real rows only (``pool_real_rows_only=True``, the padded rows
  selected to ``-inf`` before the max). It passes every property under the loader's contract;
  under the default contract only ``runs`` fails (the empty-lane assertion).

Run it from this folder::

    lpim check attention_subgraph:build_encoder --empty-lanes no --empty-samples no \\
        --layout right --garbage zeros                   # exit 1
    lpim check attention_subgraph:build_fixed --empty-lanes no --empty-samples no \\
        --layout right --garbage zeros                   # exit 0
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AttentionSubgraphLayer(nn.Module):
    """Post-norm self-attention and feed-forward over merged rows ``[P, L, H]``."""

    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(hidden, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden)
        )
        self.norm2 = nn.LayerNorm(hidden)

    def forward(self, x: Tensor, key_padding_mask: Tensor) -> Tensor:
        """``x [P, L, H]``, ``key_padding_mask [P, L]`` (True = padded) -> ``[P, L, H]``."""
        attended, _ = self.self_attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)
        x = self.norm1(x + attended)  # [P, L, H]
        return self.norm2(x + self.ffn(x))  # [P, L, H]


class AttentionSubgraph(nn.Module):
    """``forward(points [B, M, N, D], point_mask [B, M, N]) -> [B, M, H]`` (True = real point).

    Args:
        in_dim: ``D``, coordinates per point; lpim reads it from here.
        hidden: ``H``, the embedding width.
        num_heads: attention heads.
        num_layers: attention layers.
        coord_range: coordinates are divided by this (metres to about [-1, 1]).
        pool_real_rows_only: the fix; False pools over every merged row, padded ones too.
    """

    def __init__(
        self,
        in_dim: int = 2,
        hidden: int = 16,
        num_heads: int = 2,
        num_layers: int = 2,
        coord_range: float = 50.0,
        pool_real_rows_only: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.coord_range = coord_range
        self.pool_real_rows_only = pool_real_rows_only
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.layers = nn.ModuleList(
            AttentionSubgraphLayer(hidden, num_heads) for _ in range(num_layers)
        )

    @staticmethod
    def merge(points: Tensor, point_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The collate step: ``[P, L, D]`` rows, real points first then zeros, and their mask.

        ``P = B * M`` polylines, ``L`` the longest polyline of the batch (``pad_sequence``).
        """
        B, M, N, D = points.shape
        lengths = point_mask.sum(dim=-1).reshape(B * M)  # [P]
        assert bool((lengths > 0).all()), "the loader keeps non-empty polylines only"
        L = int(lengths.max())
        # Gather each polyline's real points to the front, keeping their order (stable sort).
        order = torch.argsort((~point_mask).to(torch.uint8), dim=-1, stable=True)  # [B, M, N]
        gathered = torch.gather(points, 2, order[..., None].expand_as(points))  # [B, M, N, D]
        real = torch.gather(point_mask, 2, order)  # [B, M, N]: True for a prefix
        gathered = torch.where(real[..., None], gathered, 0)  # zeros after the real points
        return gathered.reshape(B * M, N, D)[:, :L], real.reshape(B * M, N)[:, :L]

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Polyline embeddings ``[B, M, H]``."""
        B, M = point_mask.shape[:2]
        rows, row_mask = self.merge(points / self.coord_range, point_mask)  # [P, L, D], [P, L]
        x = self.embed(rows)  # [P, L, H]
        for layer in self.layers:
            x = layer(x, key_padding_mask=~row_mask)  # [P, L, H]
        # --8<-- [start:pool]
        if self.pool_real_rows_only:  # the fix: padded rows never win the max
            x = torch.where(row_mask[..., None], x, float("-inf"))  # [P, L, H]
        pooled = x.amax(dim=1)  # [P, H]; the bug pools over the padded rows too
        # --8<-- [end:pool]
        return pooled.reshape(B, M, -1)  # [B, M, H]


def build_encoder() -> AttentionSubgraph:
    """The sub-graph as written, pooling over every merged row; seed-0 weights, eval mode."""
    torch.manual_seed(0)
    return AttentionSubgraph().eval()


def build_fixed() -> AttentionSubgraph:
    """The fix: the same weights, pooling over each polyline's real rows only."""
    torch.manual_seed(0)
    return AttentionSubgraph(pool_real_rows_only=True).eval()
