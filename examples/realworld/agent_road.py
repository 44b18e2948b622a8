"""Road encoder whose seed query is the sample's agent embedding: lpim's own implementation.

Family: the agent-centric road encoders of single-agent motion predictors. Each road polyline is
a run of points ``(x, y, valid)`` (the loader carries validity as a third feature, 1.0 at real
points); a shared MLP (Linear, LayerNorm, ReLU, Linear, with zero-initialised biases) lifts every
point, and the polyline is pooled by one cross-attention whose single query is not a learned token
but the *sample's* agent embedding ``[B, C]``, projected: the road is read from that agent's point
of view. The embedding of a polyline without a real point is zeros. Written here from that
description (no public code copied).

It is called ``encoder(points [B, M, N, 3], agent [B, C])``: no mask argument (the validity is the
last channel of ``points``) and per-sample context after the points. lpim takes both as they
come: ``point_mask_as="valid_channel"`` builds the channel from its mask, ``other_inputs=agents``
draws an agent embedding per sample, and each polyline run alone gets its own sample's agent.

Loader's data contract: polylines clipped at the edges of the agent's box, so real points are
one run with padding at either end (``layout="contiguous"``) and zeros in padded slots
(``garbage="zeros"``); empty polylines and samples occur (a box with no road).

What lpim finds (``check_encoder``, float32, 10 examples a property):

- `build_encoder` passes every property under its loader's contract. With the default contract
  it fails ``ignores_padding`` and ``ignores_nonfinite_padding``: the MLP runs on every slot, and
  a huge or non-finite value there becomes a NaN key and value, which the attention's weighted
  sum reads as ``0 * NaN`` even though its weight is exactly 0.
- `build_repeat_bug` flattens the agent query to one row per polyline with
  ``agent.repeat(M, 1)`` instead of ``agent.repeat_interleave(M, 0)``: polyline ``(b, m)`` is read
  from the agent of sample ``(b * M + m) % B``. Shapes are right and a batch of one sample is
  right; lpim's per-polyline reference, which gives each polyline its own sample's agent, fails
  ``matches_unpadded`` under the loader's contract on a batch of two samples, and
  ``lanes_independent`` (reordering the samples moves the agents the polylines read).
- `build_fixed` selects padded points to zero before the MLP (``torch.where``): it passes the
  default contract too (any layout, any garbage).

Run it from this folder::

    lpim check agent_road:build_encoder --point-mask-as valid_channel \\
        --other-inputs agent_road:agents --layout contiguous --garbage zeros   # exit 0
    lpim check agent_road:build_encoder --point-mask-as valid_channel \\
        --other-inputs agent_road:agents                                       # exit 1
    lpim check agent_road:build_repeat_bug --point-mask-as valid_channel \\
        --other-inputs agent_road:agents --layout contiguous --garbage zeros   # exit 1
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import Tensor, nn

AGENT_DIM = 16
"""``C`` of the agent embedding the encoder is given per sample."""


def agents(batch_size: int, dtype: torch.dtype, device: torch.device) -> st.SearchStrategy:
    """``other_inputs`` for the check: one agent embedding ``[B, AGENT_DIM]`` per sample, as a
    1-tuple (passed after the points), values in [-2, 2]."""
    values = st.lists(
        st.floats(-2, 2, allow_nan=False),
        min_size=batch_size * AGENT_DIM,
        max_size=batch_size * AGENT_DIM,
    )
    return st.tuples(
        values.map(
            lambda v: (
                torch.tensor(v, dtype=torch.float64)
                .reshape(batch_size, AGENT_DIM)
                .to(dtype=dtype, device=device)
            )
        )
    )


class AgentQueryRoadEncoder(nn.Module):
    """``forward(points [B, M, N, 3], agent [B, AGENT_DIM]) -> [B, M, C]``.

    ``points[..., :2]`` are coordinates, ``points[..., 2]`` is 1.0 at real points and 0.0 at
    padded slots.

    Args:
        hidden: ``C``, the width of point features and of the embedding.
        heads: attention heads.
        coord_range: coordinates are divided by this.
        repeat_bug: flatten the agent query with ``repeat`` (sample-major order is wrong).
        select_first: the fix: padded points are zeros, by selection, before the MLP.
    """

    def __init__(
        self,
        hidden: int = 32,
        heads: int = 4,
        coord_range: float = 50.0,
        repeat_bug: bool = False,
        select_first: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim = 3  # x, y and the validity flag: lpim reads D = 2 with point_mask_as
        self.coord_range = coord_range
        self.repeat_bug = repeat_bug
        self.select_first = select_first
        self.point_mlp = nn.Sequential(
            nn.Linear(2, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        for layer in self.point_mlp:
            if isinstance(layer, nn.Linear):
                nn.init.zeros_(layer.bias)
        self.seed = nn.Linear(AGENT_DIM, hidden)  # the agent embedding, as the query
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, points: Tensor, agent: Tensor) -> Tensor:
        """``[B, M, C]``; zeros for a polyline without a real point."""
        b, m, n, _ = points.shape
        valid = points[..., 2] > 0.5  # [B, M, N]
        xy = points[..., :2]  # [B, M, N, 2]
        if self.select_first:
            xy = torch.where(valid[..., None], xy, 0)
        features = self.point_mlp(xy / self.coord_range)  # [B, M, N, C], every slot
        features = features.reshape(b * m, n, -1)  # [B*M, N, C]
        query = self.seed(agent)  # [B, C]
        if self.repeat_bug:
            query = query.repeat(m, 1)  # [B*M, C], row i from sample i % B: wrong
        else:
            query = query.repeat_interleave(m, 0)  # [B*M, C], row b*M + m from sample b
        lane_valid = valid.any(-1).reshape(b * m)  # [B*M]
        # A polyline without a real point keeps one key unmasked (its output is zeroed below),
        # so no attention row is fully masked and no NaN reaches the backward pass.
        key_padding_mask = ~valid.reshape(b * m, n)  # [B*M, N], True = padded slot
        first = torch.arange(n, device=points.device) == 0  # [N]
        key_padding_mask = key_padding_mask & ~(~lane_valid[:, None] & first)
        pooled, _ = self.attention(
            query[:, None, :],
            features,
            features,
            key_padding_mask=key_padding_mask,
            need_weights=False,
        )  # [B*M, 1, C]
        out = self.norm(pooled[:, 0] + query)  # [B*M, C]
        out = torch.where(lane_valid[:, None], out, 0)  # empty polylines give zeros
        return out.reshape(b, m, -1)


def build_encoder() -> AgentQueryRoadEncoder:
    """The encoder as written (MLP on every slot); seed-0 weights, eval mode."""
    torch.manual_seed(0)
    return AgentQueryRoadEncoder().eval()


def build_repeat_bug() -> AgentQueryRoadEncoder:
    """The same weights, the agent query flattened with ``repeat`` (the wrong sample order)."""
    torch.manual_seed(0)
    return AgentQueryRoadEncoder(repeat_bug=True).eval()


def build_fixed() -> AgentQueryRoadEncoder:
    """The same weights, padded points selected to zero before the MLP."""
    torch.manual_seed(0)
    return AgentQueryRoadEncoder(select_first=True).eval()
