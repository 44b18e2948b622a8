"""LaneDiffusion lane-prior encoder and its BEV fusion: lpim's own implementation, from the paper.

Family: the lane prior of LaneDiffusion (centerline graph learning with a diffusion prior) and the
lane-prior (LPIM) modules of SeqGrowGraph-style lane-graph models. Two modules:

- `LanePriorEncoder`: each lane's points, divided by 50 (metres to about [-1, 1]), go through an
  MLP positional embedding; a learned query token is prepended (``N + 1`` tokens); post-norm
  Transformer layers (``nn.MultiheadAttention``, ``key_padding_mask = cat([query never masked],
  ~point_mask)``) run over them; the query token's output is the lane embedding.
- `BevLaneFusion`: BEV queries ``[B, Q, C]`` (or a BEV map ``[B, C, H, W]``, flattened to
  ``H * W`` queries and reshaped back) cross-attend over the ``M`` lane embeddings, with a
  residual and a LayerNorm.

Loader's data contract: LaneDiffusion's loader pads a lane with copies of its last point and
fills empty lane slots with zeros: ``garbage="repeat_last"``, right padding.

What lpim finds (float32, 10 examples a property):

- the prior encoder passes under its loader's contract (``garbage="repeat_last"``, ``"finite"``
  too). Under the default contract ``ignores_nonfinite_padding`` fails: the attention weight of
  a padded key is exactly 0, but the weighted sum still computes ``0 * inf`` = NaN from a
  padded inf or NaN. Its loader never writes one, so this is a contract to state, not a bug.
  An empty lane still has its query token, so its embedding is finite (and not zero).
- `UnmaskedBevLaneFusion` (no lane mask, as in a public reimplementation) is caught by
  ``check_lane_consumer``'s ``ignores_appended_lanes``: padding the batch to more lanes moves
  the BEV features.
- `NanOnEmptySampleFusion` masks the lanes with ``key_padding_mask`` but keeps
  ``nn.MultiheadAttention``'s default ``need_weights=True``: a sample with no lane (off the
  map) has every key masked, gives NaN, caught by ``finite``.
- `BevLaneFusion` (padded lanes selected to zero, masked, ``need_weights=False``, a sample
  without lanes gets an attention output of zeros, so its BEV features are ``norm(query)``)
  passes, with BEV queries and with a BEV map.

Run it from this folder::

    lpim check lanediffusion_prior:build_encoder --garbage repeat_last --layout right
    lpim check-consumer lanediffusion_prior:build_fusion \
        --other-inputs lanediffusion_prior:bev_queries --order-invariant
    lpim check-consumer lanediffusion_prior:build_map_fusion \
        --other-inputs lanediffusion_prior:bev_map --order-invariant
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import Tensor, nn

EMBED_DIM = 16  # C, shared by the encoder and the fusion
COORD_SCALE = 50.0  # LaneDiffusion divides coordinates by 50


class PostNormLayer(nn.Module):
    """``x + attention``, norm, ``x + feed-forward``, norm: ``[L, S, C] -> [L, S, C]``."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, key_padding_mask: Tensor) -> Tensor:
        """``key_padding_mask [L, S]``: True = ignore that token, as MultiheadAttention reads it."""
        attended = self.self_attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)[0]
        x = self.norm1(x + attended)  # [L, S, C]
        out: Tensor = self.norm2(x + self.linear2(torch.relu(self.linear1(x))))  # [L, S, C]
        return out


class LanePriorEncoder(nn.Module):
    """``forward(points [B, M, N, D], point_mask [B, M, N]) -> [B, M, C]`` (True = real point).

    Args:
        in_dim: ``D``; lpim reads it from here.
        d_model: ``C``.
        num_heads: attention heads.
        num_layers: post-norm Transformer layers.
    """

    def __init__(
        self, in_dim: int = 2, d_model: int = EMBED_DIM, num_heads: int = 2, num_layers: int = 2
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.pos_embed = nn.Sequential(
            nn.Linear(in_dim, d_model), nn.ReLU(), nn.Linear(d_model, d_model)
        )
        self.query = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.layers = nn.ModuleList(
            PostNormLayer(d_model, num_heads, 2 * d_model) for _ in range(num_layers)
        )

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """The query token's output per lane: ``[B, M, C]``."""
        B, M, N, D = points.shape
        tokens = self.pos_embed(points.reshape(B * M, N, D) / COORD_SCALE)  # [B*M, N, C]
        query = self.query.to(tokens.dtype).expand(B * M, 1, -1)  # [B*M, 1, C]
        x = torch.cat([query, tokens], dim=1)  # [B*M, N+1, C]
        ignore = torch.cat(
            [
                torch.zeros(B * M, 1, dtype=torch.bool, device=points.device),  # query: kept
                ~point_mask.reshape(B * M, N),  # padded points: ignored
            ],
            dim=1,
        )  # [B*M, N+1], True = ignore
        for layer in self.layers:
            x = layer(x, ignore)  # [B*M, N+1, C]
        return x[:, 0].reshape(B, M, -1)  # [B, M, C]


class BevLaneFusion(nn.Module):
    """Correct: BEV queries cross-attend over the real lanes only.

    ``forward(lane_embedding [B, M, C], lane_mask [B, M], bev)`` with ``bev`` either queries
    ``[B, Q, C]`` (returns ``[B, Q, C]``) or a map ``[B, C, H, W]`` (returns ``[B, C, H, W]``).
    """

    def __init__(self, embed_dim: int = EMBED_DIM, num_heads: int = 2) -> None:
        super().__init__()
        self.embed_dim = embed_dim  # lpim reads C from here
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, lane_embedding: Tensor, lane_mask: Tensor, bev: Tensor) -> Tensor:
        """Fused BEV features, in the layout ``bev`` came in."""
        is_map = bev.dim() == 4
        if is_map:
            B, C, H, W = bev.shape
            queries = bev.flatten(2).transpose(1, 2)  # [B, H*W, C]
        else:
            queries = bev  # [B, Q, C]
        attended = self.attend(queries, lane_embedding, lane_mask)  # [B, Q, C]
        fused: Tensor = self.norm(queries + attended)  # [B, Q, C]
        if is_map:
            return fused.transpose(1, 2).reshape(B, C, H, W)  # [B, C, H, W]
        return fused

    def attend(self, queries: Tensor, lane_embedding: Tensor, lane_mask: Tensor) -> Tensor:
        """Attention over the real lanes, zeros for a sample without lanes: ``[B, Q, C]``."""
        lanes = torch.where(lane_mask[..., None], lane_embedding, 0)  # select, never multiply
        attended = self.attn(
            queries, lanes, lanes, key_padding_mask=~lane_mask, need_weights=False
        )[0]  # [B, Q, C]
        return torch.where(lane_mask.any(dim=-1)[:, None, None], attended, 0)


class UnmaskedBevLaneFusion(BevLaneFusion):
    """Bug: every lane slot is a key, padded ones included (no lane mask at all)."""

    def attend(self, queries: Tensor, lane_embedding: Tensor, lane_mask: Tensor) -> Tensor:
        out: Tensor = self.attn(queries, lane_embedding, lane_embedding, need_weights=False)[0]
        return out


class NanOnEmptySampleFusion(BevLaneFusion):
    """Bug: masked, but ``need_weights=True`` (the default) and no selection: NaN with no lane."""

    def attend(self, queries: Tensor, lane_embedding: Tensor, lane_mask: Tensor) -> Tensor:
        lanes = torch.where(lane_mask[..., None], lane_embedding, 0)
        out: Tensor = self.attn(queries, lanes, lanes, key_padding_mask=~lane_mask)[0]
        return out


def build_encoder() -> LanePriorEncoder:
    """The prior encoder, seed-0 weights, eval mode."""
    torch.manual_seed(0)
    return LanePriorEncoder().eval()


def build_fusion() -> BevLaneFusion:
    """The correct fusion, seed-0 weights, eval mode (BEV queries or a BEV map)."""
    torch.manual_seed(0)
    return BevLaneFusion().eval()


def build_map_fusion() -> BevLaneFusion:
    """The correct fusion, for a BEV map ``[B, C, H, W]`` (the same module)."""
    return build_fusion()


def build_unmasked_fusion() -> UnmaskedBevLaneFusion:
    """The unmasked fusion, seed-0 weights, eval mode."""
    torch.manual_seed(0)
    return UnmaskedBevLaneFusion().eval()


def build_nan_fusion() -> NanOnEmptySampleFusion:
    """The fusion that gives NaN for a sample without lanes, seed-0 weights, eval mode."""
    torch.manual_seed(0)
    return NanOnEmptySampleFusion().eval()


OtherInputs = Callable[[int, torch.dtype, torch.device], st.SearchStrategy[Any]]
_VALUES = st.floats(-4.0, 4.0, allow_nan=False, allow_infinity=False, width=32)


def bev_queries(max_queries: int = 3) -> OtherInputs:
    """``other_inputs`` for the fusion: draws ``(bev_queries [B, Q, C],)``, ``Q`` in 1..max.

    ``check_lane_consumer(..., other_inputs=bev_queries())``; on the command line
    ``--other-inputs lanediffusion_prior:bev_queries`` (lpim calls it with no arguments).
    """

    def draw(batch_size: int, dtype: torch.dtype, device: torch.device) -> st.SearchStrategy[Any]:
        return (
            st.integers(1, max_queries)
            .flatmap(lambda q: arrays(np.float32, (batch_size, q, EMBED_DIM), elements=_VALUES))
            .map(lambda a: (torch.from_numpy(a).to(dtype=dtype, device=device),))
        )

    return draw


def bev_map(max_size: int = 3) -> OtherInputs:
    """``other_inputs`` for the fusion: draws ``(bev_map [B, C, H, W],)``, ``H, W`` in 1..max.

    ``check_lane_consumer(..., other_inputs=bev_map())``; on the command line
    ``--other-inputs lanediffusion_prior:bev_map``.
    """

    def draw(batch_size: int, dtype: torch.dtype, device: torch.device) -> st.SearchStrategy[Any]:
        sizes = st.tuples(st.integers(1, max_size), st.integers(1, max_size))
        return sizes.flatmap(
            lambda hw: arrays(np.float32, (batch_size, EMBED_DIM, *hw), elements=_VALUES)
        ).map(lambda a: (torch.from_numpy(a).to(dtype=dtype, device=device),))

    return draw
