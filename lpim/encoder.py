"""Reference LPIM lane-prior encoder, correct under any padding by construction.

This file needs only `torch` and the standard library: copy it into your tree as it is.

The encoder embeds each lane (a polyline of up to `N` points with `D` coordinates) with a small
Transformer: the points' coordinates go through an MLP to become tokens, one learned query token is
prepended, `num_layers` encoder layers run over the lane's `S = N + 1` tokens, and the query
token's output is the lane embedding. Inputs arrive padded to `[B, M, N, D]` (B samples, M lanes,
N points) with a boolean `point_mask [B, M, N]` that is True on real points.

The masks in this file disagree with each other, so every mask is named for its own meaning:

| name | shape | True means |
|---|---|---|
| `point_mask` | `[B, M, N]` | real point (the library convention) |
| `padded` | `[B, M, N]` | padded slot (`~point_mask`) |
| `lane_mask` | `[B, M]` | lane has at least one real point |
| `blocked` | `[R, S]` | key at a padded slot, or past a lane's end |
| `key_bias` | `[R, 1, 1, S]` | float, not bool: 0 = attend, -inf = blocked (added to scores) |
| `keep` | `[K, S]` | real token (query or point), for packing |

Two masks people mix up are not built here: SDPA's boolean `attn_mask` (True = attend, the
opposite of `nn.MultiheadAttention`'s True = ignore), and `nn.MultiheadAttention`'s 3D `attn_mask`
`[R*H, L, S]`, whose row `r*H + h` must be built with `repeat_interleave` (`repeat` runs silently
and hands every head another lane's mask).

How the forward pass stays exact whatever the padding holds:

1. Empty lanes are never computed: only the R real lanes enter the Transformer, and the outputs
   of empty lanes are exact zeros. An empty lane would otherwise be a row whose every key is
   masked, which is NaN in some attention paths and the mean of garbage in others.
2. Padded values are never read: they are replaced by exact zeros with a *selecting* op
   (`masked_fill`), never multiplied by a mask (`0 * NaN` is NaN, `0 * inf` is NaN), and real
   lanes and points are then *selected* by index. Selection also gives padded slots an exact
   zero gradient.
3. Where the padding sat changes nothing: the only position signal is the coordinates themselves
   (attention has no slot-index term, and the order of keys does not matter to it), so right,
   left and scattered padding give the same result.
4. Attention runs once per layer for all lanes, on an `[R, S]` layout. Blocked keys get an
   additive `-inf` (`key_bias`: exact zeros in the softmax sum) and the results at their query
   rows are dropped. Each row holds its lane's query token, which is real, so no row is ever
   fully blocked.
5. The counts that become shapes (real lanes, real points) are read from the device once per
   forward, with the check that real points are finite: one host sync, and everything that says
   where tokens go is built once and read by every layer.

Two token layouts between layers, with the same outputs under any padding:

- **lanes**, the straightforward one: the R real lanes, each its query token and its N point
  slots, `[R*S, C]`. This is attention's `[R, S]` layout itself; the padded slots of real lanes
  are computed and their results dropped.
- **packed**, an optimisation of lanes: the T real tokens alone, lane after lane, `[T, C]`. The
  projections, feed-forward and norms skip the padded slots of real lanes; in return each layer
  gathers its rows into an `[R, S]` attention layout (the lanes one with each lane's real tokens
  moved to its front) and back (`PackedLanes` says where).

`PriorEncoder(packed=None)` takes packed on a CPU, where time follows the arithmetic, and lanes
on other devices, where small batches wait on kernel launches and the gathers would add some.
lpim's documentation has the measurements and the reasoning behind the two layouts.

The layer keeps the state-dict layout of `torch.nn.TransformerEncoderLayer` (GELU,
`batch_first=True`), so weights load either way and the two can be checked against each other.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PackedLanes", "PriorEncoder", "PriorEncoderLayer", "PriorEncoderOutput"]


class PriorEncoderOutput(NamedTuple):
    """What `PriorEncoder` returns. Empty lanes and padded points hold exact zeros.

    Attributes:
        lane_embedding: `[B, M, C]`, one embedding per lane (the query token's output); zeros for
            empty lanes.
        point_features: `[B, M, N, C]`, each real point's token after the last layer (and the
            final norm of a pre-norm encoder); zeros at padded slots.
        lane_mask: `[B, M]` bool, True = the lane has at least one real point
            (`point_mask.any(-1)`).
    """

    lane_embedding: Tensor  # [B, M, C]
    point_features: Tensor  # [B, M, N, C]
    lane_mask: Tensor  # [B, M] bool, True = lane has at least one real point


class PriorEncoder(nn.Module):
    """LPIM lane-prior encoder: `[B, M, N, D]` padded points to `[B, M, C]` lane embeddings.

    Each lane's real points become tokens through a position MLP on their coordinates (divided by
    `coord_range`), one learned query token is prepended, `num_layers` Transformer encoder layers
    run over the lane's real tokens only, and the query token's output is the lane embedding.
    Padding, wherever it sits and whatever it holds, changes nothing. Defaults are the LPIM
    configuration (2-D BEV coordinates in a 50 m range, d 256, 8 heads, 4 post-norm layers, FFN
    1024, dropout 0.1).

    Args:
        in_dim: coordinates per point, `D`.
        d_model: token and embedding width, `C`.
        nhead: attention heads; must divide `d_model`.
        num_layers: encoder layers.
        dim_feedforward: hidden width of each layer's feed-forward block.
        dropout: dropout probability in every layer (attention weights, after attention, in and
            after the feed-forward block); active in training mode only.
        norm_first: pre-norm layers plus a final `LayerNorm` (True), or post-norm layers (False,
            torch's default and LPIM's).
        coord_range: the points are divided by this before the position MLP, so that
            coordinates in `[-coord_range, coord_range]` enter it in `[-1, 1]` (LPIM: the 50 m
            BEV range). Must be positive and finite.
        packed: the token layout between layers (the outputs agree under the tolerance rule
            either way). False: the real lanes, each padded to `N + 1` tokens, `[R*(N + 1), C]`
            (no gathers between layers: fewest ops per forward). True: the real tokens alone,
            packed `[T, C]`, gathered into the lanes layout for attention and back in every
            layer (fewest FLOPs). None (default): True on CPU, False on other devices.

    Raises:
        TypeError: a size that is not an int, a `dropout` or `coord_range` that is not a number,
            a `norm_first` that is not a bool, or a `packed` that is not a bool or None.
        ValueError: a size below 1 (`in_dim`, `d_model`, `nhead`, `num_layers`,
            `dim_feedforward`), `d_model` not divisible by `nhead`, a `dropout` outside
            `[0, 1]`, a `coord_range` that is not positive and finite, or sizes whose
            parameters cannot be allocated.

    Example:
        ```python
        import torch
        from lpim import PriorEncoder  # a copy of this file: import it from where you put it

        encoder = PriorEncoder().eval()
        points = torch.randn(8, 50, 20, 2) * 20  # [B, M, N, D], metres
        point_mask = torch.rand(8, 50, 20) < 0.3  # [B, M, N], True = real point
        out = encoder(points, point_mask)
        out.lane_embedding.shape  # torch.Size([8, 50, 256])
        ```
    """

    def __init__(
        self,
        in_dim: int = 2,  # D, coordinates per point
        d_model: int = 256,  # C, token and embedding width
        nhead: int = 8,  # H, attention heads (C // H features each)
        num_layers: int = 4,  # encoder layers
        dim_feedforward: int = 1024,  # feed-forward hidden width
        dropout: float = 0.1,  # dropout probability (training only)
        norm_first: bool = False,  # pre-norm (+ final LayerNorm) or post-norm
        coord_range: float = 50.0,  # points are divided by this before the position MLP
        packed: bool | None = None,  # token layout: packed tokens, or lanes; None: by device
    ) -> None:
        super().__init__()
        _check_count(in_dim, "in_dim")
        _check_count(num_layers, "num_layers")  # 0 layers would embed every lane the same
        _check_layer_config(d_model, nhead, dim_feedforward, dropout, norm_first)
        if isinstance(coord_range, bool) or not isinstance(coord_range, int | float):
            raise TypeError(
                f"coord_range must be a positive finite number; got {coord_range!r} "
                f"({type(coord_range).__name__})"
            )
        if not (math.isfinite(coord_range) and coord_range > 0):
            raise ValueError(f"coord_range must be a positive finite number; got {coord_range}")
        if packed is not None and not isinstance(packed, bool):
            raise TypeError(
                f"packed must be True, False or None; got {packed!r} ({type(packed).__name__})"
            )
        # The configuration, kept as read-only facts about the module (commented in the signature).
        self.in_dim = in_dim
        self.d_model = d_model
        self.nhead = nhead
        self.num_layers = num_layers
        self.dim_feedforward = dim_feedforward
        self.dropout = dropout
        self.norm_first = norm_first
        self.coord_range = coord_range
        self.packed = packed

        num_parameters = (in_dim + d_model + 5) * d_model + num_layers * _layer_parameters(
            d_model, dim_feedforward
        )  # position MLP, query, final norm, layers
        _check_fits_in_memory(
            num_parameters,
            f"in_dim = {in_dim}, d_model = {d_model}, num_layers = {num_layers} and "
            f"dim_feedforward = {dim_feedforward}",
        )
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
        """Encode each lane's real points into one embedding.

        Args:
            points: `[B, M, N, D]` float, same dtype and device as the encoder. Padded slots may
                hold anything, NaN and inf included; real points must be finite.
            point_mask: `[B, M, N]` bool, True = real point.

        Returns:
            The lane embeddings, per-point features and lane mask (see `PriorEncoderOutput`).

        Raises:
            TypeError: an input is not a tensor, or has the wrong dtype.
            ValueError: a shape, device or value is wrong (the message says expected vs. got).
        """
        self._check_inputs(points, point_mask)
        B, M, N, _ = points.shape
        C = self.d_model
        lane_mask = point_mask.any(dim=-1)  # [B, M]
        padded = ~point_mask  # [B, M, N], True = padded slot
        # Padded slots become exact zeros, selected, never multiplied (0 * NaN is NaN): nothing
        # below can read NaN or inf from them, and they get an exact zero gradient.
        clean = points.masked_fill(padded[..., None], 0.0)  # [B, M, N, D]
        finite = (clean.abs() < math.inf).all()  # [] bool: |x| < inf is False for inf and NaN
        # The one host sync: counts that become shapes below, and the input check.
        num_lanes, num_points, all_finite = torch.stack(
            [lane_mask.sum(), point_mask.sum(), finite]
        ).tolist()
        if not all_finite:  # a non-finite real coordinate would make its lane's output NaN
            self._reject_non_finite(points, point_mask)
        if num_lanes == 0:  # nothing real: empty lanes are exact zeros, never computed
            return PriorEncoderOutput(
                points.new_zeros(B, M, C), points.new_zeros(B, M, N, C), lane_mask
            )
        packed = self.packed if self.packed is not None else points.device.type == "cpu"
        if packed:
            lane_embedding, point_features = self._forward_packed(
                clean, point_mask, lane_mask, num_lanes, num_points
            )
        else:
            lane_embedding, point_features = self._forward_lanes(
                clean, padded, lane_mask, num_lanes
            )
        return PriorEncoderOutput(
            lane_embedding.view(B, M, C), point_features.view(B, M, N, C), lane_mask
        )

    def _forward_lanes(
        self, points: Tensor, padded: Tensor, lane_mask: Tensor, num_lanes: int
    ) -> tuple[Tensor, Tensor]:
        """The lanes layout: the real lanes, each padded to S = N + 1 tokens, `[R*S, C]`.

        `points` holds exact zeros at padded slots. Returns `lane_embedding [K, C]` and
        `point_features [K, N, C]` (K = B*M lane slots).
        """
        B, M, N, D = points.shape
        K, S, C, R = B * M, 1 + N, self.d_model, num_lanes
        real_lanes = torch.nonzero_static(lane_mask.flatten(), size=R).squeeze(1)  # [R]
        real_points = points.reshape(K, N, D)[real_lanes]  # [R, N, D], zeros at padded slots
        point_tokens = self.pos_embed(real_points / self.coord_range)  # [R, N, C]
        query = self.query.expand(R, 1, C).to(point_tokens.dtype)  # .to: only under autocast
        # Slot 0 of each lane is its query, slots 1..N its points as given (the order of keys
        # does not matter to attention). Padded slots hold pos_embed(0): finite, blocked as
        # keys, their own results dropped.
        tokens = torch.cat([query, point_tokens], dim=1).view(R * S, C)  # [R*S, C]
        lane_padded = padded.reshape(K, N)[real_lanes]  # [R, N], True = padded slot
        blocked = F.pad(lane_padded, (1, 0), value=False)  # [R, S]: the query is never blocked
        key_bias = _key_bias_buffer(R, S, 0.0, points.dtype, points.device)  # [R, 1, 1, S]
        key_bias.masked_fill_(blocked[:, None, None, :], -math.inf)
        for layer in self.layers:
            tokens = layer(tokens, key_bias)  # [R*S, C]
        tokens = self.norm(tokens).view(R, S, C)

        lane_embedding = tokens.new_zeros(K, C).index_copy_(0, real_lanes, tokens[:, 0])
        point_tokens = tokens[:, 1:].masked_fill(lane_padded[..., None], 0.0)  # [R, N, C]
        point_features = tokens.new_zeros(K, N, C).index_copy_(0, real_lanes, point_tokens)
        return lane_embedding, point_features

    def _forward_packed(
        self, points: Tensor, point_mask: Tensor, lane_mask: Tensor, num_lanes: int, num_points: int
    ) -> tuple[Tensor, Tensor]:
        """The packed layout: the real tokens alone, `[T, C]` (T = real lanes + real points).

        The same maths as `_forward_lanes`, without the padded slots of real lanes outside
        attention. Returns `lane_embedding [K, C]` and `point_features [K*N, C]`.
        """
        B, M, N, D = points.shape
        K, S, C = B * M, 1 + N, self.d_model
        R, P, T = num_lanes, num_points, num_lanes + num_points
        # Token 0 of each lane is its query (real iff the lane is), tokens 1..N its points.
        keep = torch.cat([lane_mask[..., None], point_mask], dim=-1).view(K, S)  # [K, S]
        packing = PackedLanes.pack(keep, num_tokens=T, num_lanes=R, dtype=points.dtype)

        point_slots = torch.nonzero_static(point_mask.flatten(), size=P).squeeze(1)  # [P]
        real_points = points.reshape(K * N, D)[point_slots]  # [P, D]
        point_tokens = self.pos_embed(real_points / self.coord_range)  # [P, C]
        # Packed rows: each lane's query first (its first token), then its points in order.
        query_rows = packing.to_attention.view(R, S)[:, 0]  # [R]
        point_rows = torch.nonzero_static(packing.source % S != 0, size=P).squeeze(1)  # [P]
        # Every row the query, then the point rows overwritten: one op, no zeros to fill.
        query = self.query.expand(T, C).to(point_tokens.dtype)  # .to: only under autocast
        tokens = query.index_copy(0, point_rows, point_tokens)  # [T, C]
        for layer in self.layers:
            tokens = layer(tokens, packing.key_bias, packing)  # [T, C]
        tokens = self.norm(tokens)  # [T, C]

        real_lanes = torch.nonzero_static(lane_mask.flatten(), size=R).squeeze(1)  # [R]
        lane_embedding = tokens.new_zeros(K, C).index_copy_(0, real_lanes, tokens[query_rows])
        point_features = tokens.new_zeros(K * N, C)  # [K*N, C]
        point_features.index_copy_(0, point_slots, tokens[point_rows])
        return lane_embedding, point_features

    def _check_inputs(self, points: Tensor, point_mask: Tensor) -> None:
        """Reject inputs that would run and be silently wrong, saying expected vs. got.

        Reads no value: the forward checks that real points are finite with its one host sync.
        """
        if not isinstance(points, Tensor):
            raise TypeError(f"points must be a torch.Tensor [B, M, N, D]; got {type(points)}")
        if not isinstance(point_mask, Tensor):
            raise TypeError(
                f"point_mask must be a torch.Tensor [B, M, N] (bool, True = real point); "
                f"got {type(point_mask)}"
            )
        for name, tensor in (("points", points), ("point_mask", point_mask)):
            if tensor.is_nested or tensor.layout != torch.strided:
                kind = "nested" if tensor.is_nested else str(tensor.layout)
                fix = "torch.nested.to_padded_tensor" if tensor.is_nested else ".to_dense()"
                raise TypeError(
                    f"{name} must be a dense (torch.strided) tensor; got a {kind} tensor — "
                    f"convert it with {fix}"
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

    @staticmethod
    def _reject_non_finite(points: Tensor, point_mask: Tensor) -> None:
        """Raise the error for non-finite real points (off the fast path: it reads freely)."""
        bad_values = point_mask[..., None] & ~torch.isfinite(points)  # [B, M, N, D]
        num_bad = int(bad_values.sum())
        first = tuple(int(i) for i in bad_values.nonzero()[0])
        raise ValueError(
            f"points holds {num_bad} non-finite value(s) at real points (point_mask True); "
            f"first at [b, m, n, d] = {list(first)}: {points[first].item()} — real points "
            f"must be finite (padded slots may hold anything)"
        )


class PriorEncoderLayer(nn.Module):
    """One Transformer encoder layer, state-dict compatible with `nn.TransformerEncoderLayer`.

    Same submodule names and maths as `nn.TransformerEncoderLayer(d_model, nhead,
    dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=norm_first)`,
    written out so that it runs on real lanes only (or on packed real tokens) and so that the
    mask handling is visible. `self_attn` is kept as an `nn.MultiheadAttention` for its
    parameters (`in_proj_weight`, `in_proj_bias`, `out_proj`), which the layer feeds to
    `F.scaled_dot_product_attention` itself.

    Args:
        d_model: token width C.
        nhead: attention heads H; must divide `d_model`.
        dim_feedforward: hidden width of the feed-forward block.
        dropout: dropout probability after attention, inside and after the feed-forward block,
            and on the attention weights (training only).
        norm_first: pre-norm (True) or post-norm (False, torch's default).

    Raises:
        TypeError: a size that is not an int, a `dropout` that is not a number, or a
            `norm_first` that is not a bool.
        ValueError: a size below 1, `d_model` not divisible by `nhead`, or a `dropout`
            outside `[0, 1]`.
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
        _check_layer_config(d_model, nhead, dim_feedforward, dropout, norm_first)
        _check_fits_in_memory(
            _layer_parameters(d_model, dim_feedforward),
            f"d_model = {d_model} and dim_feedforward = {dim_feedforward}",
        )
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model)  # eps 1e-5, as torch's layer
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self, tokens: Tensor, key_bias: Tensor, packing: PackedLanes | None = None
    ) -> Tensor:
        """Run the layer on R lanes of S token slots each.

        Args:
            tokens: `[R*S, C]`, the lanes layout: lane r's slot s at row `r*S + s`. Blocked slots
                must hold finite values (they are computed and their results mean nothing).
                With `packing`: `[T, C]`, the real tokens alone, in the order `packing` says.
            key_bias: `[R, 1, 1, S]` additive mask, 0 = attend, -inf = blocked; at least one
                key of every lane real, so no row is fully blocked. With `packing`:
                `packing.key_bias`.
            packing: None for the lanes layout; for packed tokens, where each one sits in the
                lanes layout, which attention reads them into and back out of.

        Returns:
            `tokens`' layout and shape, real slots as `nn.TransformerEncoderLayer` computes them.
        """
        if self.norm_first:
            tokens = tokens + self._attention(self.norm1(tokens), key_bias, packing)
            tokens = tokens + self._feedforward(self.norm2(tokens))
        else:
            tokens = self.norm1(tokens + self._attention(tokens, key_bias, packing))
            tokens = self.norm2(tokens + self._feedforward(tokens))
        return tokens

    def _attention(self, tokens: Tensor, key_bias: Tensor, packing: PackedLanes | None) -> Tensor:
        mha = self.self_attn  # kept for its parameters and their state-dict names
        C, H = mha.embed_dim, mha.num_heads
        R, S = key_bias.shape[0], key_bias.shape[-1]
        dropout_p = mha.dropout if self.training else 0.0
        qkv = F.linear(tokens, mha.in_proj_weight, mha.in_proj_bias)  # [R*S or T, 3C]
        if packing is not None:
            qkv = qkv.index_select(0, packing.to_attention)  # [R*S, 3C]
        q, k, v = qkv.view(R, S, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)  # [R,H,S,C/H]
        # One call for every lane. Same maths and 1/sqrt(C/H) scale as nn.MultiheadAttention,
        # which calls this function too; blocked keys add exact zeros to each softmax sum.
        key_bias = key_bias.to(q.dtype)  # no-op unless under autocast
        out = F.scaled_dot_product_attention(q, k, v, key_bias, dropout_p)  # [R, H, S, C/H]
        out = out.transpose(1, 2).reshape(R * S, C)  # a view where the kernel wrote [R,S,H,C/H]
        if packing is not None:
            out = out[packing.from_attention]  # [T, C]
        result: Tensor = self.dropout1(mha.out_proj(out))  # [R*S or T, C]
        return result

    def _feedforward(self, tokens: Tensor) -> Tensor:
        hidden = self.dropout(F.gelu(self.linear1(tokens)))  # [R*S or T, F]
        out: Tensor = self.dropout2(self.linear2(hidden))  # [R*S or T, C]
        return out


class PackedLanes(NamedTuple):
    """Where the real tokens of a padded batch of lanes go in the packed layout: built once per
    forward, read by every layer.

    The padded batch is `keep [K, S]`: K lane slots of S token slots, True on real tokens. The
    packed layout `[T, C]` holds the T real tokens, lane after lane, each lane's tokens in their
    given order. Attention reads them into an `[R, S]` layout like the lanes one: the R lanes
    with a real token, each lane's real tokens moved to its front. Positions past a lane's
    length repeat its last token and are blocked as keys by `key_bias`; their query rows are
    computed and dropped. No row is fully blocked: position 0 of every lane is real.
    """

    source: Tensor  # [T] int64, flat index into the K*S token slots of each packed token
    to_attention: Tensor  # [R*S] int64, packed token at each attention position
    from_attention: Tensor  # [T] int64, attention position (flat, R*S) of each packed token
    key_bias: Tensor  # [R, 1, 1, S] float, 0 = real key, -inf = past the lane's end

    @classmethod
    def pack(cls, keep: Tensor, num_tokens: int, num_lanes: int, dtype: torch.dtype) -> PackedLanes:
        """Build the packing of a padded batch of lanes.

        Args:
            keep: `[K, S]` bool, True = real token.
            num_tokens: T, the number of True in `keep`.
            num_lanes: R, the number of rows of `keep` with a True. The caller passes both
                counts so that packing reads nothing back from the device (they come with the
                forward's one host sync).
            dtype: dtype of `key_bias` (the attention's dtype).

        Returns:
            The packing; no value of it has been read on the host.
        """
        T, R, S = num_tokens, num_lanes, keep.shape[1]
        source = torch.nonzero_static(keep.flatten(), size=T).squeeze(1)  # [T]
        # Sorting each row's bools (True first) moves its real tokens to the front; the rows
        # that still start with False had no real token.
        front = keep.sort(dim=1, descending=True).values  # [K, S]
        real = front[torch.nonzero_static(front[:, 0], size=R).squeeze(1)]  # [R, S], slot order
        # Packed index of each real attention position; past a lane's end the count stops
        # growing, so those positions read the lane's own last token.
        to_attention = real.flatten().cumsum(0) - 1  # [R*S]
        from_attention = torch.nonzero_static(real.flatten(), size=T).squeeze(1)  # [T]
        key_bias = _key_bias_buffer(R, S, -math.inf, dtype, keep.device)  # [R, 1, 1, S]
        key_bias.masked_fill_(real[:, None, None, :], 0.0)
        return cls(source, to_attention, from_attention, key_bias)


def _key_bias_buffer(
    R: int, S: int, fill: float, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """`[R, 1, 1, S]` filled with `fill`, for an additive SDPA mask (0 = attend, -inf = blocked).

    Additive and in the attention's dtype because it is built once per forward: a boolean mask
    is converted to this inside every attention call. Its rows start 8 elements apart because
    CUDA's memory-efficient attention copies a mask whose strides are not multiples of 8 into
    one that is, in every call.
    """
    aligned = -(-S // 8) * 8  # S rounded up to a multiple of 8
    return torch.full((R, 1, 1, aligned), fill, dtype=dtype, device=device)[..., :S]


# -- argument checks -----------------------------------------------------------------------------


def _check_count(value: object, name: str) -> int:
    """`value` as an int >= 1, or an error naming `name` (a bool is not a count)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= 1; got the bool {value}")
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1; got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")
    return value


def _check_layer_config(
    d_model: object, nhead: object, dim_feedforward: object, dropout: object, norm_first: object
) -> None:
    """Refuse a layer configuration torch would build wrongly or fail on deep inside."""
    _check_count(d_model, "d_model")
    _check_count(nhead, "nhead")
    _check_count(dim_feedforward, "dim_feedforward")
    if d_model % nhead:  # type: ignore[operator]
        raise ValueError(
            f"d_model must be divisible by nhead; got d_model = {d_model}, nhead = {nhead}"
        )
    if isinstance(dropout, bool) or not isinstance(dropout, int | float):
        raise TypeError(
            f"dropout must be a probability in [0, 1]; got {dropout!r} ({type(dropout).__name__})"
        )
    if not 0 <= dropout <= 1:  # False for NaN too
        raise ValueError(f"dropout must be a probability in [0, 1]; got {dropout}")
    if not isinstance(norm_first, bool):
        raise TypeError(
            f"norm_first must be True or False; got {norm_first!r} ({type(norm_first).__name__})"
        )


def _layer_parameters(d_model: int, dim_feedforward: int) -> int:
    """How many parameters one `PriorEncoderLayer` has."""
    C, F = d_model, dim_feedforward
    return 4 * C * C + 2 * C * F + 9 * C + F  # attention, feed-forward, two norms


def _check_fits_in_memory(num_parameters: int, sizes: str) -> None:
    """Refuse `num_parameters` (set by `sizes`, e.g. "d_model = 8") that need more bytes than
    this machine has, before allocating them: a failed allocation is torch's RuntimeError, an
    overcommitted one fills the memory."""
    needed = num_parameters * torch.empty(0).element_size()  # the default dtype's bytes
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): let torch decide
        return
    if needed > memory:
        raise ValueError(
            f"{sizes} need {num_parameters} parameters ({needed / 2**30:.3g} GiB), more than this "
            f"machine's memory ({memory / 2**30:.3g} GiB); lower d_model, dim_feedforward or "
            "num_layers"
        )
