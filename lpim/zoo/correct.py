"""Correct encoders: each passes every property, for any padding layout and any garbage.

Every class here is exact for right, left and scattered padding, NaN / inf / huge garbage in
padded slots, empty lanes, empty samples and all-empty batches at float64 and float32, and runs
without NaN at bfloat16 and float16 (masks are `-inf` or boolean, never `-1e9`). Masks come
from `lpim.masks`, never hand-built. The bugs in `lpim.zoo.bugs` subclass these.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpim.masks import (
    from_cu_seqlens,
    pack,
    to_additive_mask,
    to_attn_mask_3d,
    to_cu_seqlens,
    to_key_padding_mask,
    to_sdpa_mask,
    unpack,
)
from lpim.zoo.base import (
    AttentionLaneEncoder,
    LaneOutput,
    PointLaneEncoder,
    merge_heads,
    split_heads,
)

__all__ = [
    "AttentionPooling",
    "LastRealPoint",
    "ManualSoftmaxAdditive",
    "MaskedMean",
    "Mha3dAttnMask",
    "PackedVarlen",
    "PointNetMaskedMax",
    "SdpaRightPolarity",
    "TorchTransformerFastPath",
]


# -- attention encoders (query token + one layer) ----------------------------------------------


class Mha3dAttnMask(AttentionLaneEncoder):
    """Correct: the padding mask as MHA's per-head 3D `attn_mask`, built by lpim.

    Why it is right: `lpim.masks.to_attn_mask_3d` gives `(B*M*H, L, S)` rows in the order
    `nn.MultiheadAttention` reads them, lane-major and head-minor (`repeat_interleave`). It is
    the same mask as the 2D `key_padding_mask`, only `H * L` times larger; the 2D one is the
    better choice unless a per-query structure (causal, local) is needed. Parent of the bugs
    `repeat_head_order` and `seed_crash_3d_mask`.
    """

    def attention(self, tokens: Tensor, point_mask: Tensor) -> Tensor:
        attended: Tensor = self.layer.self_attn(
            tokens, tokens, tokens, attn_mask=self.attn_mask_3d(point_mask), need_weights=False
        )[0]  # [B*M, 1+N, C]
        return attended

    def attn_mask_3d(self, point_mask: Tensor) -> Tensor:
        """`[B*M*H, 1+N, 1+N]` bool, True = blocked, row `lane * H + head`."""
        return to_attn_mask_3d(point_mask, self.nhead, query_tokens=1)


class SdpaRightPolarity(AttentionLaneEncoder):
    """Correct: attention written with `F.scaled_dot_product_attention` and lpim's SDPA mask.

    Why it is right: SDPA reads a boolean mask as True = **attend**, the opposite of MHA, and
    `lpim.masks.to_sdpa_mask` builds exactly that (`[B*M, 1, 1, 1+N]`, query column
    True). The projections are the layer's own `in_proj` / `out_proj`, so this computes the
    same function as `mha_key_padding_mask`. Parent of `mha_polarity_in_sdpa`.
    """

    def attention(self, tokens: Tensor, point_mask: Tensor) -> Tensor:
        attn = self.layer.self_attn
        qkv = F.linear(tokens, attn.in_proj_weight, attn.in_proj_bias)  # [B*M, 1+N, 3C]
        q, k, v = (split_heads(t, self.nhead) for t in qkv.chunk(3, dim=-1))  # [B*M, H, 1+N, C/H]
        attended = self.scaled_dot_product(q, k, v, point_mask)  # [B*M, H, 1+N, C/H]
        out: Tensor = attn.out_proj(merge_heads(attended))  # [B*M, 1+N, C]
        return out

    def scaled_dot_product(self, q: Tensor, k: Tensor, v: Tensor, point_mask: Tensor) -> Tensor:
        """`softmax(q k^T / sqrt(d)) v` over unmasked keys: `[B*M, H, 1+N, C/H]`."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.sdpa_mask(point_mask))

    def sdpa_mask(self, point_mask: Tensor) -> Tensor:
        """SDPA boolean mask `[B*M, 1, 1, 1+N]`, True = attend."""
        return to_sdpa_mask(point_mask, query_tokens=1)


class ManualSoftmaxAdditive(SdpaRightPolarity):
    """Correct: the attention softmax written out, with an additive `0 / -inf` mask.

    Why it is right: `lpim.masks.to_additive_mask` puts `-inf` (in the scores' own dtype)
    on padded keys, so their weight is exactly `exp(-inf) = 0` whatever their score, in every
    dtype; the query column is never masked, so no row is all `-inf` and the softmax never sees
    `-inf - (-inf)`. Parent of `fill_minus_1e9_fp16` and `additive_minus_1e4`.
    """

    def scaled_dot_product(self, q: Tensor, k: Tensor, v: Tensor, point_mask: Tensor) -> Tensor:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [B*M, H, 1+N, 1+N]
        weights = self.mask_scores(scores, point_mask).softmax(dim=-1)  # [B*M, H, 1+N, 1+N]
        return weights @ v  # [B*M, H, 1+N, C/H]

    def mask_scores(self, scores: Tensor, point_mask: Tensor) -> Tensor:
        """Scores with padded keys at `-inf`: `[B*M, H, 1+N, 1+N]`."""
        return scores + to_additive_mask(point_mask, scores.dtype, query_tokens=1)


class TorchTransformerFastPath(AttentionLaneEncoder):
    """Correct: the layer run by `nn.TransformerEncoder` itself, nested-tensor fast path on.

    Why it is right: `src_key_padding_mask` is `lpim.masks.to_key_padding_mask` with the
    query column (True = ignore, query never masked, so no sequence is empty). In eval mode under
    `torch.no_grad()` torch converts the batch to a nested tensor, which it can only do when
    every lane's real tokens come first: with any other layout it silently falls back to the
    slow path. So the real points are moved to the front first, with lpim's own converters
    (`pack`, `to_cu_seqlens`,
    `from_cu_seqlens`, `unpack`), which also drops every
    padded value unread; per-point outputs are scattered back to their own slots. The fast path
    pads its output with exact zeros; empty lanes and padded points are then set to zero by
    selection as in the base, so both paths return the same thing.

    On CUDA it fails `devices_agree`, and rightly: torch's fused CUDA kernel for this fast path
    (measured with torch 2.11 on an H200) differs from torch's own slow path by about 1e-4 at
    float64 and float32, for a bare `nn.TransformerEncoderLayer` too, while on the CPU the two
    paths agree to rounding. The masking is right on both devices; the kernels disagree.
    """

    nested_fast_path = True

    def forward(self, points: Tensor, point_mask: Tensor) -> LaneOutput:
        _, M, N, _ = points.shape
        cu_seqlens, _ = to_cu_seqlens(point_mask)  # [B*M + 1]
        front_mask = from_cu_seqlens(cu_seqlens, num_lanes=M, num_points=N)  # [B, M, N]
        front_points = unpack(pack(points, point_mask), front_mask)  # [B, M, N, D], real first
        out = super().forward(front_points, front_mask)
        point_features = unpack(pack(out.point_features, front_mask), point_mask)  # [B, M, N, C]
        return LaneOutput(out.lane_embedding, point_features)

    def encode(self, tokens: Tensor, point_mask: Tensor) -> Tensor:
        with warnings.catch_warnings():
            # torch says its (strided) nested tensors are a prototype each time the path runs
            warnings.filterwarnings("ignore", "The PyTorch API of nested tensors", UserWarning)
            out: Tensor = self.encoder(
                tokens, src_key_padding_mask=self.key_padding_mask(point_mask)
            )  # [B*M, 1+N, C]
        return out


class PackedVarlen(AttentionLaneEncoder):
    """Correct: real points packed into one sequence, block-diagonal attention, unpacked.

    Why it is right: `lpim.masks.pack` gathers the real points only, so padded values are
    never read and never get a gradient. Every lane contributes its query token and its real
    points; `lpim.masks.to_cu_seqlens` says which packed point belongs to which lane, and
    a token may attend only to tokens of its own lane (the block-diagonal mask flash-attn's
    varlen kernels take as `cu_seqlens`). Every token attends at least to itself, so no row is
    empty; an empty lane is its query token alone. `lpim.masks.unpack` puts per-point
    outputs back in their slots. Parent of `cu_seqlens_off_by_one`.
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> LaneOutput:
        B, M, _, _ = points.shape
        C = self.d_model
        packed = pack(points, point_mask)  # [T, D], real points only
        point_tokens = self.embed(packed, point_mask)  # [T, C]
        query = self.query.expand(B * M, C)  # [B*M, C]
        tokens = torch.cat([query, point_tokens])[None]  # [1, B*M + T, C]: queries, then points
        tokens = self.encode(tokens, point_mask)[0]  # [B*M + T, C]
        lane_embedding = tokens[: B * M].reshape(B, M, C)  # [B, M, C]
        point_features = unpack(tokens[B * M :], point_mask)  # [B, M, N, C]
        return self.finish(lane_embedding, point_features, point_mask)

    def attention(self, tokens: Tensor, point_mask: Tensor) -> Tensor:
        cu_seqlens, _ = to_cu_seqlens(point_mask)  # [B*M + 1], int32
        lanes = torch.arange(cu_seqlens.numel() - 1, device=tokens.device)  # [B*M]
        lane_of = torch.cat([lanes, self.segment_ids(cu_seqlens)])  # [B*M + T]
        blocked = lane_of[:, None] != lane_of[None, :]  # [B*M + T, B*M + T], True = blocked
        attended: Tensor = self.layer.self_attn(
            tokens, tokens, tokens, attn_mask=blocked, need_weights=False
        )[0]  # [1, B*M + T, C]
        return attended

    def segment_ids(self, cu_seqlens: Tensor) -> Tensor:
        """Lane of each packed point `[T]`: lane i owns `cu[i] <= t < cu[i + 1]`."""
        t = torch.arange(int(cu_seqlens[-1]), dtype=cu_seqlens.dtype, device=cu_seqlens.device)
        # right=True counts the lane ends at or before t; it skips empty lanes (cu[i] == cu[i+1])
        return torch.searchsorted(cu_seqlens[1:], t, right=True)  # [T]


# -- pooling encoders (per-point MLP + pool) ---------------------------------------------------


class PointNetMaskedMax(PointLaneEncoder):
    """Correct: MTR-style PointNet, masked max-pool, zeros for empty polylines.

    Why it is right: padded slots become `-inf` by selection before the max, so they can never
    win it, and the `-inf` an empty lane pools to is replaced by 0 by selection as well (whose
    gradient is exactly zero). `-inf` is a value of every floating dtype, unlike `-1e9`.
    Parent of `unmasked_max_pool`.
    """

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        masked = torch.where(point_mask[..., None], features, float("-inf"))  # [B, M, N, C]
        pooled = masked.amax(dim=2)  # [B, M, C], -inf on empty lanes
        return torch.where(point_mask.any(dim=-1)[..., None], pooled, 0)  # [B, M, C]


class MaskedMean(PointLaneEncoder):
    """Correct: masked mean pooling over each lane's real points.

    Why it is right: padded features are selected to 0 before the sum and the sum is divided by
    the real count, clamped to 1 so an empty lane computes `0 / 1` instead of `0 / 0`; empty
    lanes are then selected to 0. Parent of `mean_over_slots`.
    """

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        summed = torch.where(point_mask[..., None], features, 0).sum(dim=2)  # [B, M, C]
        count = point_mask.sum(dim=-1, keepdim=True).clamp(min=1)  # [B, M, 1]
        return torch.where(point_mask.any(dim=-1)[..., None], summed / count, 0)  # [B, M, C]


class LastRealPoint(PointLaneEncoder):
    """Correct: the lane is read out at its last *real* point (a lane's end, as RNN readouts do).

    Why it is right: the slot is the largest index whose `point_mask` is True, which holds for
    right, left and scattered padding; empty lanes are selected to 0. Parent of
    `lengths_minus_one_indexing` and `first_slot_pooling`, which override
    `readout_slot`.
    """

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        B, M, _, _ = features.shape
        slot = self.readout_slot(point_mask)  # [B, M]
        b = torch.arange(B, device=features.device)[:, None]  # [B, 1]
        m = torch.arange(M, device=features.device)[None, :]  # [1, M]
        picked = features[b, m, slot]  # [B, M, C]
        return torch.where(point_mask.any(dim=-1)[..., None], picked, 0)  # [B, M, C]

    def readout_slot(self, point_mask: Tensor) -> Tensor:
        """Slot of each lane's last real point `[B, M]` (0 for an empty lane, zeroed later)."""
        slots = torch.arange(point_mask.shape[-1], device=point_mask.device)  # [N]
        return torch.where(point_mask, slots, 0).amax(dim=-1)  # [B, M]


class AttentionPooling(PointLaneEncoder):
    """Correct: pooling by attention: a learned seed query attends over the lane's points.

    Why it is right: the seed is a query only, not a key, so an empty lane is an attention row
    with every key masked. `nn.MultiheadAttention` with `need_weights=False` (its
    `F.scaled_dot_product_attention` path) returns 0 for such a row, and 0 gradients, so an
    empty lane's embedding is `out_proj.bias`: finite, and the same whatever else the batch
    holds. (Measured on torch 2.13 CPU, every dtype; self-attention would take MHA's fused fast
    path under `no_grad`, which returns NaN for such rows, but cross-attention never does.)

    Its `clean_points` is the common "sanitise" idiom, `nan_to_num` then clipping to the BEV
    range, instead of selecting. That is exact in the forward pass, because every padded key's
    weight is exactly 0 and its (now bounded) value is finite; and it gives padded inputs a zero
    gradient only because no softmax row is NaN. `empty_lane_nan_need_weights` breaks the
    forward half of that, and `nan_grad_from_empty_rows` shows how the backward half fails,
    which `torch.where` (the base's `clean_points`) would have stopped.
    """

    def __init__(
        self, in_dim: int = 2, d_model: int = 16, nhead: int = 2, coord_range: float = 50.0
    ) -> None:
        super().__init__(in_dim, d_model, coord_range)
        self.nhead = nhead
        self.seed = nn.Parameter(torch.randn(d_model))  # [C], the pooling query
        self.pool_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)

    def clean_points(self, points: Tensor, point_mask: Tensor) -> Tensor:
        sanitised = points.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)  # [B, M, N, D]
        return sanitised.clamp(-self.coord_range, self.coord_range)  # [B, M, N, D]

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        B, M, N, C = features.shape
        keys = features.reshape(B * M, N, C)  # [B*M, N, C]
        seed = self.seed.expand(B * M, 1, C)  # [B*M, 1, C]
        pooled: Tensor = self.pool_attn(
            seed,
            keys,
            keys,
            key_padding_mask=to_key_padding_mask(point_mask),  # [B*M, N], True = ignore
            need_weights=False,
        )[0]  # [B*M, 1, C]
        return pooled.reshape(B, M, C)  # [B, M, C]
