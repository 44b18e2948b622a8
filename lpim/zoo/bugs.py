"""The bug zoo: small encoders with exactly one realistic padding-mask bug each.

Every class overrides one step of a correct encoder (its base class, from `lpim.zoo.base` or
`lpim.zoo.correct`), so the override *is* the bug. Three shapes of that: most override a step
of their parent; `sort_without_unsort` wraps `forward` (sorting is a step that the correct
encoder does not have); `additive_minus_1e4` overrides a second step, `clean_points`, as the
premise without which its bug cannot show; and `nan_grad_from_empty_rows` is the naive patch of
another bug, `empty_lane_nan_need_weights`. Each docstring says what is wrong, why people write
it, which property of `lpim.testing.check_encoder` catches it first (properties run in the
order `runs`, `finite`, `matches_unpadded`, `ignores_padding`, `lanes_independent`,
`gradients_isolated`, `devices_agree`), and shows the offending line.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lpim.masks import to_attention_mask, to_key_padding_mask, to_sdpa_mask
from lpim.zoo.base import AttentionLaneEncoder, LaneOutput
from lpim.zoo.correct import (
    AttentionPooling,
    LastRealPoint,
    ManualSoftmaxAdditive,
    MaskedMean,
    Mha3dAttnMask,
    PackedVarlen,
    PointNetMaskedMax,
    SdpaRightPolarity,
)

__all__ = [
    "AdditiveMinus1e4",
    "CuSeqlensOffByOne",
    "CudaOnlyFastPath",
    "EmptyLaneNanNeedWeights",
    "EmptyLanesTakeSampleMean",
    "FillMinus1e9Fp16",
    "FirstSlotPooling",
    "FloatKpm",
    "KpmWithoutQueryColumn",
    "LengthsMinusOneIndexing",
    "LibraryMaskAsKpm",
    "MeanOverSlots",
    "MhaPolarityInSdpa",
    "MultiplyByMask",
    "NanGradFromEmptyRows",
    "NanSentinelEmptyLanes",
    "NormaliseAcrossLanes",
    "RepeatHeadOrder",
    "SeedCrash3dMask",
    "SlotIndexPositions",
    "SortWithoutUnsort",
    "UnmaskedMaxPool",
]


# -- mask shape and head order -----------------------------------------------------------------


class RepeatHeadOrder(Mha3dAttnMask):
    """Bug: the 3D `attn_mask` is expanded to heads with `repeat` (head-major).

    `nn.MultiheadAttention` reads row `lane * H + head`; `repeat(H, 1, 1)` lays the rows
    out as `head * (B*M) + lane`, so row `r` holds lane `r % (B*M)`'s mask and every head
    of every lane but the first reads another lane's padding. The shape is right, nothing
    raises, and a batch of one lane is even exact. Realistic: it is the fix people reach for
    after `seed_crash_3d_mask`'s error message, and pytorch#64706 is full of it.

    Sanitizer: found as `head_major_3d_mask`.

    Caught by `matches_unpadded`: the lane alone has `B*M = 1`, where both orders agree.
    No row is ever fully masked (the query column is open in every lane's mask), so `finite`
    passes. Offending line:

    ```python title="Listing: the offending line"
    return per_lane.repeat(self.nhead, 1, 1)
    ```
    """

    def attn_mask_3d(self, point_mask: Tensor) -> Tensor:
        blocked = to_key_padding_mask(point_mask, query_tokens=1)  # [B*M, L], True = blocked
        L = blocked.shape[1]
        per_lane = blocked[:, None, :].expand(-1, L, -1)  # [B*M, L, L]
        return per_lane.repeat(self.nhead, 1, 1)  # [H*B*M, L, L], head-major: BUG


class SeedCrash3dMask(Mha3dAttnMask):
    """Bug: the 3D `attn_mask` has one row per lane (`B*M`), not one per lane and head.

    The crash that started lpim: ``RuntimeError: The shape of the 3D attn_mask is
    torch.Size([B*M, L, L]), but should be (B*M*H, L, L).` (under `torch.no_grad()`` in eval
    mode MHA's fused fast path raises `For mask_type == 2 mask shape should match input shape`
    instead). Realistic: a per-lane mask is the natural thing to build, and MHA's 2D
    `key_padding_mask`, which needs no head axis, is the fix.

    Sanitizer: found as `missing_head_rows` (before torch's RuntimeError).

    Caught by `runs`, on every batch (even one lane: `B*M = 1` rows, `H = 2` needed).
    Offending line:

    ```python title="Listing: the offending line"
    return per_lane  # [B*M, L, L]
    ```
    """

    def attn_mask_3d(self, point_mask: Tensor) -> Tensor:
        blocked = to_key_padding_mask(point_mask, query_tokens=1)  # [B*M, L], True = blocked
        L = blocked.shape[1]
        per_lane = blocked[:, None, :].expand(-1, L, -1)  # [B*M, L, L]
        return per_lane  # [B*M, L, L]: BUG, MHA needs B*M*H rows


# -- mask polarity and dtype -------------------------------------------------------------------


class LibraryMaskAsKpm(AttentionLaneEncoder):
    """Bug: the library's `point_mask` (True = real) passed as MHA's `key_padding_mask`.

    MHA reads True as *ignore*, so each lane's real points are masked and its padded slots are
    attended. The code copies the LPIM original, `cat([query never masked], ~valid)`, and
    drops the `~`: a one-character bug between two conventions that both say "mask".

    Sanitizer: needs check_encoder: the key_padding_mask is inverted only relative to
    the points, and no attention row is left without a key.

    Caught by `matches_unpadded`: a lane run alone has no padding, so its query sees only
    itself, while the same lane in a padded batch attends to its (zeroed) padded slots. The
    query column stays unmasked, so no row is ever fully masked and `finite` passes. (Had the
    query column come from the same keep-mask, full lanes would be fully masked rows: NaN under
    `no_grad`, where MHA takes its fused path, and 0 with gradients on: caught by `finite`
    or `matches_unpadded` depending on the grad mode.) Offending line:

    ```python title="Listing: the offending line"
    return torch.cat([query_column, point_mask.reshape(B * M, N)], dim=1)
    ```
    """

    def key_padding_mask(self, point_mask: Tensor) -> Tensor:
        B, M, N = point_mask.shape
        query_column = point_mask.new_zeros(B * M, 1)  # [B*M, 1], the query is never masked
        return torch.cat([query_column, point_mask.reshape(B * M, N)], dim=1)  # BUG: no ~


class MhaPolarityInSdpa(SdpaRightPolarity):
    """Bug: MHA's `key_padding_mask` (True = ignore) handed to SDPA (True = attend).

    Each lane attends to its padded slots only, and the query column is blocked. Realistic: the
    code was ported from `nn.MultiheadAttention` to `F.scaled_dot_product_attention` for
    speed and kept its mask (pytorch#170400).

    Sanitizer: found as `fully_masked_rows` (read from the mask: a full lane's rows have
    every key blocked, though SDPA returns 0 for them, not NaN; the inversion itself is wrong
    only relative to the points, which check_encoder sees).

    Caught by `matches_unpadded`. A lane without padding has *every* key blocked; SDPA returns
    0 for such a row on torch 2.13 (its `_safe_softmax`, measured at every dtype on CPU), not
    NaN, so `finite` passes and the lane's embedding is just the layer applied to a zero
    attention output. Offending line:

    ```python title="Listing: the offending line"
    return to_key_padding_mask(point_mask, query_tokens=1)[:, None, None, :]
    ```
    """

    def sdpa_mask(self, point_mask: Tensor) -> Tensor:
        return to_key_padding_mask(point_mask, query_tokens=1)[:, None, None, :]  # BUG polarity


class FloatKpm(AttentionLaneEncoder):
    """Bug: a float 0/1 `key_padding_mask`, which MHA *adds* to the scores.

    A float mask is additive: padded keys get `+1` on their score instead of `-inf`, so
    nothing is masked (they are if anything favoured). No warning, no error (pytorch#92554).
    Realistic: "convert masks to the model dtype" is a common AMP-era habit.

    Sanitizer: found as `float_mask_as_additive`.

    Caught by `matches_unpadded`: a lane alone has no padded key to attend to.
    Offending line:

    ```python title="Listing: the offending line"
    return to_key_padding_mask(point_mask, query_tokens=1).to(self.query.dtype)
    ```
    """

    def key_padding_mask(self, point_mask: Tensor) -> Tensor:
        return to_key_padding_mask(point_mask, query_tokens=1).to(self.query.dtype)  # BUG


class KpmWithoutQueryColumn(AttentionLaneEncoder):
    """Bug: the `key_padding_mask` is built for the `N` points and the query's column is
    appended at the end, while the query token is prepended: every column is off by one.

    Column 0 (the query) gets point 0's mask, column `j` gets point `j - 1`'s, and the last
    point is never masked. Realistic: the mask is built before deciding where the query goes, or
    the query moved from the end to the front and the mask did not follow.

    Sanitizer: needs check_encoder: the columns are shifted only relative to the
    points; every row still has a key.

    Caught by `matches_unpadded`: a lane alone has no padding, so a shifted all-False mask is
    still all False. The last column is always open, so no row is fully masked and `finite`
    passes. Offending line:

    ```python title="Listing: the offending line"
    return torch.cat([per_point, per_point.new_zeros(per_point.shape[0], 1)], dim=1)
    ```
    """

    def key_padding_mask(self, point_mask: Tensor) -> Tensor:
        per_point = to_key_padding_mask(point_mask)  # [B*M, N], True = ignore
        return torch.cat([per_point, per_point.new_zeros(per_point.shape[0], 1)], dim=1)  # BUG


class CudaOnlyFastPath(AttentionLaneEncoder):
    """Bug: a CUDA-only "fast path" whose mask has the opposite polarity.

    On CUDA the mask is built in flash-attn's `attention_mask` convention (1 = valid) and fed
    to MHA, which reads True as ignore: real keys, the query column included, are masked. On
    CPU the branch is never taken and the encoder is exactly `mha_key_padding_mask`.
    Realistic: code paths that only run on one device are only tested on one device.

    Sanitizer: needs check_encoder: on CPU the correct branch runs, and on CUDA the
    mask is inverted only relative to the points.

    Caught by `devices_agree` only (skipped without CUDA). Offending line:

    ```python title="Listing: the offending line"
    return to_attention_mask(point_mask, query_tokens=1).bool()
    ```
    """

    def key_padding_mask(self, point_mask: Tensor) -> Tensor:
        if point_mask.is_cuda:  # "fused-kernel layout": 1 = valid
            return to_attention_mask(point_mask, query_tokens=1).bool()  # BUG: MHA: True = ignore
        return super().key_padding_mask(point_mask)


# -- fill values -------------------------------------------------------------------------------


class FillMinus1e9Fp16(ManualSoftmaxAdditive):
    """Bug: masked scores filled with `-1e9`, which float16 cannot represent.

    `masked_fill` with a Python scalar checks that the value fits the tensor's dtype: in
    float16 (max 65504) torch 2.13 raises ``RuntimeError: value cannot be converted to type
    c10::Half without overflow` (on CPU, with or without gradients; a `torch.tensor(-1e9)``
    fill raises the same). In float32, float64 and bfloat16 (max ~3.4e38, where -1e9 rounds to
    -998244352) `exp(-1e9 - max)` is exactly 0 and the encoder is correct. Realistic: -1e9
    (or -1e4 in HF's older BERT) is the canonical "big negative" in pre-SDPA attention code.

    Sanitizer: needs check_encoder: the sanitizer watches this hand-written softmax, but
    at float32 the -1e9 fill does no harm (the outputs equal the -inf mask's), and at float16
    torch raises in `masked_fill` before any softmax runs.

    Caught by `runs` at float16 only; at float32 every property holds. Offending line:

    ```python title="Listing: the offending line"
    return scores.masked_fill(~to_sdpa_mask(point_mask, query_tokens=1), -1e9)
    ```
    """

    def mask_scores(self, scores: Tensor, point_mask: Tensor) -> Tensor:
        keep = to_sdpa_mask(point_mask, query_tokens=1)  # [B*M, 1, 1, 1+N], True = attend
        return scores.masked_fill(~keep, -1e9)  # BUG: overflows float16


class AdditiveMinus1e4(ManualSoftmaxAdditive):
    """Bug: an additive mask of `-1e4` instead of `-inf`, over unselected padded points.

    HF BERT's `(1.0 - mask) * -10000.0`: a padded key's weight is `exp(score - 1e4)`,
    which is 0 only while its score is small. Here padded points are not selected away but
    sanitised with `nan_to_num` (NaN and inf become 0, large finite values stay), the usual
    "the mask takes care of padding" premise; so garbage of 1e8 or more in a padded slot gives
    its key a score of order 1e5 or more, and where that score is positive the padded token takes
    over the softmax (at 1e30 the leaked value then overflows LayerNorm to NaN). With the
    parent's `-inf` and the same `clean_points` the weight is exactly 0 whatever the score,
    and the encoder passes the check at every dtype (measured): the finite fill is the bug, the
    missing selection its trigger.
    (Both lines differ from the parent; the fix for both is the parent: select, and use -inf.)

    Sanitizer: needs check_encoder: the sanitizer watches this hand-written softmax and
    measures the fill, but with small padded values the -1e4 fill leaves exactly 0 weight on
    padded keys; only garbage of 1e4 or more in a padded slot makes it leak (then it is found
    as `finite_fill`, on that batch).

    Caught by `ignores_padding` only: with zero padding every padded score is O(1) and
    `exp(O(1) - 1e4)` is exactly 0, so `matches_unpadded` passes. Not caught in float16,
    where the largest finite garbage (65504) gives scores below 1e4 and inf becomes 0: a bug
    that only large dynamic range exposes. Offending line:

    ```python title="Listing: the offending line"
    return scores + (1.0 - keep) * -1e4
    ```
    """

    def clean_points(self, points: Tensor, point_mask: Tensor) -> Tensor:
        return points.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)  # premise: no selection

    def mask_scores(self, scores: Tensor, point_mask: Tensor) -> Tensor:
        keep = to_attention_mask(point_mask, query_tokens=1).to(scores.dtype)  # [B*M, 1+N]
        keep = keep[:, None, None, :]  # [B*M, 1, 1, 1+N], 1 = valid
        return scores + (1.0 - keep) * -1e4  # BUG: finite fill


# -- garbage in padded slots -------------------------------------------------------------------


class MultiplyByMask(AttentionLaneEncoder):
    """Bug: padded points zeroed by multiplying with the mask instead of selecting.

    `0 * NaN` and `0 * inf` are NaN, so NaN or inf garbage in a padded slot survives as NaN,
    becomes a NaN key and value, and `softmax weight 0 * NaN value` poisons every real token of
    the lane. With zero (or any finite) padding the product is an exact 0 and the encoder is
    exact, which is why it survives ordinary tests. Realistic: `x * mask[..., None]` is the
    most common masking idiom there is.

    Sanitizer: needs check_encoder: the masks are right; the leak is in the points, and
    shows (as `nonfinite_output`) only when a batch holds NaN or inf in padded slots.

    Caught by `ignores_nonfinite_padding` (any finite garbage, huge values included, is
    multiplied to an exact 0: `ignores_padding` passes; so would a check under
    `garbage="finite"`, which is right for a loader that never writes NaN or inf). The input
    gradients are clean too: `d(x * 0)/dx = 0`.
    Offending line:

    ```python title="Listing: the offending line"
    return points * point_mask[..., None]
    ```
    """

    def clean_points(self, points: Tensor, point_mask: Tensor) -> Tensor:
        return points * point_mask[..., None]  # BUG: 0 * NaN = NaN


# -- pooling and readout -----------------------------------------------------------------------


class UnmaskedMaxPool(PointNetMaskedMax):
    """Bug: PointNet max-pool over all `N` slots, padded ones included.

    The padded slots hold the MLP's output for the zeroed point, `mlp(0)`, which wins the
    max in any channel where it exceeds every real point. Realistic: the mask is forgotten
    because a max "ignores small values anyway", and `mlp(0)` is rarely large.

    Sanitizer: needs check_encoder: there is no attention; the pooling ignores the mask.

    Caught by `matches_unpadded`: padded points are selected to 0 before the MLP (the
    parent's `clean_points`), so with zero or garbage padding alike the padded feature is
    `mlp(0)`: the lane differs from itself unpadded, and garbage changes nothing
    (`ignores_padding` would pass). Offending line:

    ```python title="Listing: the offending line"
    return features.amax(dim=2)
    ```
    """

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        return features.amax(dim=2)  # [B, M, C]  BUG: padded slots take part


class MeanOverSlots(MaskedMean):
    """Bug: masked mean that divides by the number of slots `N`, not of real points.

    Each lane's embedding is scaled by `count / N`: right only for lanes with no padding.
    Realistic: `x.masked_fill(~mask, 0).mean(dim)` reads like a masked mean.

    Sanitizer: needs check_encoder: there is no attention; the pooling divides by N.

    Caught by `matches_unpadded` only (padded values are selected away, so garbage cannot
    leak, and empty lanes are `0 / N = 0`). Offending line:

    ```python title="Listing: the offending line"
    return torch.where(point_mask[..., None], features, 0).mean(dim=2)
    ```
    """

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        return torch.where(point_mask[..., None], features, 0).mean(dim=2)  # BUG: / N


class FirstSlotPooling(LastRealPoint):
    """Bug: the lane is read out at slot 0, assumed to hold its first real point.

    True for right padding only: under left or scattered padding slot 0 is padding and the
    lane's embedding is `mlp(0)`. Realistic: most datasets right-pad, and a "CLS"-like first
    token is a common readout.

    Sanitizer: needs check_encoder: there is no attention; the readout slot is wrong
    only relative to the points.

    Caught by `matches_unpadded` (on a left- or scattered-padded lane). Offending line:

    ```python title="Listing: the offending line"
    return torch.zeros_like(point_mask[..., 0], dtype=torch.long)
    ```
    """

    def readout_slot(self, point_mask: Tensor) -> Tensor:
        return torch.zeros_like(point_mask[..., 0], dtype=torch.long)  # [B, M]  BUG: slot 0


class LengthsMinusOneIndexing(LastRealPoint):
    """Bug: the last point taken at slot `lengths - 1`.

    Right for right padding only: with left or scattered padding slot `lengths - 1` is
    somewhere in the middle, or padding. On an empty lane the index is `-1`, which advanced
    indexing silently wraps to slot `N - 1` (`torch.gather` would raise instead); the
    parent zeroes empty lanes afterwards, so that half of the bug is harmless here.
    Realistic: `h[arange(B), lengths - 1]` is the textbook RNN readout.

    Sanitizer: needs check_encoder: there is no attention; the readout slot is
    wrong only relative to the points.

    Caught by `matches_unpadded` (on a left- or scattered-padded lane). Offending line:

    ```python title="Listing: the offending line"
    return point_mask.sum(dim=-1) - 1
    ```
    """

    def readout_slot(self, point_mask: Tensor) -> Tensor:
        return point_mask.sum(dim=-1) - 1  # [B, M]  BUG: assumes right padding


class SlotIndexPositions(AttentionLaneEncoder):
    """Bug: a sinusoidal position embedding indexed by the slot `0 .. N-1`.

    A point's position is then where the padding put it, not where it is in the lane: under left
    or scattered padding the same lane gets different tokens. Realistic: "add positional
    encodings" is reflex for anyone coming from NLP, where sequences are right-padded.

    Sanitizer: needs check_encoder: the masks are right; the positions come from slot
    indices.

    Caught by `matches_unpadded` (right padding gives real points the same slots as the lane
    alone, so only left or scattered padding shows it). Offending line:

    ```python title="Listing: the offending line"
    return super().embed(points, point_mask) + positions
    ```
    """

    def embed(self, points: Tensor, point_mask: Tensor) -> Tensor:
        N, C = points.shape[-2], self.d_model
        slot = torch.arange(N, device=points.device, dtype=points.dtype)[:, None]  # [N, 1]
        rate = torch.arange(0, C, 2, device=points.device, dtype=points.dtype)  # [C/2]
        angle = slot * torch.exp(rate * (-math.log(10000.0) / C))  # [N, C/2]
        positions = torch.cat([angle.sin(), angle.cos()], dim=-1)  # [N, C]
        return super().embed(points, point_mask) + positions  # [B, M, N, C]  BUG: slot index


# -- lanes that see each other -----------------------------------------------------------------


class SortWithoutUnsort(AttentionLaneEncoder):
    """Bug: lanes are sorted by length (longest first) and the outputs are never unsorted.

    Output slot `m` holds the `m`-th longest lane of its sample, not lane `m`. Realistic:
    sorting by length is what `pack_padded_sequence` and length-bucketing want, and the
    `unsort` is the line that goes missing.

    Sanitizer: needs check_encoder: the masks are right; the outputs are in the wrong
    lane order.

    Caught by `matches_unpadded` whenever a sample's lanes are not already in length order.
    Offending line:

    ```python title="Listing: the offending line"
    return super().forward(points, point_mask)  # outputs in sorted order
    ```
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> LaneOutput:
        lengths = point_mask.sum(dim=-1)  # [B, M]
        order = lengths.argsort(dim=1, descending=True, stable=True)  # [B, M], longest first
        points = points.gather(1, order[:, :, None, None].expand_as(points))  # [B, M, N, D]
        point_mask = point_mask.gather(1, order[:, :, None].expand_as(point_mask))  # [B, M, N]
        return super().forward(points, point_mask)  # BUG: never scattered back by `order`


class NormaliseAcrossLanes(AttentionLaneEncoder):
    """Bug: lane embeddings centred on the mean of their sample's real lanes.

    Each lane's embedding now depends on every other lane of its sample; a lane alone is
    centred on itself and becomes exactly 0. The mean is carefully masked (real lanes only,
    count clamped), which is what makes it look right. Realistic: per-sample normalisation of a
    set of embeddings is a common "stabilising" trick.

    Sanitizer: needs check_encoder: the masks are right; lanes are mixed after
    attention.

    Caught by `matches_unpadded` (before `lanes_independent`, which it also breaks).
    Offending line:

    ```python title="Listing: the offending line"
    return super().finish(lane_embedding - mean, point_features, point_mask)
    ```
    """

    def finish(
        self, lane_embedding: Tensor, point_features: Tensor, point_mask: Tensor
    ) -> LaneOutput:
        lane_mask = point_mask.any(dim=-1)[..., None]  # [B, M, 1]
        real = torch.where(lane_mask, lane_embedding, 0)  # [B, M, C]
        mean = real.sum(dim=1, keepdim=True) / lane_mask.sum(dim=1, keepdim=True).clamp(min=1)
        return super().finish(lane_embedding - mean, point_features, point_mask)  # BUG


class EmptyLanesTakeSampleMean(AttentionLaneEncoder):
    """Bug: empty lanes get the mean of their sample's real lane embeddings ("imputation").

    Real lanes are untouched, so every comparison of real lanes passes; but an empty lane's
    output now changes when another lane of its sample changes. Realistic: "an empty slot
    should look like an average lane, not like zero" (and downstream cross-attention over all M
    lanes, with no lane mask, does read empty slots).

    Sanitizer: needs check_encoder: the masks are right; empty lanes are filled
    after attention.

    Caught by `lanes_independent` only: `matches_unpadded` compares real lanes only, padded
    values never reach the means, and a loss over real lanes never touches the empty ones.
    Offending line:

    ```python title="Listing: the offending line"
    lane_embedding=torch.where(lane_mask, out.lane_embedding, mean)
    ```
    """

    def finish(
        self, lane_embedding: Tensor, point_features: Tensor, point_mask: Tensor
    ) -> LaneOutput:
        out = super().finish(lane_embedding, point_features, point_mask)  # empty lanes are 0
        lane_mask = point_mask.any(dim=-1)[..., None]  # [B, M, 1]
        count = lane_mask.sum(dim=1, keepdim=True).clamp(min=1)  # [B, 1, 1]
        mean = out.lane_embedding.sum(dim=1, keepdim=True) / count  # [B, 1, C]
        return out._replace(lane_embedding=torch.where(lane_mask, out.lane_embedding, mean))


# -- NaN on empty lanes ------------------------------------------------------------------------


class NanSentinelEmptyLanes(AttentionLaneEncoder):
    """Bug: empty lanes are marked with NaN ("no lane here") instead of zeros.

    The marker is written with `torch.where`, so the real lanes' values and every gradient
    stay clean; but NaN is not a value downstream code can be trusted with (a sum over lanes,
    a cross-attention over all M slots without a lane mask, a loss). Realistic: NaN as a
    "missing" sentinel is idiomatic in NumPy / pandas code.

    Sanitizer: needs check_encoder: the NaN is written after attention, by
    torch.where.

    Caught by `finite` only. Offending line:

    ```python title="Listing: the offending line"
    lane_embedding=torch.where(lane_mask[..., None], out.lane_embedding, math.nan)
    ```
    """

    def finish(
        self, lane_embedding: Tensor, point_features: Tensor, point_mask: Tensor
    ) -> LaneOutput:
        out = super().finish(lane_embedding, point_features, point_mask)
        lane_mask = point_mask.any(dim=-1)  # [B, M]
        return out._replace(
            lane_embedding=torch.where(lane_mask[..., None], out.lane_embedding, math.nan)  # BUG
        )


class EmptyLaneNanNeedWeights(AttentionPooling):
    """Bug: attention pooling with `need_weights` left at its default, `True`.

    There is no query token among the keys, so an empty lane is an attention row whose every key
    is masked. On the path that returns weights, MHA computes a plain `softmax` over a row of
    `-inf`: NaN weights, NaN output (pytorch#41508, #152028). With `need_weights=False` (the
    parent) the same row is 0. Realistic: `need_weights=True` is MHA's default, and the
    difference only shows on a lane with no points.

    Sanitizer: found as `fully_masked_rows`.

    Caught by `finite`: the empty lane's embedding is NaN. Offending line:

    ```python title="Listing: the offending line"
    pooled = self.pool_attn(seed, keys, keys, key_padding_mask=...)[0]  # need_weights=True
    ```
    """

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        B, M, N, C = features.shape
        keys = features.reshape(B * M, N, C)  # [B*M, N, C]
        seed = self.seed.expand(B * M, 1, C)  # [B*M, 1, C]
        pooled: Tensor = self.pool_attn(
            seed, keys, keys, key_padding_mask=to_key_padding_mask(point_mask)
        )[0]  # [B*M, 1, C]  BUG: need_weights defaults to True -> NaN on empty lanes
        return pooled.reshape(B, M, C)  # [B, M, C]


class NanGradFromEmptyRows(EmptyLaneNanNeedWeights):
    """Bug: the NaN of `empty_lane_nan_need_weights` hidden with `torch.where`.

    The obvious patch: replace empty lanes' embeddings by 0. The forward pass is now clean, but
    the backward pass of the fully masked softmax row is still `p * (g - sum(p * g))` with
    `p = NaN`: NaN whatever the upstream gradient, 0 included. It flows through the additive
    `-inf` mask into the empty lane's keys, through the MLP, and through the parent's
    sanitising `clean_points` (`nan_to_num` and `clamp` pass gradient through unchanged)
    into the padded input slots. Had `clean_points` selected with `torch.where`, the NaN would
    stop at the parameters instead (the MLP's, the seed's, the pooling attention's): NaN parameter
    gradients, as deadly for training but invisible to a check of input gradients alone. "NaN
    gradients from fully masked rows persist even if the rows are dropped" (pytorch#41508).

    Sanitizer: found as `fully_masked_rows` (the NaN rows exist before torch.where
    hides them).

    Caught by `gradients_isolated` only: outputs are finite and exact, padded values never
    reach them, and lanes stay independent. lpim's check reads parameter gradients before input
    gradients, so its message names a parameter (`seed`); the padded points' gradients are NaN
    too. Offending line:

    ```python title="Listing: the offending line"
    return torch.where(point_mask.any(dim=-1)[..., None], super().pool(...), 0)
    ```
    """

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        pooled = super().pool(features, point_mask)  # [B, M, C], NaN on empty lanes
        return torch.where(point_mask.any(dim=-1)[..., None], pooled, 0)  # BUG: forward only


# -- packed sequences --------------------------------------------------------------------------


class CuSeqlensOffByOne(PackedVarlen):
    """Bug: packed points assigned to lanes with the wrong side of `searchsorted`.

    `searchsorted(cu_seqlens[1:], t)` with `right=False` counts the lane ends *before* `t`
    rather than at or before it, so the first point of every lane after the first non-empty one
    is given to the lane before: that point attends to, and is attended by, the wrong lane.
    Realistic: `bisect_left` vs `bisect_right` is the classic off-by-one of segment offsets.

    Sanitizer: needs check_encoder: the block-diagonal mask is wrong only relative to
    the lanes' offsets (the points); every token keeps a key.

    Caught by `matches_unpadded`: a lane alone is one segment, where both sides agree. Every
    token still attends to itself, so no row is fully masked. Offending line:

    ```python title="Listing: the offending line"
    return torch.searchsorted(cu_seqlens[1:], t, right=False)
    ```
    """

    def segment_ids(self, cu_seqlens: Tensor) -> Tensor:
        t = torch.arange(int(cu_seqlens[-1]), dtype=cu_seqlens.dtype, device=cu_seqlens.device)
        return torch.searchsorted(cu_seqlens[1:], t, right=False)  # [T]  BUG: off by one
