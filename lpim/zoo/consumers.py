"""Lane-set consumers for the zoo: the mask bug one step downstream of the encoder, and fixes.

A lane-set consumer reads `lane_embedding [B, M, C]` and `lane_mask [B, M]` (bool, True = real
lane) as a set (see `lpim.testing.consumer`). The motivating bug is in a public LPIM
reimplementation: BEV queries cross-attend over all `M` lane embeddings with no lane mask, so
the fused BEV features change with `M` (the batch's padding) and with whatever empty lanes hold.

`CONSUMER_BUGS` and `CONSUMER_CORRECT` map a name to a `ConsumerZooEntry`;
`entry.factory()` builds the consumer (`embed_dim` 16, seed-0 weights, eval mode) and
`entry.other_inputs` is what `lpim.testing.check_lane_consumer` takes to draw its other
inputs:

```python title="Example: raises LaneConsumerPropertyError (the check catches the bug)"
from lpim.testing import check_lane_consumer
from lpim.zoo.consumers import CONSUMER_BUGS
entry = CONSUMER_BUGS["unmasked_cross_attention"]
check_lane_consumer(entry.factory(), other_inputs=entry.other_inputs, order_invariant=True)
```

As in the encoder zoo, each bug subclasses a correct consumer and overrides one step, so the
override is the bug; each docstring says what is wrong and which property catches it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpim._properties import property_named
from lpim.zoo._seeded import by_name, seeded

__all__ = [
    "CONSUMER_BUGS",
    "CONSUMER_CORRECT",
    "BevQueries",
    "ConsumerZooEntry",
    "EmptySampleNanNeedWeights",
    "FunctionalDropoutInEval",
    "KpmValuesNotCleaned",
    "LaneIndexPositions",
    "MaskedCrossAttention",
    "MaskedMeanPool",
    "PaddedLanesZeroedInPlace",
    "UnmaskedCrossAttention",
    "ZeroedMeanOverSlots",
]


@dataclass(frozen=True)
class BevQueries:
    """The other input of the cross-attention consumers, `bev_queries [B, Q, C]`, as data.

    An instance is what [`check_lane_consumer`][lpim.testing.check_lane_consumer] takes as
    `other_inputs`: called with `(batch_size, dtype, device)` it returns
    [`lpim.strategies.bev_queries`][lpim.strategies.bev_queries]'s strategy for these
    settings. Hypothesis is imported only then, so `import lpim.zoo` loads neither Hypothesis
    nor [`lpim.strategies`][lpim.strategies].

    Attributes:
        num_queries: `Q`, or a `(min, max)` range of it.
        embed_dim: `C`, the consumer's embedding width.
        value_range: queries are finite, in `[-value_range, value_range]`.
    """

    num_queries: int | tuple[int, int] = (1, 3)
    embed_dim: int = 16
    value_range: float = 4.0

    def __call__(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> Any:
        """The strategy of `(bev_queries,)` for one check: see `lpim.strategies.bev_queries`."""
        from lpim.strategies import bev_queries  # deferred: the zoo itself loads no Hypothesis

        other_inputs = bev_queries(self.num_queries, self.embed_dim, self.value_range)
        return other_inputs(batch_size, dtype, device)


# -- BEV queries cross-attending over the lanes ----------------------------------------------------


class MaskedCrossAttention(nn.Module):
    """Correct: BEV queries cross-attend over the real lanes only.

    `forward(lane_embedding [B, M, C], lane_mask [B, M], bev_queries [B, Q, C]) -> [B, Q, C]`:
    `norm(bev_queries + attention(bev_queries, lanes))`, a post-norm cross-attention block.

    Why it is right: padded lanes are *selected* to zero (`torch.where`) before anything reads
    them, so a NaN or inf there cannot reach the weighted sum as `0 * NaN`; the
    `key_padding_mask` is `~lane_mask` (`nn.MultiheadAttention` reads True as "ignore",
    the library's `lane_mask` True as "real"), so neither `M` nor padded content changes the
    softmax; `need_weights=False`, and a sample with no real lane gets an attention output of
    exact zeros by selection (its BEV features stay `norm(bev_queries)`), never NaN. Order
    invariant. Passes every property; registered as `masked_cross_attention`.
    """

    def __init__(self, embed_dim: int = 16, num_heads: int = 2) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, lane_embedding: Tensor, lane_mask: Tensor, bev_queries: Tensor) -> Tensor:
        """Fused BEV features `[B, Q, C]`."""
        lanes = self.clean(lane_embedding, lane_mask)  # [B, M, C]
        lanes = self.position(lanes)  # [B, M, C]
        attended = self.attend(bev_queries, lanes, lane_mask)  # [B, Q, C]
        out: Tensor = self.norm(bev_queries + attended)  # [B, Q, C]
        return out

    def clean(self, lane_embedding: Tensor, lane_mask: Tensor) -> Tensor:
        """Padded lanes -> 0 by selection: `[B, M, C]`."""
        return torch.where(lane_mask[..., None], lane_embedding, 0)

    def position(self, lanes: Tensor) -> Tensor:
        """No positional encoding: a lane set has no order."""
        return lanes

    def attend(self, bev_queries: Tensor, lanes: Tensor, lane_mask: Tensor) -> Tensor:
        """Cross-attention over real lanes; 0 for a sample without any: `[B, Q, C]`."""
        attended = self.attn(
            bev_queries, lanes, lanes, key_padding_mask=~lane_mask, need_weights=False
        )[0]  # [B, Q, C]
        has_lanes = lane_mask.any(dim=-1)  # [B]
        return torch.where(has_lanes[:, None, None], attended, 0)


class UnmaskedCrossAttention(MaskedCrossAttention):
    """Bug (the one in the wild): BEV queries attend over all `M` lane slots, no lane mask.

    What is wrong: `attend` passes no `key_padding_mask` and `clean` keeps padded
    embeddings, as in the public LPIM reimplementation. Every padded slot is a key: its score
    joins the softmax and takes weight from the real lanes, so the fused features depend on how
    many lanes the batch was padded to and on what the encoder left in empty lanes (zeros from
    lpim's encoder, `norm(0)` or garbage from others; NaN poisons every query of the sample).

    Caught by `ignores_appended_lanes` (the first property run: appending zero lanes changes
    the output); `ignores_padded_lanes` catches it too. Registered as
    `unmasked_cross_attention`.
    """

    def clean(self, lane_embedding: Tensor, lane_mask: Tensor) -> Tensor:
        return lane_embedding  # the bug: no lane mask anywhere

    def attend(self, bev_queries: Tensor, lanes: Tensor, lane_mask: Tensor) -> Tensor:
        attended: Tensor = self.attn(bev_queries, lanes, lanes, need_weights=False)[0]  # the bug
        return attended


class EmptySampleNanNeedWeights(MaskedCrossAttention):
    """Bug: masked correctly, but a sample with no real lane gets NaN.

    What is wrong: `attend` uses `key_padding_mask=~lane_mask` with
    `nn.MultiheadAttention`'s default `need_weights=True` and does not select lane-less
    samples away. For a sample whose every key is masked, that path computes a softmax over a
    row of `-inf` and returns NaN (`need_weights=False` would give 0), which the residual and
    the norm spread over every BEV feature. Samples without lanes are common (a sample off the
    map, the first frames of a drive).

    Caught by `finite` alone: appending lanes, padded content and lane order leave the NaN
    where it was. Registered as `empty_sample_nan_need_weights`.
    """

    def attend(self, bev_queries: Tensor, lanes: Tensor, lane_mask: Tensor) -> Tensor:
        attended: Tensor = self.attn(bev_queries, lanes, lanes, key_padding_mask=~lane_mask)[0]
        return attended  # the bug: need_weights=True by default, lane-less samples not selected


class KpmValuesNotCleaned(MaskedCrossAttention):
    """Bug: the `key_padding_mask` is right, but padded embeddings are not selected away.

    What is wrong: `clean` returns `lane_embedding` as it came. The mask gives padded
    keys an attention weight of exactly 0, but the weighted sum still multiplies that 0 by the
    padded *values*: `0 * NaN = NaN` and `0 * inf = NaN`. With zeros or finite values in
    padded lanes (lpim's encoder writes zeros) the output is right, so tests with a correct
    encoder upstream never see it.

    Caught by `ignores_padded_lanes` alone. Registered as `kpm_values_not_cleaned`.
    """

    def clean(self, lane_embedding: Tensor, lane_mask: Tensor) -> Tensor:
        return lane_embedding  # the bug: masked in the softmax, not in the values


class LaneIndexPositions(MaskedCrossAttention):
    """Bug (when the lanes are a set): sinusoidal encodings of the lane *slot* index are added.

    What is wrong: `position` adds a DETR-style sinusoidal encoding of each lane's slot
    index `0..M-1` to its embedding. Masking is right, so `M` and padded content do not
    matter; but the lanes of a map come in no meaningful order (the order a map API returns
    them, or after a shuffle), and the output changes when the same lanes arrive in another
    order.

    Caught by `lane_order_invariant` alone, when the check is told the consumer must be order
    invariant (`order_invariant=True`). Registered as `lane_index_positions`.
    """

    def position(self, lanes: Tensor) -> Tensor:
        _, m, c = lanes.shape
        slot = torch.arange(m, device=lanes.device, dtype=lanes.dtype)[:, None]  # [M, 1]
        frequency = torch.exp(
            torch.arange(0, c, 2, device=lanes.device, dtype=lanes.dtype) * (-math.log(1e4) / c)
        )  # [C/2]
        encoding = torch.zeros(m, c, device=lanes.device, dtype=lanes.dtype)  # [M, C]
        encoding[:, 0::2] = torch.sin(slot * frequency)
        encoding[:, 1::2] = torch.cos(slot * frequency[: c // 2])
        return lanes + encoding  # the bug: slot index, not anything about the lane


class PaddedLanesZeroedInPlace(MaskedCrossAttention):
    """Bug: padded lanes are zeroed *in place*, in the caller's `lane_embedding`.

    What is wrong: `clean` writes `lane_embedding.masked_fill_(~lane_mask[..., None], 0)`
    (the same as `lane_embedding[~lane_mask] = 0`) instead of selecting with `torch.where`.
    Its own output is right: padded lanes are zero before anything reads them. But the tensor
    belongs to the caller: the encoder's output, which a second head, a loss or a logger may
    read after the fusion, now has zeros where it had whatever it had (harmless only if it was
    zeros already, as lpim's encoder writes), and under autograd an in-place write into a
    tensor saved for backward can raise at `backward()`.

    Caught by `inputs_unchanged` alone (the checker hands every call copies and compares them
    with its own tensors afterwards), on a lane set whose padded lanes hold something other
    than zeros. Registered as `padded_lanes_zeroed_in_place`.
    """

    def clean(self, lane_embedding: Tensor, lane_mask: Tensor) -> Tensor:
        return lane_embedding.masked_fill_(~lane_mask[..., None], 0)  # the bug: in place


# -- pooling the lanes into a scene vector ---------------------------------------------------------


class MaskedMeanPool(nn.Module):
    """Correct: a scene vector from the mean of the real lanes' embeddings.

    ``forward(lane_embedding [B, M, C], lane_mask [B, M]) -> {"scene": [B, C], "has_lanes":
    [B] bool}`: `proj(sum of real lanes / number of real lanes)``, and whether the sample has
    a lane (a non-floating output, compared exactly).

    Why it is right: padded lanes are selected to zero (`torch.where`, not a multiply), the
    sum is divided by the real count clamped to 1, so a sample without lanes gets `proj(0)`,
    never `0 / 0`. Passes every property; registered as `masked_mean_pool`.
    """

    def __init__(self, embed_dim: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, lane_embedding: Tensor, lane_mask: Tensor) -> dict[str, Tensor]:
        """`{"scene": [B, C], "has_lanes": [B]}`."""
        lanes = torch.where(lane_mask[..., None], lane_embedding, 0)  # [B, M, C]
        scene = self.project(self.pool(lanes, lane_mask))  # [B, C]
        return {"scene": scene, "has_lanes": lane_mask.any(-1)}

    def pool(self, lanes: Tensor, lane_mask: Tensor) -> Tensor:
        """Mean over real lanes: `[B, C]`."""
        count = lane_mask.sum(dim=-1, keepdim=True).clamp(min=1)  # [B, 1]
        return lanes.sum(dim=1) / count

    def project(self, pooled: Tensor) -> Tensor:
        """The scene vector from the pooled lanes: `[B, C]`."""
        scene: Tensor = self.proj(pooled)
        return scene


class ZeroedMeanOverSlots(MaskedMeanPool):
    """Bug: padded lanes zeroed, then `mean(dim=1)`: divides by `M` slots, not real lanes.

    What is wrong: `pool` takes `lanes.mean(dim=1)` after selecting padded lanes to
    zero. Padded content cannot leak, but the scene vector shrinks as the batch is padded to
    more lanes (a sample with 3 lanes gets sum/3 alone, sum/50 in a batch padded to 50).

    Caught by `ignores_appended_lanes` alone. Registered as `zeroed_mean_over_slots`.
    """

    def pool(self, lanes: Tensor, lane_mask: Tensor) -> Tensor:
        return lanes.mean(dim=1)  # the bug: M in the denominator


class FunctionalDropoutInEval(MaskedMeanPool):
    """Bug: `F.dropout(x, p)` on the scene vector, without `training=self.training`.

    What is wrong: `project` applies `torch.nn.functional.dropout(scene, p=0.1)`, whose
    `training` argument defaults to True: unlike `nn.Dropout`, it does not follow
    `.eval()`, so it zeroes a tenth of the scene vector (and scales the rest by 1 / 0.9) at
    inference too. Masking is right; the output is random: two calls on the same lanes differ,
    and so does every comparison a property makes between two runs.

    Caught by `deterministic` alone: `check_lane_consumer` runs it first, and blames a failed
    comparison of any later property on nondeterminism when two runs of that lane set
    differ. Registered as `functional_dropout_in_eval`.
    """

    def project(self, pooled: Tensor) -> Tensor:
        return F.dropout(super().project(pooled), p=0.1)  # the bug: training=True by default


# -- the registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerZooEntry:
    """One zoo consumer.

    Attributes:
        name: its key in `CONSUMER_BUGS` or `CONSUMER_CORRECT`.
        factory: zero-argument callable returning a fresh consumer in eval mode,
            `embed_dim == 16`.
        caught_by: the first property of `lpim.testing.check_lane_consumer` that fails
            on it; None for a correct consumer.
        summary: one line saying what it does wrong, or right.
        other_inputs: what `check_lane_consumer(other_inputs=...)` needs for it (None: it
            takes only the lanes).
        order_invariant: what `check_lane_consumer(order_invariant=...)` is told.
    """

    name: str
    factory: Callable[[], nn.Module]
    caught_by: str | None
    summary: str
    other_inputs: Callable[[int, torch.dtype, torch.device], Any] | None = None
    order_invariant: bool = True

    def __post_init__(self) -> None:
        if self.caught_by is not None:
            property_named(self.caught_by, "consumer")


CONSUMER_CORRECT: dict[str, ConsumerZooEntry] = by_name(
    ConsumerZooEntry(
        "masked_cross_attention",
        seeded(MaskedCrossAttention),
        None,
        "BEV queries attend with key_padding_mask=~lane_mask, padded lanes selected to 0, "
        "lane-less samples get 0",
        BevQueries(),
    ),
    ConsumerZooEntry(
        "masked_mean_pool",
        seeded(MaskedMeanPool),
        None,
        "mean over real lanes (torch.where, count clamped to 1) and a bool has_lanes",
    ),
)
"""Every correct consumer by name: `check_lane_consumer` passes each of them."""

CONSUMER_BUGS: dict[str, ConsumerZooEntry] = by_name(
    ConsumerZooEntry(
        "unmasked_cross_attention",
        seeded(UnmaskedCrossAttention),
        "ignores_appended_lanes",
        "BEV queries attend over all M lane slots with no lane mask (the bug in the wild)",
        BevQueries(),
    ),
    ConsumerZooEntry(
        "empty_sample_nan_need_weights",
        seeded(EmptySampleNanNeedWeights),
        "finite",
        "key_padding_mask with need_weights=True: a sample with no lane gets NaN",
        BevQueries(),
    ),
    ConsumerZooEntry(
        "kpm_values_not_cleaned",
        seeded(KpmValuesNotCleaned),
        "ignores_padded_lanes",
        "key_padding_mask but padded embeddings kept: weight 0 times NaN value is NaN",
        BevQueries(),
    ),
    ConsumerZooEntry(
        "lane_index_positions",
        seeded(LaneIndexPositions),
        "lane_order_invariant",
        "sinusoidal encodings of the lane slot index added before attention",
        BevQueries(),
    ),
    ConsumerZooEntry(
        "zeroed_mean_over_slots",
        seeded(ZeroedMeanOverSlots),
        "ignores_appended_lanes",
        "padded lanes zeroed, then mean over all M slots",
    ),
    ConsumerZooEntry(
        "padded_lanes_zeroed_in_place",
        seeded(PaddedLanesZeroedInPlace),
        "inputs_unchanged",
        "padded lanes zeroed with masked_fill_ in the caller's lane_embedding",
        BevQueries(),
    ),
    ConsumerZooEntry(
        "functional_dropout_in_eval",
        seeded(FunctionalDropoutInEval),
        "deterministic",
        "F.dropout(x, p=0.1) without training=self.training: random output in eval mode",
    ),
)
"""Every buggy consumer by name: `entry.caught_by` is the first property that fails on it."""
