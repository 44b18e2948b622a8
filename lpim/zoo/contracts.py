"""Encoders whose verdict depends on what the user states: their data contract or precision.

Real encoders are written for the batches their loader produces, and often compute in float32
whatever they are given. lpim must neither fail them on batches their pipeline never makes nor
pass them on batches it was never shown. Each class here says under which contract (the keywords
of `lpim.testing.check_encoder` in its zoo entry's `contract`) it is correct, and which
property catches it without that contract.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lpim.zoo.base import AttentionLaneEncoder, LaneOutput, PointLaneEncoder
from lpim.zoo.correct import MaskedMean

__all__ = [
    "EmptyLaneBias",
    "Float32Internal",
    "GruPackedRightPadding",
    "KpmValuesFromPadding",
    "LinearOnEverySlot",
]


class Float32Internal(MaskedMean):
    """Correct, in float32: a masked-mean PointNet that computes in float32 whatever it gets.

    `points.float()` and a float32 buffer (as PGP's GRU encoder keeps a `torch.zeros`
    buffer) make it run at float32 only once its module is cast: at float64, bfloat16 and
    float16 with `precision="cast"`, `mat1 and mat2 must have the same dtype`. That is not
    a mask bug: the check reports those rows `unsupported`, with the hint, and exit status 0.
    With `precision="autocast"` (float32 weights and inputs, `torch.autocast` at bfloat16 or
    float16, as mixed-precision training runs it) every low-precision row runs and passes. Its
    output is float32 at every dtype, as the protocol allows under autocast.
    """

    def __init__(self, in_dim: int = 2, d_model: int = 16, coord_range: float = 50.0) -> None:
        super().__init__(in_dim, d_model, coord_range)
        self.register_buffer("offset", torch.zeros(d_model, dtype=torch.float32))

    def forward(self, points: Tensor, point_mask: Tensor) -> LaneOutput:
        """`points [B, M, N, D]` (any float dtype; used as float32), `point_mask [B, M, N]`."""
        out = super().forward(points.float(), point_mask)  # float32 inside, whatever came
        offset = torch.as_tensor(self.offset).float()  # [C]: the buffer a `.to(dtype)` changes
        return LaneOutput(out.lane_embedding + offset, out.point_features)


class GruPackedRightPadding(nn.Module):
    """Correct under right padding only: a GRU over `pack_padded_sequence` (PGP style).

    `pack_padded_sequence(x, lengths)` takes each lane's *first* `length` slots, which are
    its real points only when real points come first (right padding, what PGP's loader
    writes). The hidden state after the last real point is the lane embedding; empty lanes are
    run with length 1 and selected to zeros. Checked with `layout="right"` it passes every
    property; without it, left and scattered padding feed it padded slots and
    `matches_unpadded` fails (the lane differs from itself unpadded).

    Sanitizer: needs check_encoder: no attention mask; the mistake is which slots a length
    selects, which only the points can tell.

    Offending line (under left or scattered padding):

    ```text
    nn.utils.rnn.pack_padded_sequence(clean, lengths, batch_first=True, ...)
    ```
    """

    def __init__(self, in_dim: int = 2, d_model: int = 16, coord_range: float = 50.0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.d_model = d_model
        self.coord_range = coord_range
        self.gru = nn.GRU(in_dim, d_model, batch_first=True)

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """`points [B, M, N, D]`, `point_mask [B, M, N]` (right padding) -> `[B, M, C]`."""
        B, M, N, D = points.shape
        lengths = point_mask.sum(-1).flatten()  # [B*M]
        # Padded slots selected to 0 first: pack_padded_sequence never reads past a length,
        # but its backward would still multiply NaN by 0 in the unread slots' gradient.
        clean = torch.where(point_mask[..., None], points, 0) / self.coord_range
        packed = nn.utils.rnn.pack_padded_sequence(
            clean.reshape(B * M, N, D),
            lengths.clamp(min=1).cpu(),  # an empty lane runs one (zero) step, selected away
            batch_first=True,
            enforce_sorted=False,
        )
        _, hidden = self.gru(packed)  # [1, B*M, C]
        embedding = hidden[0].reshape(B, M, self.d_model)  # [B, M, C]
        return torch.where(point_mask.any(-1)[..., None], embedding, 0)


class KpmValuesFromPadding(AttentionLaneEncoder):
    """Correct under finite padding only: keys and values computed from padded slots, masked
    only in the softmax (the LaneDiffusion prior encoder's pattern).

    The `key_padding_mask` is right, so padded keys get weight exactly 0 and any finite value
    there is multiplied by 0: exact, with zeros, huge values or the last point repeated. But
    `0 * inf` and `0 * NaN` are NaN: NaN or inf in a padded slot makes every real token of
    the lane NaN. Checked with `garbage="finite"` it passes; without, it is caught by
    `ignores_nonfinite_padding` (a loader that writes NaN there breaks it; one that never
    does is fine).

    Sanitizer: needs check_encoder: the key_padding_mask is right; the leak is in the values,
    and shows (as `nonfinite_output`) only when a batch holds NaN or inf in padded slots.

    Offending line:

    ```python title="Listing: the offending line"
    return points  # padded slots go into the keys and values as they are
    ```
    """

    def clean_points(self, points: Tensor, point_mask: Tensor) -> Tensor:
        return points  # BUG under NaN/inf padding: read by the keys and values, masked later


class LinearOnEverySlot(PointLaneEncoder):
    """Bug: a layer runs on every slot and only its output is masked: NaN weight gradients.

    The forward pass is exact under any padding: the MLP runs on the raw slots, padded ones
    included, and `torch.where` selects their features away before the masked mean. But the
    weight gradient of the first `nn.Linear` sums `input * upstream gradient` over every
    slot, and at a padded slot that is `NaN * 0 = NaN`: one NaN in the loader's padding and
    the first training step writes NaN into the weights. Realistic: "the mask is applied at the
    pooling" is the usual reasoning. Caught by `gradients_ignore_padding` only (every forward
    property passes, and `gradients_isolated` pads with zeros).

    Sanitizer: needs check_encoder: no attention call; the leak is in the backward pass.

    Offending line:

    ```python title="Listing: the offending line"
    return points  # the MLP reads padded slots; only its output is masked
    ```
    """

    def clean_points(self, points: Tensor, point_mask: Tensor) -> Tensor:
        return points  # BUG: padded garbage reaches the MLP (and its weight gradient)

    def pool(self, features: Tensor, point_mask: Tensor) -> Tensor:
        summed = torch.where(point_mask[..., None], features, 0).sum(dim=2)  # [B, M, C]
        count = point_mask.sum(dim=-1, keepdim=True).clamp(min=1)  # [B, M, 1]
        return torch.where(point_mask.any(dim=-1)[..., None], summed / count, 0)  # [B, M, C]


class EmptyLaneBias(MaskedMean):
    """Bug under `empty_lanes="zero"`: an output projection leaves its bias in empty lanes.

    A masked mean (zeros for empty lanes) followed by `nn.Linear` with a bias: every empty
    lane gets `bias`, one constant vector. Correct if every consumer masks empty lanes; wrong
    for a consumer that reads all `M` lanes, which is what `empty_lanes="zero"` declares.
    Caught by `empty_lanes_zero` only, under that contract; the report of any check notes
    "empty lanes give one constant vector".

    Sanitizer: needs check_encoder: no attention call; empty lanes' values are a contract.

    Offending line:

    ```python title="Listing: the offending line"
    return LaneOutput(self.project(out.lane_embedding), out.point_features)
    ```
    """

    def __init__(self, in_dim: int = 2, d_model: int = 16, coord_range: float = 50.0) -> None:
        super().__init__(in_dim, d_model, coord_range)
        self.project = nn.Linear(d_model, d_model)

    def forward(self, points: Tensor, point_mask: Tensor) -> LaneOutput:
        """`points [B, M, N, D]`, `point_mask [B, M, N]` -> projected outputs."""
        out = super().forward(points, point_mask)
        return LaneOutput(self.project(out.lane_embedding), out.point_features)  # BUG: bias
