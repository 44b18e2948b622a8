"""The bug zoo: small lane encoders with one realistic padding-mask bug each, and correct ones.

``BUGS`` and ``CORRECT`` map a snake_case name to a :class:`ZooEntry`. ``entry.factory()`` builds
a fresh encoder (point dimension 2, ``d_model`` 16, deterministic weights, eval mode) and
``entry.caught_by`` names the first property of :func:`lpim.testing.check_encoder` that fails
on it (``None`` for correct encoders)::

    from lpim.zoo import BUGS
    encoder = BUGS["repeat_head_order"].factory()

``lpim.zoo.misbehaving`` holds encoders that misbehave in other ways (raise, mutate their
inputs, nondeterminism, slowness, ...), each reported by the check as the property it names.

Each encoder class says in its docstring what is wrong (or why it is right), why it is
realistic, which property catches it, and which line does it. The bugs subclass the correct
encoders and override one step, so the override is the bug.

Each bug's docstring also has a ``Sanitizer:`` line: the `lpim.sanitize` finding kind that
reports it at run time ("found as `KIND`"), or why only the property check can ("needs
check_encoder: why"); `sanitizer_verdict` reads it.

``CONSUMER_BUGS`` and ``CONSUMER_CORRECT`` (:mod:`lpim.zoo.consumers`) do the same one step
downstream, for lane-set consumers checked by :func:`lpim.testing.check_lane_consumer`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from lpim.encoder import PriorEncoder
from lpim.zoo import bugs, consumers, contracts, correct
from lpim.zoo._base import AttentionLaneEncoder, LaneOutput, PointLaneEncoder
from lpim.zoo.consumers import CONSUMER_BUGS, CONSUMER_CORRECT, ConsumerZooEntry

__all__ = [
    "BUGS",
    "CONSUMER_BUGS",
    "CONSUMER_CORRECT",
    "CORRECT",
    "PROPERTIES",
    "AttentionLaneEncoder",
    "ConsumerZooEntry",
    "LaneOutput",
    "PointLaneEncoder",
    "PropertyName",
    "ZooEntry",
    "bugs",
    "consumers",
    "contracts",
    "correct",
    "sanitizer_verdict",
]

PropertyName = Literal[
    "runs",
    "finite",
    "matches_unpadded",
    "ignores_padding",
    "ignores_nonfinite_padding",
    "lanes_independent",
    "gradients_isolated",
    "gradients_ignore_padding",
    "empty_lanes_zero",
    "devices_agree",
]

#: The properties in the order the checker runs them; a bug is named by the first that fails.
PROPERTIES: tuple[PropertyName, ...] = (
    "runs",
    "finite",
    "matches_unpadded",
    "ignores_padding",
    "ignores_nonfinite_padding",
    "lanes_independent",
    "gradients_isolated",
    "gradients_ignore_padding",
    "empty_lanes_zero",
    "devices_agree",
)


@dataclass(frozen=True)
class ZooEntry:
    """One zoo encoder.

    Attributes:
        name: its key in :data:`BUGS` or :data:`CORRECT`.
        factory: zero-argument callable returning a fresh encoder in eval mode, ``in_dim == 2``.
        caught_by: the first property that fails on it; ``None`` for a correct encoder.
        bug_class: a short slug for the kind of mistake (``"correct"`` for correct encoders).
        summary: one line saying what it does wrong, or right.
        contract: the `lpim.testing.check_encoder` keywords (data contract, precision) under
            which ``caught_by`` holds: empty for "anything may happen"; e.g.
            ``{"layout": "right"}`` for an encoder correct under right padding only.
    """

    name: str
    factory: Callable[[], nn.Module]
    caught_by: PropertyName | None
    bug_class: str
    summary: str
    contract: Mapping[str, Any] = field(default_factory=dict)


def _factory(cls: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Build ``cls()`` with seed-0 weights, in eval mode, leaving the global RNG untouched."""

    def build() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return cls().eval()

    build.__name__ = build.__qualname__ = f"build_{getattr(cls, '__name__', 'encoder')}"
    return build


def _reference() -> nn.Module:
    """lpim's own :class:`~lpim.PriorEncoder`, at the zoo's size (d 16, 2 heads, 1 layer)."""
    return PriorEncoder(in_dim=2, d_model=16, nhead=2, num_layers=1, dim_feedforward=32)


def _entries(*entries: ZooEntry) -> dict[str, ZooEntry]:
    return {entry.name: entry for entry in entries}


CORRECT: dict[str, ZooEntry] = _entries(
    ZooEntry(
        "mha_key_padding_mask",
        _factory(AttentionLaneEncoder),
        None,
        "correct",
        "query token + MHA key_padding_mask from to_key_padding_mask; padding selected away",
    ),
    ZooEntry(
        "mha_3d_attn_mask",
        _factory(correct.Mha3dAttnMask),
        None,
        "correct",
        "per-head 3D attn_mask from to_attn_mask_3d (repeat_interleave, lane-major rows)",
    ),
    ZooEntry(
        "sdpa_right_polarity",
        _factory(correct.SdpaRightPolarity),
        None,
        "correct",
        "F.scaled_dot_product_attention with to_sdpa_mask (True = attend)",
    ),
    ZooEntry(
        "manual_softmax_additive",
        _factory(correct.ManualSoftmaxAdditive),
        None,
        "correct",
        "softmax written out, additive 0/-inf mask from to_additive_mask in the scores' dtype",
    ),
    ZooEntry(
        "torch_transformer_fast_path",
        _factory(correct.TorchTransformerFastPath),
        None,
        "correct",
        "nn.TransformerEncoder nested-tensor fast path; real points packed to the front first",
    ),
    ZooEntry(
        "packed_varlen",
        _factory(correct.PackedVarlen),
        None,
        "correct",
        "real points packed (pack, to_cu_seqlens), block-diagonal attention, unpacked",
    ),
    ZooEntry(
        "pointnet_masked_max",
        _factory(correct.PointNetMaskedMax),
        None,
        "correct",
        "MTR-style PointNet: masked max-pool via -inf selection, zeros for empty lanes",
    ),
    ZooEntry(
        "masked_mean",
        _factory(correct.MaskedMean),
        None,
        "correct",
        "masked mean over real points, count clamped to 1, empty lanes selected to 0",
    ),
    ZooEntry(
        "last_real_point",
        _factory(correct.LastRealPoint),
        None,
        "correct",
        "lane read out at its last real slot (max index where point_mask is True)",
    ),
    ZooEntry(
        "attention_pooling",
        _factory(correct.AttentionPooling),
        None,
        "correct",
        "seed-query attention pooling, need_weights=False: an empty lane's row is 0, not NaN",
    ),
    ZooEntry(
        "reference_prior_encoder",
        _factory(_reference),
        None,
        "correct",
        "lpim.PriorEncoder itself (d 16, 2 heads, 1 layer): empty lanes never computed",
    ),
    ZooEntry(
        "float32_internal",
        _factory(contracts.Float32Internal),
        None,
        "correct",
        "computes in float32 whatever it gets: unsupported under cast, passes under autocast",
    ),
    ZooEntry(
        "gru_packed_right_padding",
        _factory(contracts.GruPackedRightPadding),
        None,
        "correct",
        "GRU over pack_padded_sequence under the contract its loader keeps: right padding",
        {"layout": "right"},
    ),
    ZooEntry(
        "kpm_values_finite_padding",
        _factory(contracts.KpmValuesFromPadding),
        None,
        "correct",
        "keys and values read padded slots, under a loader that writes finite values only",
        {"garbage": "finite"},
    ),
)

BUGS: dict[str, ZooEntry] = _entries(
    ZooEntry(
        "repeat_head_order",
        _factory(bugs.RepeatHeadOrder),
        "matches_unpadded",
        "head-order",
        "3D attn_mask expanded with repeat(H, 1, 1): each head reads another lane's mask",
    ),
    ZooEntry(
        "seed_crash_3d_mask",
        _factory(bugs.SeedCrash3dMask),
        "runs",
        "mask-shape",
        "3D attn_mask with B*M rows instead of B*M*H: MHA raises RuntimeError",
    ),
    ZooEntry(
        "library_mask_as_kpm",
        _factory(bugs.LibraryMaskAsKpm),
        "matches_unpadded",
        "mask-polarity",
        "point_mask (True = real) used as key_padding_mask (True = ignore): attends padding",
    ),
    ZooEntry(
        "mha_polarity_in_sdpa",
        _factory(bugs.MhaPolarityInSdpa),
        "matches_unpadded",
        "mask-polarity",
        "MHA-polarity mask (True = ignore) given to SDPA (True = attend)",
    ),
    ZooEntry(
        "float_kpm",
        _factory(bugs.FloatKpm),
        "matches_unpadded",
        "mask-dtype",
        "float 0/1 key_padding_mask is added to the scores (+1): masks nothing",
    ),
    ZooEntry(
        "kpm_without_query_column",
        _factory(bugs.KpmWithoutQueryColumn),
        "matches_unpadded",
        "mask-shift",
        "query column appended at the end of the key_padding_mask: columns off by one",
    ),
    ZooEntry(
        "cuda_only_fast_path",
        _factory(bugs.CudaOnlyFastPath),
        "devices_agree",
        "device-branch",
        "CUDA-only branch passes a 1 = valid mask as key_padding_mask; CPU is correct",
    ),
    ZooEntry(
        "fill_minus_1e9_fp16",
        _factory(bugs.FillMinus1e9Fp16),
        "runs",
        "finite-fill",
        "scores.masked_fill(~keep, -1e9): RuntimeError in float16 (overflow); fine otherwise",
    ),
    ZooEntry(
        "additive_minus_1e4",
        _factory(bugs.AdditiveMinus1e4),
        "ignores_padding",
        "finite-fill",
        "additive -1e4 mask over unselected padding: large garbage outscores it",
    ),
    ZooEntry(
        "multiply_by_mask",
        _factory(bugs.MultiplyByMask),
        "ignores_nonfinite_padding",
        "nan-leak",
        "points * point_mask instead of torch.where: 0 * NaN garbage leaks as NaN",
    ),
    ZooEntry(
        "unmasked_max_pool",
        _factory(bugs.UnmaskedMaxPool),
        "matches_unpadded",
        "unmasked-pool",
        "PointNet max-pool over all N slots: mlp(0) of padded slots takes part",
    ),
    ZooEntry(
        "mean_over_slots",
        _factory(bugs.MeanOverSlots),
        "matches_unpadded",
        "wrong-count",
        "masked sum divided by N slots instead of the real count",
    ),
    ZooEntry(
        "first_slot_pooling",
        _factory(bugs.FirstSlotPooling),
        "matches_unpadded",
        "slot-assumption",
        "lane read out at slot 0: padding under left or scattered layouts",
    ),
    ZooEntry(
        "lengths_minus_one_indexing",
        _factory(bugs.LengthsMinusOneIndexing),
        "matches_unpadded",
        "slot-assumption",
        "last point at lengths - 1: wrong unless right-padded; -1 wraps on empty lanes",
    ),
    ZooEntry(
        "slot_index_positions",
        _factory(bugs.SlotIndexPositions),
        "matches_unpadded",
        "slot-positions",
        "sinusoidal positions indexed by slot: tokens change with the padding layout",
    ),
    ZooEntry(
        "sort_without_unsort",
        _factory(bugs.SortWithoutUnsort),
        "matches_unpadded",
        "lane-order",
        "lanes sorted by length for efficiency and never unsorted",
    ),
    ZooEntry(
        "normalise_across_lanes",
        _factory(bugs.NormaliseAcrossLanes),
        "matches_unpadded",
        "cross-lane",
        "lane embeddings centred on their sample's mean: a lane alone becomes 0",
    ),
    ZooEntry(
        "empty_lanes_take_sample_mean",
        _factory(bugs.EmptyLanesTakeSampleMean),
        "lanes_independent",
        "cross-lane",
        "empty lanes imputed with the mean of their sample's real lanes",
    ),
    ZooEntry(
        "nan_sentinel_empty_lanes",
        _factory(bugs.NanSentinelEmptyLanes),
        "finite",
        "empty-lane-nan",
        "empty lanes marked with NaN (via torch.where, so gradients stay clean)",
    ),
    ZooEntry(
        "empty_lane_nan_need_weights",
        _factory(bugs.EmptyLaneNanNeedWeights),
        "finite",
        "empty-lane-nan",
        "attention pooling with need_weights=True: fully masked row of an empty lane is NaN",
    ),
    ZooEntry(
        "nan_grad_from_empty_rows",
        _factory(bugs.NanGradFromEmptyRows),
        "gradients_isolated",
        "empty-lane-nan",
        "NaN rows of empty lanes hidden by torch.where: clean forward, NaN input gradients",
    ),
    ZooEntry(
        "kpm_values_from_padding",
        _factory(contracts.KpmValuesFromPadding),
        "ignores_nonfinite_padding",
        "nan-leak",
        "keys and values read padded slots, masked only in the softmax: 0 * inf is NaN",
    ),
    ZooEntry(
        "gru_packed_any_layout",
        _factory(contracts.GruPackedRightPadding),
        "matches_unpadded",
        "slot-assumption",
        "GRU over pack_padded_sequence checked under any layout: reads padding unless right",
    ),
    ZooEntry(
        "linear_on_every_slot",
        _factory(contracts.LinearOnEverySlot),
        "gradients_ignore_padding",
        "nan-grad",
        "MLP on every slot, output masked: exact forward, NaN weight gradients from NaN padding",
    ),
    ZooEntry(
        "empty_lane_bias",
        _factory(contracts.EmptyLaneBias),
        "empty_lanes_zero",
        "empty-lane-value",
        "output projection after a masked mean: empty lanes get its bias, not zeros",
        {"empty_lanes": "zero"},
    ),
    ZooEntry(
        "cu_seqlens_off_by_one",
        _factory(bugs.CuSeqlensOffByOne),
        "matches_unpadded",
        "segment-offsets",
        "packed points assigned to lanes with searchsorted(right=False): off by one",
    ),
)


_SANITIZER_LINE = re.compile(
    r"^Sanitizer: (?:found as `(?P<kind>\w+)`(?P<note>.*)|needs check_encoder: (?P<why>.*))$",
    re.S,
)


def sanitizer_verdict(entry: ZooEntry) -> tuple[str | None, str]:
    """What ``lpim.sanitize`` makes of a bug, read from its docstring's ``Sanitizer:`` paragraph.

    Returns:
        ``(kind, note)`` for a bug the sanitizer reports (``kind`` a finding kind, ``note`` any
        remark after it), or ``(None, why)`` for one that needs
        `lpim.testing.check_encoder`.

    Raises:
        ValueError: the entry's docstring has no ``Sanitizer:`` paragraph.
    """
    doc = inspect.getdoc(type(entry.factory())) or ""
    for paragraph in doc.split("\n\n"):
        match = _SANITIZER_LINE.match(" ".join(paragraph.split()))
        if match:
            if match["kind"]:
                return match["kind"], match["note"].strip(" .()")
            return None, match["why"].strip()
    raise ValueError(f"zoo entry {entry.name!r}: its docstring has no 'Sanitizer:' paragraph")
