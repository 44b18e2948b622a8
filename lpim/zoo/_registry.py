"""The encoder zoo's registry: each entry, its factory and the property that catches it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lpim._property_registry import PROPERTIES
from lpim.encoder import PriorEncoder
from lpim.zoo import bugs, contracts, correct
from lpim.zoo._seeded import by_name, seeded
from lpim.zoo.base import AttentionLaneEncoder

__all__ = ["BUGS", "CAUGHT_BY", "CORRECT", "PropertyName", "ZooEntry", "sanitizer_verdict"]

PropertyName = str
"""A property of [`check_encoder`][lpim.testing.check_encoder] that can catch a zoo bug: a name
in `CAUGHT_BY`."""

CAUGHT_BY: tuple[PropertyName, ...] = tuple(
    p.name for p in PROPERTIES.values() if not p.reliability
)
"""The properties a zoo bug's `caught_by` can name, in the order the checker runs them: a bug
is named by the first that fails. Read from the property registry
([`lpim.testing.PROPERTIES`][lpim.testing.PROPERTIES]): every encoder property but the
reliability checks, which `lpim.zoo.misbehaving` covers. (Was `lpim.zoo.PROPERTIES`, which
clashed in name with the registry.)"""


@dataclass(frozen=True)
class ZooEntry:
    """One zoo encoder.

    Attributes:
        name: its key in `BUGS` or `CORRECT`.
        factory: zero-argument callable returning a fresh encoder in eval mode, `in_dim == 2`.
        caught_by: the first property that fails on it; `None` for a correct encoder.
        bug_class: a short slug for the kind of mistake (`"correct"` for correct encoders).
        summary: one line saying what it does wrong, or right.
        contract: the `lpim.testing.check_encoder` keywords (data contract, precision) under
            which `caught_by` holds: empty for "anything may happen"; e.g.
            `{"layout": "right"}` for an encoder correct under right padding only.
    """

    name: str
    factory: Callable[[], nn.Module]
    caught_by: PropertyName | None
    bug_class: str
    summary: str
    contract: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.caught_by is not None and self.caught_by not in CAUGHT_BY:
            raise ValueError(
                f"zoo entry {self.name!r}: caught_by must be one of {CAUGHT_BY}; "
                f"got {self.caught_by!r}"
            )


def _reference() -> nn.Module:
    """lpim's own `PriorEncoder`, at the zoo's size (d 16, 2 heads, 1 layer)."""
    return PriorEncoder(in_dim=2, d_model=16, nhead=2, num_layers=1, dim_feedforward=32)


CORRECT: dict[str, ZooEntry] = by_name(
    ZooEntry(
        "mha_key_padding_mask",
        seeded(AttentionLaneEncoder),
        None,
        "correct",
        "query token + MHA key_padding_mask from to_key_padding_mask; padding selected away",
    ),
    ZooEntry(
        "mha_3d_attn_mask",
        seeded(correct.Mha3dAttnMask),
        None,
        "correct",
        "per-head 3D attn_mask from to_attn_mask_3d (repeat_interleave, lane-major rows)",
    ),
    ZooEntry(
        "sdpa_right_polarity",
        seeded(correct.SdpaRightPolarity),
        None,
        "correct",
        "F.scaled_dot_product_attention with to_sdpa_mask (True = attend)",
    ),
    ZooEntry(
        "manual_softmax_additive",
        seeded(correct.ManualSoftmaxAdditive),
        None,
        "correct",
        "softmax written out, additive 0/-inf mask from to_additive_mask in the scores' dtype",
    ),
    ZooEntry(
        "torch_transformer_fast_path",
        seeded(correct.TorchTransformerFastPath),
        None,
        "correct",
        "nn.TransformerEncoder nested-tensor fast path; real points packed to the front first",
    ),
    ZooEntry(
        "packed_varlen",
        seeded(correct.PackedVarlen),
        None,
        "correct",
        "real points packed (pack, to_cu_seqlens), block-diagonal attention, unpacked",
    ),
    ZooEntry(
        "pointnet_masked_max",
        seeded(correct.PointNetMaskedMax),
        None,
        "correct",
        "MTR-style PointNet: masked max-pool via -inf selection, zeros for empty lanes",
    ),
    ZooEntry(
        "masked_mean",
        seeded(correct.MaskedMean),
        None,
        "correct",
        "masked mean over real points, count clamped to 1, empty lanes selected to 0",
    ),
    ZooEntry(
        "last_real_point",
        seeded(correct.LastRealPoint),
        None,
        "correct",
        "lane read out at its last real slot (max index where point_mask is True)",
    ),
    ZooEntry(
        "attention_pooling",
        seeded(correct.AttentionPooling),
        None,
        "correct",
        "seed-query attention pooling, need_weights=False: an empty lane's row is 0, not NaN",
    ),
    ZooEntry(
        "reference_prior_encoder",
        seeded(_reference),
        None,
        "correct",
        "lpim.PriorEncoder itself (d 16, 2 heads, 1 layer): empty lanes never computed",
    ),
    ZooEntry(
        "float32_internal",
        seeded(contracts.Float32Internal),
        None,
        "correct",
        "computes in float32 whatever it gets: unsupported under cast, passes under autocast",
    ),
    ZooEntry(
        "gru_packed_right_padding",
        seeded(contracts.GruPackedRightPadding),
        None,
        "correct",
        "GRU over pack_padded_sequence under the contract its loader keeps: right padding",
        {"layout": "right"},
    ),
    ZooEntry(
        "kpm_values_finite_padding",
        seeded(contracts.KpmValuesFromPadding),
        None,
        "correct",
        "keys and values read padded slots, under a loader that writes finite values only",
        {"garbage": "finite"},
    ),
)
"""Every correct encoder by name: `check_encoder` passes each of them."""

BUGS: dict[str, ZooEntry] = by_name(
    ZooEntry(
        "repeat_head_order",
        seeded(bugs.RepeatHeadOrder),
        "matches_unpadded",
        "head-order",
        "3D attn_mask expanded with repeat(H, 1, 1): each head reads another lane's mask",
    ),
    ZooEntry(
        "seed_crash_3d_mask",
        seeded(bugs.SeedCrash3dMask),
        "runs",
        "mask-shape",
        "3D attn_mask with B*M rows instead of B*M*H: MHA raises RuntimeError",
    ),
    ZooEntry(
        "library_mask_as_kpm",
        seeded(bugs.LibraryMaskAsKpm),
        "matches_unpadded",
        "mask-polarity",
        "point_mask (True = real) used as key_padding_mask (True = ignore): attends padding",
    ),
    ZooEntry(
        "mha_polarity_in_sdpa",
        seeded(bugs.MhaPolarityInSdpa),
        "matches_unpadded",
        "mask-polarity",
        "MHA-polarity mask (True = ignore) given to SDPA (True = attend)",
    ),
    ZooEntry(
        "float_kpm",
        seeded(bugs.FloatKpm),
        "matches_unpadded",
        "mask-dtype",
        "float 0/1 key_padding_mask is added to the scores (+1): masks nothing",
    ),
    ZooEntry(
        "kpm_without_query_column",
        seeded(bugs.KpmWithoutQueryColumn),
        "matches_unpadded",
        "mask-shift",
        "query column appended at the end of the key_padding_mask: columns off by one",
    ),
    ZooEntry(
        "cuda_only_fast_path",
        seeded(bugs.CudaOnlyFastPath),
        "devices_agree",
        "device-branch",
        "CUDA-only branch passes a 1 = valid mask as key_padding_mask; CPU is correct",
    ),
    ZooEntry(
        "fill_minus_1e9_fp16",
        seeded(bugs.FillMinus1e9Fp16),
        "runs",
        "finite-fill",
        "scores.masked_fill(~keep, -1e9): RuntimeError in float16 (overflow); fine otherwise",
    ),
    ZooEntry(
        "additive_minus_1e4",
        seeded(bugs.AdditiveMinus1e4),
        "ignores_padding",
        "finite-fill",
        "additive -1e4 mask over unselected padding: large garbage outscores it",
    ),
    ZooEntry(
        "multiply_by_mask",
        seeded(bugs.MultiplyByMask),
        "ignores_nonfinite_padding",
        "nan-leak",
        "points * point_mask instead of torch.where: 0 * NaN garbage leaks as NaN",
    ),
    ZooEntry(
        "unmasked_max_pool",
        seeded(bugs.UnmaskedMaxPool),
        "matches_unpadded",
        "unmasked-pool",
        "PointNet max-pool over all N slots: mlp(0) of padded slots takes part",
    ),
    ZooEntry(
        "mean_over_slots",
        seeded(bugs.MeanOverSlots),
        "matches_unpadded",
        "wrong-count",
        "masked sum divided by N slots instead of the real count",
    ),
    ZooEntry(
        "first_slot_pooling",
        seeded(bugs.FirstSlotPooling),
        "matches_unpadded",
        "slot-assumption",
        "lane read out at slot 0: padding under left or scattered layouts",
    ),
    ZooEntry(
        "lengths_minus_one_indexing",
        seeded(bugs.LengthsMinusOneIndexing),
        "matches_unpadded",
        "slot-assumption",
        "last point at lengths - 1: wrong unless right-padded; -1 wraps on empty lanes",
    ),
    ZooEntry(
        "slot_index_positions",
        seeded(bugs.SlotIndexPositions),
        "matches_unpadded",
        "slot-positions",
        "sinusoidal positions indexed by slot: tokens change with the padding layout",
    ),
    ZooEntry(
        "sort_without_unsort",
        seeded(bugs.SortWithoutUnsort),
        "matches_unpadded",
        "lane-order",
        "lanes sorted by length for efficiency and never unsorted",
    ),
    ZooEntry(
        "normalise_across_lanes",
        seeded(bugs.NormaliseAcrossLanes),
        "matches_unpadded",
        "cross-lane",
        "lane embeddings centred on their sample's mean: a lane alone becomes 0",
    ),
    ZooEntry(
        "empty_lanes_take_sample_mean",
        seeded(bugs.EmptyLanesTakeSampleMean),
        "lanes_independent",
        "cross-lane",
        "empty lanes imputed with the mean of their sample's real lanes",
    ),
    ZooEntry(
        "nan_sentinel_empty_lanes",
        seeded(bugs.NanSentinelEmptyLanes),
        "finite",
        "empty-lane-nan",
        "empty lanes marked with NaN (via torch.where, so gradients stay clean)",
    ),
    ZooEntry(
        "empty_lane_nan_need_weights",
        seeded(bugs.EmptyLaneNanNeedWeights),
        "finite",
        "empty-lane-nan",
        "attention pooling with need_weights=True: fully masked row of an empty lane is NaN",
    ),
    ZooEntry(
        "nan_grad_from_empty_rows",
        seeded(bugs.NanGradFromEmptyRows),
        "gradients_isolated",
        "empty-lane-nan",
        "NaN rows of empty lanes hidden by torch.where: clean forward, NaN input gradients",
    ),
    ZooEntry(
        "kpm_values_from_padding",
        seeded(contracts.KpmValuesFromPadding),
        "ignores_nonfinite_padding",
        "nan-leak",
        "keys and values read padded slots, masked only in the softmax: 0 * inf is NaN",
    ),
    ZooEntry(
        "gru_packed_any_layout",
        seeded(contracts.GruPackedRightPadding),
        "matches_unpadded",
        "slot-assumption",
        "GRU over pack_padded_sequence checked under any layout: reads padding unless right",
    ),
    ZooEntry(
        "linear_on_every_slot",
        seeded(contracts.LinearOnEverySlot),
        "gradients_ignore_padding",
        "nan-grad",
        "MLP on every slot, output masked: exact forward, NaN weight gradients from NaN padding",
    ),
    ZooEntry(
        "empty_lane_bias",
        seeded(contracts.EmptyLaneBias),
        "empty_lanes_zero",
        "empty-lane-value",
        "output projection after a masked mean: empty lanes get its bias, not zeros",
        {"empty_lanes": "zero"},
    ),
    ZooEntry(
        "cu_seqlens_off_by_one",
        seeded(bugs.CuSeqlensOffByOne),
        "matches_unpadded",
        "segment-offsets",
        "packed points assigned to lanes with searchsorted(right=False): off by one",
    ),
)
"""Every buggy encoder by name: `entry.caught_by` is the first property that fails on it."""


_SANITIZER_LINE = re.compile(
    r"^Sanitizer: (?:found as `(?P<kind>\w+)`(?P<note>.*)|needs check_encoder: (?P<why>.*))$",
    re.S,
)


def sanitizer_verdict(entry: ZooEntry) -> tuple[str | None, str]:
    """What `lpim.sanitize` makes of a bug, read from its docstring's `Sanitizer:` paragraph.

    Returns:
        `(kind, note)` for a bug the sanitizer reports (`kind` a finding kind, `note` any
        remark after it), or `(None, why)` for one that needs
        `lpim.testing.check_encoder`.

    Raises:
        ValueError: the entry's docstring has no `Sanitizer:` paragraph.
    """
    doc = inspect.getdoc(type(entry.factory())) or ""
    for paragraph in doc.split("\n\n"):
        match = _SANITIZER_LINE.match(" ".join(paragraph.split()))
        if match:
            if match["kind"]:
                return match["kind"], match["note"].strip(" .()")
            return None, match["why"].strip()
    raise ValueError(f"zoo entry {entry.name!r}: its docstring has no 'Sanitizer:' paragraph")
