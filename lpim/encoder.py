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
``keep``                   ``[R, S]``           real token (query or point), for packing
``key_padding_mask``       ``[R, L]``           ignore this key (``nn.MultiheadAttention``)
SDPA bool ``attn_mask``    ``[.., L, S]``       attend (``F.scaled_dot_product_attention``)
MHA 3D ``attn_mask``       ``[R*H, L, S]``      ignore; row ``r*H + h`` (``repeat_interleave``)
=========================  ===================  ==============================================

The first four appear below (``key_padding_mask`` only in the layer's padded ``forward``); the
last two are listed because they are the ones people mix up (SDPA's polarity is the opposite of
MHA's, and a 3D mask built with ``repeat`` instead of ``repeat_interleave`` runs silently with
every head reading another lane's mask). This file builds neither: packing leaves no padding for
attention to mask (see 4).

How the forward pass stays exact whatever the padding holds:

1. Empty lanes are never computed. The real lanes (R of them) are gathered out of the ``B * M``
   slots, the Transformer runs on those alone, and the outputs of empty lanes are exact zeros. An
   empty lane would otherwise be a row whose every key is masked, which is NaN in some attention
   paths and the mean of garbage in others.
2. Padded values are never read: the real points are *selected* by index, never multiplied by a
   mask: ``0 * NaN`` is NaN, ``0 * inf`` is NaN. Selection also gives padded
   slots an exact zero gradient.
3. Only real tokens are computed. Each real lane's query token and real points are packed, lane
   after lane, into one ``[T, C]`` tensor (T = real lanes + real points), and every step runs on
   that alone: the cost follows the real tokens, not ``B * M * (N + 1)``. A lane's real points
   keep their given order; where the padding sat is forgotten, which changes nothing, because the
   only position signal is the coordinates themselves (attention has no slot-index term), so
   right, left and scattered padding give the same result.
4. Lanes are packed shortest first, so lanes of equal length form one contiguous ``[n, L]`` block
   of tokens. Attention runs block by block (one call per distinct length, never per lane) with
   no mask at all: there is no padding left to mask, so no row can be fully masked, and no
   ``(B*M*H, L, S)`` mask is ever built. Outputs go back to the slots they came from; padded
   slots and empty lanes are exact zeros.

The layer keeps the state-dict layout of ``torch.nn.TransformerEncoderLayer`` (GELU,
``batch_first=True``), so weights load either way and the two can be checked against each other.
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PackedLanes", "PriorEncoder", "PriorEncoderLayer", "PriorEncoderOutput"]


class PriorEncoderOutput(NamedTuple):
    """What :class:`PriorEncoder` returns. Empty lanes and padded points hold exact zeros."""

    lane_embedding: Tensor  # [B, M, C]
    point_features: Tensor  # [B, M, N, C]
    lane_mask: Tensor  # [B, M] bool, True = lane has at least one real point


class PackedLanes(NamedTuple):
    """How the real tokens of a padded ``[R, S]`` batch of lanes are packed into ``[T, C]``.

    Lanes are sorted shortest first (stable) and each lane's real tokens are contiguous, in
    their given order, so the lanes of one length form one ``[n, L]`` block: attention on a
    block needs no mask. Lanes without a real token are left out.
    """

    source: Tensor  # [T] int64, flat index into the [R*S] padded slots of each packed token
    groups: tuple[tuple[int, int], ...]  # (lanes n, tokens per lane L) per block, packed order

    @classmethod
    def pack(cls, keep: Tensor) -> PackedLanes:
        """Packing of ``keep [R, S]`` (bool, True = real token)."""
        S = keep.shape[1]
        counts = keep.sum(dim=1)  # [R]
        lanes = counts.nonzero().squeeze(1)  # [R'], lanes with a real token
        lanes = lanes[counts[lanes].argsort(stable=True)]  # [R'], shortest first
        lengths, lanes_per_length = torch.unique_consecutive(counts[lanes], return_counts=True)
        # One host sync: the block sizes are shapes.
        groups = tuple(zip(lanes_per_length.tolist(), lengths.tolist(), strict=True))
        slots = lanes[:, None] * S + torch.arange(S, device=keep.device)  # [R', S]
        return cls(slots[keep[lanes]], groups)  # source [T]: lane by lane, slots in order


class PriorEncoderLayer(nn.Module):
    """One Transformer encoder layer, state-dict compatible with ``nn.TransformerEncoderLayer``.

    Same submodule names and maths as ``nn.TransformerEncoderLayer(d_model, nhead,
    dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=norm_first)``,
    written out so that it runs on packed real tokens (:meth:`forward_packed`) and so that the
    mask handling is visible. ``self_attn`` is kept as an ``nn.MultiheadAttention`` for its
    parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``), which the layer feeds to
    ``F.scaled_dot_product_attention`` itself.
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
        """``tokens [R, L, C]``, ``key_padding_mask [R, L]`` bool, True = ignore that key.

        Returns ``[R, L, C]``: real tokens as ``nn.TransformerEncoderLayer`` computes them,
        ignored positions exact zeros (they are never computed).
        """
        R, L, C = tokens.shape
        packing = PackedLanes.pack(~key_padding_mask)
        if not packing.groups:  # every key ignored: nothing real to compute
            return tokens.new_zeros(R, L, C)
        packed = tokens.reshape(R * L, C)[packing.source]  # [T, C]
        packed = self.forward_packed(packed, packing.groups)  # [T, C]
        return packed.new_zeros(R * L, C).index_copy(0, packing.source, packed).view(R, L, C)

    def forward_packed(self, tokens: Tensor, groups: tuple[tuple[int, int], ...]) -> Tensor:
        """``tokens [T, C]``, real tokens only, packed as :class:`PackedLanes` describes: blocks
        of ``n`` lanes of ``L`` tokens each, ``groups`` = the ``(n, L)`` of each block in order.
        """
        if self.norm_first:
            tokens = tokens + self._attention(self.norm1(tokens), groups)
            tokens = tokens + self._feedforward(self.norm2(tokens))
        else:
            tokens = self.norm1(tokens + self._attention(tokens, groups))
            tokens = self.norm2(tokens + self._feedforward(tokens))
        return tokens  # [T, C]

    def _attention(self, tokens: Tensor, groups: tuple[tuple[int, int], ...]) -> Tensor:
        mha = self.self_attn  # kept for its parameters and their state-dict names
        C, H = mha.embed_dim, mha.num_heads
        dropout_p = mha.dropout if self.training else 0.0
        qkv = F.linear(tokens, mha.in_proj_weight, mha.in_proj_bias)  # [T, 3C]
        blocks = qkv.split_with_sizes([n * L for n, L in groups])  # [n*L, 3C] per block
        attended = []
        for block, (n, L) in zip(blocks, groups, strict=True):
            # n lanes of exactly L real tokens: plain attention, no mask. Same maths and
            # 1/sqrt(C/H) scale as nn.MultiheadAttention, which calls this function too.
            q, k, v = block.view(n, L, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)  # [n,H,L,C/H]
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)  # [n, H, L, C/H]
            attended.append(out.transpose(1, 2).reshape(n * L, C))  # [n*L, C]
        result: Tensor = self.dropout1(mha.out_proj(torch.cat(attended)))  # [T, C]
        return result

    def _feedforward(self, tokens: Tensor) -> Tensor:
        hidden = self.dropout(F.gelu(self.linear1(tokens)))  # [T, F]
        out: Tensor = self.dropout2(self.linear2(hidden))  # [T, C]
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
        B, M, N, _ = points.shape
        C = self.d_model

        lane_mask = point_mask.any(dim=-1)  # [B, M]
        lane_embedding = points.new_zeros(B * M, C)  # [B*M, C]
        point_features = points.new_zeros(B * M * N, C)  # [B*M*N, C]
        if not bool(lane_mask.any()):  # nothing real: empty lanes are exact zeros, never computed
            return PriorEncoderOutput(
                lane_embedding.view(B, M, C), point_features.view(B, M, N, C), lane_mask
            )

        # Token 0 of each lane is its query (real iff the lane is), tokens 1..N its points.
        keep = torch.cat([lane_mask.reshape(B * M, 1), point_mask.reshape(B * M, N)], dim=1)
        packing = PackedLanes.pack(keep)  # source [T] into the B*M*(1+N) token slots
        lane, column = packing.source // (1 + N), packing.source % (1 + N)  # [T] each
        query_rows = (column == 0).nonzero().squeeze(1)  # [R]
        point_rows = (column > 0).nonzero().squeeze(1)  # [Tp]
        point_slots = (lane * N + column - 1)[point_rows]  # [Tp], into B*M*N

        # Select, never multiply: padded slots are never read, so 0 * NaN cannot happen, and
        # they get an exact zero gradient.
        real_points = points.reshape(B * M * N, -1)[point_slots]  # [Tp, D]
        point_tokens = self.pos_embed(real_points / self.coord_range)  # [Tp, C]
        query_tokens = self.query.expand(query_rows.numel(), C)  # [R, C]
        # In-place writes into fresh zeros (autograd records them): no copy of the zeros.
        tokens = point_tokens.new_zeros(packing.source.numel(), C)  # [T, C]
        tokens.index_copy_(0, query_rows, query_tokens).index_copy_(0, point_rows, point_tokens)
        for layer in self.layers:
            tokens = cast(PriorEncoderLayer, layer).forward_packed(tokens, packing.groups)
        tokens = self.norm(tokens)  # [T, C]

        lane_embedding.index_copy_(0, lane[query_rows], tokens[query_rows])  # [B*M, C]
        point_features.index_copy_(0, point_slots, tokens[point_rows])  # [B*M*N, C]
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
