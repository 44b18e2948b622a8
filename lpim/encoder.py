"""Reference LPIM lane-prior encoder, correct under any padding by construction.

This file needs only ``torch`` and the standard library: copy it into your tree as it is.

The encoder embeds each lane (a polyline of up to ``N`` points with ``D`` coordinates) with a small
Transformer: the points' coordinates go through an MLP to become tokens, one learned query token is
prepended, ``num_layers`` encoder layers run over the ``N + 1`` tokens, and the query token's output
is the lane embedding. Inputs arrive padded to ``[B, M, N, D]`` (B samples, M lanes, N points) with
a boolean ``point_mask [B, M, N]`` that is True on real points.

Mask conventions in this file (they disagree with each other, so every mask is named for its own):

=========================  ===================  ==============================================
name                       shape                True means
=========================  ===================  ==============================================
``point_mask``             ``[B, M, N]``        real point (the library convention)
``lane_mask``              ``[B, M]``           lane has at least one real point
``key_padding_mask``       ``[R, L]``           ignore this key (``nn.MultiheadAttention``)
SDPA bool ``attn_mask``    ``[.., L, S]``       attend (``F.scaled_dot_product_attention``)
MHA 3D ``attn_mask``       ``[R*H, L, S]``      ignore; row ``r*H + h`` (``repeat_interleave``)
=========================  ===================  ==============================================

Only the first three appear below; the last two are listed because they are the ones people mix up
(SDPA's polarity is the opposite of MHA's, and a 3D mask built with ``repeat`` instead of
``repeat_interleave`` runs silently with every head reading another lane's mask). This file never
builds a 3D mask: a 2D ``key_padding_mask`` says everything a padding mask has to say.

How the forward pass stays exact whatever the padding holds:

1. Empty lanes are never computed. The real lanes (R of them) are gathered out of the ``B * M``
   slots, the Transformer runs on those alone, and the outputs of empty lanes are exact zeros. An
   empty lane would otherwise be a row whose every key is masked, which is NaN in some attention
   paths and the mean of garbage in others.
2. Padded values are *selected* away with ``torch.where`` before anything reads them, never
   multiplied by a mask: ``0 * NaN`` is NaN, ``0 * inf`` is NaN. ``torch.where`` also gives padded
   slots an exact zero gradient.
3. Each lane's real points are moved to the front (a stable argsort of the mask) and the token
   axis is cut to the longest real lane. This changes nothing, because the only position signal is
   the coordinates themselves: attention has no slot-index term, so right, left and scattered
   padding give the same result, and the cost follows the real tokens, not ``N``. Per-point outputs
   are scattered back to the slots they came from; padded slots are exact zeros.
4. The query token is never masked, so no attention row is ever fully masked. Padded keys inside
   the trimmed window are excluded with the 2D ``key_padding_mask``.

The layer keeps the state-dict layout of ``torch.nn.TransformerEncoderLayer`` (GELU,
``batch_first=True``), so weights load either way and the two can be checked against each other.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PriorEncoder", "PriorEncoderLayer", "PriorEncoderOutput"]


class PriorEncoderOutput(NamedTuple):
    """What :class:`PriorEncoder` returns. Empty lanes and padded points hold exact zeros."""

    lane_embedding: Tensor  # [B, M, C]
    point_features: Tensor  # [B, M, N, C]
    lane_mask: Tensor  # [B, M] bool, True = lane has at least one real point


class PriorEncoderLayer(nn.Module):
    """One Transformer encoder layer, state-dict compatible with ``nn.TransformerEncoderLayer``.

    Same submodule names and maths as ``nn.TransformerEncoderLayer(d_model, nhead,
    dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=norm_first)``,
    written out so the mask handling is visible and torch's nested-tensor fast path (which
    changes what padded positions hold) never kicks in.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float = 0.1,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model)  # eps 1e-5, as torch's layer
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, tokens: Tensor, key_padding_mask: Tensor) -> Tensor:
        """``tokens [R, L, C]``, ``key_padding_mask [R, L]`` bool, True = ignore that key."""
        if self.norm_first:
            tokens = tokens + self._attention(self.norm1(tokens), key_padding_mask)
            tokens = tokens + self._feedforward(self.norm2(tokens))
        else:
            tokens = self.norm1(tokens + self._attention(tokens, key_padding_mask))
            tokens = self.norm2(tokens + self._feedforward(tokens))
        return tokens  # [R, L, C]

    def _attention(self, tokens: Tensor, key_padding_mask: Tensor) -> Tensor:
        # need_weights=False: with weights requested, MHA returns NaN on a fully masked row.
        # No row here is fully masked (the query token is always a real key), but the cheaper
        # path that cannot produce NaN is the right default anyway.
        attended: Tensor = self.self_attn(
            tokens, tokens, tokens, key_padding_mask=key_padding_mask, need_weights=False
        )[0]  # [R, L, C]
        out: Tensor = self.dropout1(attended)
        return out

    def _feedforward(self, tokens: Tensor) -> Tensor:
        hidden = self.dropout(F.gelu(self.linear1(tokens)))  # [R, L, F]
        out: Tensor = self.dropout2(self.linear2(hidden))  # [R, L, C]
        return out


class PriorEncoder(nn.Module):
    """LPIM lane-prior encoder: ``[B, M, N, D]`` points to ``[B, M, C]`` lane embeddings.

    Defaults are the LPIM configuration (2-D BEV coordinates in a 50 m range, d 256, 8 heads,
    4 post-norm layers, FFN 1024, dropout 0.1).
    """

    def __init__(
        self,
        in_dim: int = 2,
        d_model: int = 256,
        nhead: int = 8,
        num_layers: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        norm_first: bool = False,
        coord_range: float = 50.0,
    ) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim must be at least 1; got {in_dim}")
        if d_model % nhead:
            raise ValueError(
                f"d_model must be divisible by nhead; got d_model = {d_model}, nhead = {nhead}"
            )
        if not (math.isfinite(coord_range) and coord_range > 0):
            raise ValueError(f"coord_range must be a positive finite number; got {coord_range}")
        self.in_dim = in_dim
        self.d_model = d_model
        self.nhead = nhead
        self.num_layers = num_layers
        self.dim_feedforward = dim_feedforward
        self.dropout = dropout
        self.norm_first = norm_first
        self.coord_range = coord_range

        # Positions come from the coordinates only, never from slot indices: that is what makes
        # the encoder blind to where the padding sits.
        self.pos_embed = nn.Sequential(
            nn.Linear(in_dim, d_model), nn.ReLU(), nn.Linear(d_model, d_model)
        )
        self.query = nn.Parameter(torch.empty(d_model))  # [C]
        nn.init.normal_(self.query, std=0.02)
        self.layers = nn.ModuleList(
            PriorEncoderLayer(d_model, nhead, dim_feedforward, dropout, norm_first)
            for _ in range(num_layers)
        )
        # A pre-norm stack leaves its residual stream unnormalised; torch adds a final norm there.
        self.norm: nn.Module = nn.LayerNorm(d_model) if norm_first else nn.Identity()

    def forward(self, points: Tensor, point_mask: Tensor) -> PriorEncoderOutput:
        """Encode ``points [B, M, N, D]`` where ``point_mask [B, M, N]`` (bool) is True.

        Padded slots may hold anything, NaN and inf included. Real points must be finite.
        """
        self._check_inputs(points, point_mask)
        B, M, N, D = points.shape
        C = self.d_model

        lane_mask = point_mask.any(dim=-1)  # [B, M]
        lane_embedding = points.new_zeros(B * M, C)  # [B*M, C]
        point_features = points.new_zeros(B * M, N, C)  # [B*M, N, C]
        real_lanes = lane_mask.flatten().nonzero().squeeze(1)  # [R], indices into B*M
        R = real_lanes.numel()
        if R == 0:  # nothing real: empty lanes are exact zeros and are never computed
            return PriorEncoderOutput(
                lane_embedding.view(B, M, C), point_features.view(B, M, N, C), lane_mask
            )

        # Select, never multiply: 0 * NaN would be NaN. Also gives padded slots zero gradient.
        clean_points = torch.where(point_mask[..., None], points, 0)  # [B, M, N, D]
        lane_points = clean_points.reshape(B * M, N, D)[real_lanes]  # [R, N, D]
        lane_point_mask = point_mask.reshape(B * M, N)[real_lanes]  # [R, N]

        # Real points first, then cut the token axis to the longest real lane: exact, since
        # nothing below depends on a point's slot index. Stable only so that the points keep
        # their given order, and with it the reduction order of the unpadded lane.
        is_padding = (~lane_point_mask).to(torch.uint8)  # [R, N], 0 = real sorts first
        slot_order = torch.argsort(is_padding, dim=1, stable=True)  # [R, N]
        real_counts = lane_point_mask.sum(dim=1)  # [R]
        P = int(real_counts.max())  # longest real lane; one host sync, needed for the shape
        slot_order = slot_order[:, :P]  # [R, P], original slot of each compacted point
        compact_points = lane_points.gather(1, slot_order[..., None].expand(R, P, D))  # [R, P, D]
        compact_point_mask = torch.arange(P, device=points.device) < real_counts[:, None]  # [R, P]

        point_tokens = self.pos_embed(compact_points / self.coord_range)  # [R, P, C]
        query_tokens = self.query.view(1, 1, C).expand(R, 1, C)  # [R, 1, C]
        tokens = torch.cat([query_tokens, point_tokens], dim=1)  # [R, 1+P, C]
        # The query column is never masked, so every attention row has at least one real key.
        key_padding_mask = torch.cat(
            [compact_point_mask.new_zeros(R, 1), ~compact_point_mask], dim=1
        )  # [R, 1+P], True = ignore
        for layer in self.layers:
            tokens = layer(tokens, key_padding_mask)  # [R, 1+P, C]
        tokens = self.norm(tokens)  # [R, 1+P, C]

        # Padded tokens inside the window computed something finite but meaningless: zero them
        # (by selection) before they are scattered back onto the padded slots.
        real_point_out = torch.where(compact_point_mask[..., None], tokens[:, 1:], 0)  # [R, P, C]
        lane_point_out = tokens.new_zeros(R, N, C).scatter(
            1, slot_order[..., None].expand(R, P, C), real_point_out
        )  # [R, N, C], each point back in its original slot
        lane_embedding = lane_embedding.index_copy(0, real_lanes, tokens[:, 0])  # [B*M, C]
        point_features = point_features.index_copy(0, real_lanes, lane_point_out)  # [B*M, N, C]
        return PriorEncoderOutput(
            lane_embedding.view(B, M, C), point_features.view(B, M, N, C), lane_mask
        )

    def _check_inputs(self, points: Tensor, point_mask: Tensor) -> None:
        """Reject inputs that would run and be silently wrong, saying expected vs. got."""
        if not isinstance(points, Tensor):
            raise TypeError(f"points must be a torch.Tensor [B, M, N, D]; got {type(points)}")
        if not isinstance(point_mask, Tensor):
            raise TypeError(
                f"point_mask must be a torch.Tensor [B, M, N] (bool, True = real point); "
                f"got {type(point_mask)}"
            )
        if points.dim() != 4:
            raise ValueError(
                f"points must be 4-D [B, M, N, D]; got {points.dim()}-D {tuple(points.shape)}"
            )
        if points.shape[-1] != self.in_dim:
            raise ValueError(
                f"points last dim must be in_dim = {self.in_dim}; got {points.shape[-1]} "
                f"(points shape {tuple(points.shape)})"
            )
        if not points.is_floating_point():
            raise TypeError(f"points must be a floating dtype; got {points.dtype}")
        if points.dtype != self.query.dtype:
            raise TypeError(
                f"points dtype must match the encoder's parameters ({self.query.dtype}); "
                f"got {points.dtype} — convert with points.to({self.query.dtype}) or "
                f"encoder.to({points.dtype})"
            )
        if point_mask.dtype != torch.bool:
            raise TypeError(
                f"point_mask must be torch.bool with True = real point; got {point_mask.dtype} — "
                f"convert with point_mask.bool() if 1 = real, or ~ if it is a key_padding_mask"
            )
        if point_mask.shape != points.shape[:-1]:
            raise ValueError(
                f"point_mask shape must be points.shape[:-1] = {tuple(points.shape[:-1])} "
                f"[B, M, N]; got {tuple(point_mask.shape)}"
            )
        if not (points.device == point_mask.device == self.query.device):
            raise ValueError(
                f"points, point_mask and the encoder's parameters must be on one device; got "
                f"points on {points.device}, point_mask on {point_mask.device}, "
                f"parameters on {self.query.device}"
            )
        if points.device.type == "meta":
            raise ValueError(
                "PriorEncoder reads point_mask's values to pick the real lanes; expected inputs "
                "on a device with data (cpu, cuda, ...), got the meta device, which holds none"
            )
        # A non-finite real coordinate makes that lane's output NaN; padded slots may hold anything.
        bad_values = point_mask[..., None] & ~torch.isfinite(points)  # [B, M, N, D]
        if bool(bad_values.any()):
            count = int(bad_values.sum())
            first = tuple(int(i) for i in bad_values.nonzero()[0])
            raise ValueError(
                f"points holds {count} non-finite value(s) at real points (point_mask True); "
                f"first at [b, m, n, d] = {list(first)}: {points[first].item()} — real points "
                f"must be finite (padded slots may hold anything)"
            )
