"""The two small encoders every zoo entry is built from, with their forward passes cut into steps.

Each bug in `lpim.zoo.bugs` is a subclass that overrides one step of a correct encoder, so
the diff between the two *is* the bug. Both bases follow the encoder protocol of
`lpim.testing.check_encoder`: `forward(points [B, M, N, D], point_mask [B, M, N])` with
`point_mask` True on real points, returning a `LaneOutput`.

`AttentionLaneEncoder` is the LPIM prior encoder in miniature: an MLP embeds each point's
coordinates, one learned query token is prepended to every lane, one post-norm Transformer layer
runs over the `1 + N` tokens, and the query token's output is the lane embedding. Its steps:

| step | default (correct) behaviour |
|---|---|
| `clean_points` | select padded points away: `torch.where(point_mask, points, 0)` |
| `embed` | coordinates / 50 m through a two-layer MLP, one token per point |
| `key_padding_mask` | `lpim.masks.to_key_padding_mask(point_mask, query_tokens=1)` |
| `attention` | the layer's `nn.MultiheadAttention`, that mask, `need_weights=False` |
| `encode` | the parts of one `nn.TransformerEncoderLayer` (post-norm, GELU FFN) |
| `finish` | empty lanes and padded points set to exact zeros by selection |

`PointLaneEncoder` is a PointNet in miniature (MTR / VectorNet style): a per-point MLP and
a `pool` over each lane's points, which its subclasses supply.

Both compute every one of the `B * M` lanes, empty ones included (the reference encoder
`lpim.PriorEncoder` skips them): that keeps each step a plain batched op, and it is what
makes empty-lane bugs possible at all. The query token is what keeps it safe here: it is never
masked, so no attention row of the base ever has every key masked.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpim.masks import to_key_padding_mask

__all__ = [
    "AttentionLaneEncoder",
    "LaneOutput",
    "PointLaneEncoder",
    "coordinate_mlp",
    "merge_heads",
    "split_heads",
]


class LaneOutput(NamedTuple):
    """What every zoo encoder returns."""

    lane_embedding: Tensor  # [B, M, C]
    point_features: Tensor  # [B, M, N, C]


def coordinate_mlp(in_dim: int, d_model: int) -> nn.Sequential:
    """`D -> C -> C` MLP that turns a point's (range-normalised) coordinates into a token."""
    return nn.Sequential(nn.Linear(in_dim, d_model), nn.ReLU(), nn.Linear(d_model, d_model))


class AttentionLaneEncoder(nn.Module):
    """Correct: a one-layer LPIM prior encoder with a query token and an MHA key padding mask.

    Why it is right: padded points are *selected* away before anything reads them (no `0 * NaN`),
    the 2D `key_padding_mask` comes from `lpim.masks.to_key_padding_mask` (True = ignore,
    query column never masked, so no attention row is ever fully masked), nothing depends on a
    point's slot index (right, left and scattered padding agree), and empty lanes and padded points
    are set to zero by `torch.where`, which also gives padded inputs an exact zero gradient.

    Registered as `mha_key_padding_mask`.
    """

    # torch_transformer_fast_path sets this, and runs the same layer through torch's forward.
    nested_fast_path: ClassVar[bool] = False

    def __init__(
        self, in_dim: int = 2, d_model: int = 16, nhead: int = 2, coord_range: float = 50.0
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.d_model = d_model
        self.nhead = nhead
        self.coord_range = coord_range
        self.point_embed = coordinate_mlp(in_dim, d_model)
        self.query = nn.Parameter(torch.randn(d_model))  # [C], the learned query token
        # torch's own layer (post-norm, GELU, no dropout) in a one-layer nn.TransformerEncoder.
        # encode() calls the layer's parts by hand so that every mask step can be overridden.
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                d_model, nhead, 2 * d_model, dropout=0.0, activation="gelu", batch_first=True
            ),
            num_layers=1,
            enable_nested_tensor=self.nested_fast_path,
        )

    @property
    def layer(self) -> nn.TransformerEncoderLayer:
        """The encoder's single `nn.TransformerEncoderLayer`."""
        return cast(nn.TransformerEncoderLayer, self.encoder.layers[0])

    def forward(self, points: Tensor, point_mask: Tensor) -> LaneOutput:
        """`points [B, M, N, D]` and `point_mask [B, M, N]` (True = real) -> outputs."""
        B, M, N, _ = points.shape
        C = self.d_model
        clean = self.clean_points(points, point_mask)  # [B, M, N, D]
        point_tokens = self.embed(clean, point_mask).reshape(B * M, N, C)  # [B*M, N, C]
        query = self.query.expand(B * M, 1, C)  # [B*M, 1, C]
        tokens = torch.cat([query, point_tokens], dim=1)  # [B*M, 1+N, C]
        tokens = self.encode(tokens, point_mask)  # [B*M, 1+N, C]
        lane_embedding = tokens[:, 0].reshape(B, M, C)  # [B, M, C]
        point_features = tokens[:, 1:].reshape(B, M, N, C)  # [B, M, N, C]
        return self.finish(lane_embedding, point_features, point_mask)

    # -- the steps a bug may override --------------------------------------------------------

    def clean_points(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Padded slots -> 0 by selection: NaN, inf and 1e30 garbage never reach a real output."""
        return torch.where(point_mask[..., None], points, 0)  # [B, M, N, D]

    def embed(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """One token per point from its coordinates only (no slot index): `[B, M, N, C]`."""
        tokens: Tensor = self.point_embed(points / self.coord_range)  # [B, M, N, C]
        return tokens

    def key_padding_mask(self, point_mask: Tensor) -> Tensor:
        """MHA `key_padding_mask` `[B*M, 1+N]`, True = ignore; the query column is False."""
        return to_key_padding_mask(point_mask, query_tokens=1)  # [B*M, 1+N]

    def attention(self, tokens: Tensor, point_mask: Tensor) -> Tensor:
        """Self-attention over each lane's `1 + N` tokens: `[B*M, 1+N, C]`."""
        attended: Tensor = self.layer.self_attn(
            tokens,
            tokens,
            tokens,
            key_padding_mask=self.key_padding_mask(point_mask),
            need_weights=False,
        )[0]  # [B*M, 1+N, C]
        return attended

    def encode(self, tokens: Tensor, point_mask: Tensor) -> Tensor:
        """One post-norm Transformer layer (GELU FFN, no dropout): `[B*M, 1+N, C]`."""
        layer = self.layer
        tokens = layer.norm1(tokens + self.attention(tokens, point_mask))  # [B*M, 1+N, C]
        hidden = F.gelu(layer.linear1(tokens))  # [B*M, 1+N, 2C]
        out: Tensor = layer.norm2(tokens + layer.linear2(hidden))  # [B*M, 1+N, C]
        return out

    def finish(
        self, lane_embedding: Tensor, point_features: Tensor, point_mask: Tensor
    ) -> LaneOutput:
        """Empty lanes and padded points -> exact zeros, by selection (gradients stay clean)."""
        lane_mask = point_mask.any(dim=-1)  # [B, M]
        return LaneOutput(
            torch.where(lane_mask[..., None], lane_embedding, 0),  # [B, M, C]
            torch.where(point_mask[..., None], point_features, 0),  # [B, M, N, C]
        )


class PointLaneEncoder(nn.Module):
    """A per-point MLP followed by a `pool` over each lane's points (PointNet style).

    Subclasses supply `pool`, which returns `[B, M, C]` and decides what an empty lane
    gets. `finish` zeroes padded point features by selection and leaves lane embeddings alone.
    """

    def __init__(self, in_dim: int = 2, d_model: int = 16, coord_range: float = 50.0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.d_model = d_model
        self.coord_range = coord_range
        self.point_mlp = nn.Sequential(coordinate_mlp(in_dim, d_model), nn.ReLU())

    def forward(self, points: Tensor, point_mask: Tensor) -> LaneOutput:
        """`points [B, M, N, D]` and `point_mask [B, M, N]` (True = real) -> outputs."""
        clean = self.clean_points(points, point_mask)  # [B, M, N, D]
        features = self.embed(clean, point_mask)  # [B, M, N, C]
        lane_embedding = self.pool(features, point_mask)  # [B, M, C]
        return self.finish(lane_embedding, features, point_mask)

    def clean_points(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Padded slots -> 0 by selection, as in `AttentionLaneEncoder`."""
        return torch.where(point_mask[..., None], points, 0)  # [B, M, N, D]

    def embed(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Per-point features from the coordinates alone: `[B, M, N, C]`."""
        features: Tensor = self.point_mlp(points / self.coord_range)  # [B, M, N, C]
        return features

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        """`features [B, M, N, C]` -> lane embeddings `[B, M, C]`; supplied by subclasses."""
        raise NotImplementedError(f"{type(self).__name__} must define pool()")

    def finish(
        self, lane_embedding: Tensor, point_features: Tensor, point_mask: Tensor
    ) -> LaneOutput:
        """Padded point features -> exact zeros by selection; lane embeddings as pooled."""
        return LaneOutput(lane_embedding, torch.where(point_mask[..., None], point_features, 0))


def split_heads(x: Tensor, nhead: int) -> Tensor:
    """`[R, L, C]` -> `[R, H, L, C/H]`, the head split `nn.MultiheadAttention` uses."""
    R, L, C = x.shape
    return x.reshape(R, L, nhead, C // nhead).transpose(1, 2)  # [R, H, L, C/H]


def merge_heads(x: Tensor) -> Tensor:
    """`[R, H, L, C/H]` -> `[R, L, C]`; inverse of `split_heads`."""
    R, H, L, Dh = x.shape
    return x.transpose(1, 2).reshape(R, L, H * Dh)  # [R, L, C]
