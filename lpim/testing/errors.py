"""The properties by name, what each means, and the error a failed one raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import torch

from lpim.batch import LaneBatch
from lpim.testing.report import CheckReport

ExampleT = TypeVar("ExampleT")
"""The type of a property's example: `lpim.LaneBatch` for encoders, `lpim.LaneSet` for
consumers."""

__all__ = [
    "GALLERY",
    "PROPERTIES",
    "Cause",
    "EncoderPropertyError",
    "ExampleT",
    "Property",
    "PropertyError",
]


GALLERY = "docs/pitfalls.md"
"""The pitfalls gallery (the site's "Pitfalls gallery" page): one section per `lpim.zoo` bug,
at `#<name-with-dashes>`."""


@dataclass(frozen=True)
class Cause:
    """One usual cause of a failed property.

    Attributes:
        text: what goes wrong, in a few words.
        zoo: the `lpim.zoo` bug that shows it (its gallery section), or "" for none.
        needs: what an example must have for this cause to produce a failure on it:
            `"lanes"` (two lanes or more), `"padding"` (a padded slot), `"unaligned"`
            (left or scattered padding), `"empty_lane"` (a lane with no real point),
            `"nonfinite"` (NaN or inf in the example), `"half"` (float16). See
            `PropertyError.example_features`.
    """

    text: str
    zoo: str = ""
    needs: frozenset[str] = frozenset()

    def describe(self) -> str:
        """The cause, its zoo name and its gallery link."""
        if not self.zoo:
            return self.text
        return f"{self.text} (zoo {self.zoo}, {GALLERY}#{self.zoo.replace('_', '-')})"


def _cause(text: str, zoo: str = "", *needs: str) -> Cause:
    return Cause(text, zoo, frozenset(needs))


@dataclass(frozen=True)
class Property:
    """One property every encoder (or consumer) must hold.

    Attributes:
        name: its name in reports, `--property` and `PropertyError.property_name`.
        assert_name: the `lpim.testing` function that checks it on one example.
        meaning: what it says, in one sentence.
        causes: the mistakes that usually break it, each with the example features it needs.
    """

    name: str
    assert_name: str
    meaning: str
    causes: tuple[Cause, ...]

    @property
    def usual_causes(self) -> str:
        """Every cause, in one line."""
        return "; ".join(cause.describe() for cause in self.causes)

    def causes_for(self, features: frozenset[str]) -> list[Cause]:
        """The causes that can produce a failure on an example with `features`."""
        return [cause for cause in self.causes if cause.needs <= features]


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in [
        Property(
            "runs",
            "(any)",
            "the encoder runs on every valid batch and returns the protocol's output: a tensor "
            "[B, M, C] or an object with lane_embedding [B, M, C] (and point_features "
            "[B, M, N, C]) on the input's device",
            (
                _cause(
                    "a 3D attn_mask with B*M rows instead of B*M*num_heads", "seed_crash_3d_mask"
                ),
                _cause("a fill value that overflows the dtype", "fill_minus_1e9_fp16", "half"),
                _cause("an empty lane or batch the code never expected", "", "empty_lane"),
                _cause(
                    "a lane of one point the code cannot take (min_points= if it never "
                    "occurs in your data)"
                ),
            ),
        ),
        Property(
            "deterministic",
            "assert_deterministic",
            "the encoder gives the same output when called twice on the same batch (a "
            "reliability check: a nondeterministic encoder cannot be held to any other property)",
            (
                _cause(
                    "dropout left active (a module wrapped in a plain function and never put in "
                    "eval mode, or F.dropout(training=True))"
                ),
                _cause("random numbers drawn in forward; state kept between calls"),
            ),
        ),
        Property(
            "inputs_unchanged",
            "(any)",
            "the encoder does not write into points or point_mask (checked after every call: "
            "the checker hands the encoder copies)",
            (
                _cause(
                    "in-place ops on the inputs: points.masked_fill_, points[~mask] = 0, "
                    "points /= range, point_mask &= ..."
                ),
            ),
        ),
        Property(
            "deadline",
            "(any)",
            "each call of the encoder on one batch finishes within check_encoder's deadline "
            "(timed twice before it counts)",
            (
                _cause(
                    "a Python loop over lanes or points; a per-call copy of the weights; a "
                    "host sync per lane"
                ),
            ),
        ),
        Property(
            "finite",
            "assert_finite",
            "no NaN or inf in any output for finite real points, including empty lanes, empty "
            "samples and all-empty batches",
            (
                _cause(
                    "a fully masked attention row with need_weights=True",
                    "empty_lane_nan_need_weights",
                    "empty_lane",
                ),
                _cause("NaN as an 'empty' marker", "nan_sentinel_empty_lanes", "empty_lane"),
                _cause("dividing by a zero count", "", "empty_lane"),
            ),
        ),
        Property(
            "matches_unpadded",
            "assert_matches_unpadded",
            "each real lane's output (and its real points' features) equals the same encoder "
            "run on that lane alone, unpadded, as points [1, 1, n, D]",
            (
                _cause(
                    "a head-major 3D mask: repeat instead of repeat_interleave",
                    "repeat_head_order",
                    "lanes",
                ),
                _cause(
                    "inverted polarity: True = real given where True = ignore",
                    "library_mask_as_kpm",
                    "padding",
                ),
                _cause("an MHA-polarity mask given to SDPA", "mha_polarity_in_sdpa", "padding"),
                _cause("a float 0/1 key_padding_mask, added to the scores", "float_kpm", "padding"),
                _cause("a missing or shifted query column", "kpm_without_query_column", "padding"),
                _cause("pooling over slots instead of real points", "mean_over_slots", "padding"),
                _cause("an unmasked max-pool over padded slots", "unmasked_max_pool", "padding"),
                _cause("positions from slot indices", "slot_index_positions", "unaligned"),
                _cause(
                    "the last point at lengths - 1, or reading slot 0",
                    "lengths_minus_one_indexing",
                    "unaligned",
                ),
                _cause(
                    "pack_padded_sequence on left or scattered padding (layout='right' if "
                    "your loader right-pads)",
                    "gru_packed_any_layout",
                    "unaligned",
                ),
                _cause("lanes sorted and never unsorted", "sort_without_unsort", "lanes"),
                _cause("statistics across lanes", "normalise_across_lanes", "lanes"),
                _cause(
                    "packed points assigned to the wrong lane", "cu_seqlens_off_by_one", "lanes"
                ),
            ),
        ),
        Property(
            "ignores_padding",
            "assert_ignores_padding",
            "whatever finite values padded slots hold (zeros, values in the real coordinates' "
            "range, the lane's last point repeated and, unless the data contract says "
            "garbage='finite', huge values) changes no output",
            (
                _cause(
                    "a finite additive fill such as -1e4 that huge padded scores overcome",
                    "additive_minus_1e4",
                    "padding",
                ),
                _cause("pooling or attending over padded slots", "", "padding"),
            ),
        ),
        Property(
            "ignores_nonfinite_padding",
            "assert_ignores_nonfinite_padding",
            "NaN or inf in padded slots changes no output (your loader must never write NaN/inf "
            "in padded slots, or the encoder must select real points before its first layer)",
            (
                _cause(
                    "multiplying by the mask instead of selecting: 0 * NaN = NaN",
                    "multiply_by_mask",
                    "padding",
                ),
                _cause(
                    "keys and values computed from padded slots and masked only in the "
                    "softmax, where weight 0 times an inf value is NaN",
                    "kpm_values_from_padding",
                    "padding",
                ),
            ),
        ),
        Property(
            "lanes_independent",
            "assert_lanes_independent",
            "a lane's outputs do not depend on other lanes or other samples: changing or "
            "emptying them changes nothing, and permuting lanes and samples permutes outputs",
            (
                _cause("statistics across lanes", "normalise_across_lanes", "lanes"),
                _cause(
                    "empty lanes imputed from their sample's real lanes",
                    "empty_lanes_take_sample_mean",
                    "lanes",
                ),
                _cause("lanes reordered and not restored", "sort_without_unsort", "lanes"),
                _cause("a head-major 3D mask", "repeat_head_order", "lanes"),
            ),
        ),
        Property(
            "gradients_isolated",
            "assert_gradients_isolated",
            "padded inputs get exactly zero gradient, no gradient is NaN, and no gradient flows "
            "from one lane's output to another lane's points",
            (
                _cause(
                    "NaN from fully masked rows, masked in the forward pass but not the backward",
                    "nan_grad_from_empty_rows",
                    "empty_lane",
                ),
                _cause("multiplying by a mask", "multiply_by_mask", "padding"),
                _cause("lanes that interact", "", "lanes"),
            ),
        ),
        Property(
            "gradients_ignore_padding",
            "assert_gradients_ignore_padding",
            "training with huge, inf or NaN values in padded slots (those of the data contract) "
            "gives every parameter the finite gradient it gets with zeros there",
            (
                _cause(
                    "a layer run on every slot and masked after it: the weight gradient sums "
                    "0 * NaN",
                    "linear_on_every_slot",
                    "padding",
                ),
            ),
        ),
        Property(
            "empty_lanes_zero",
            "assert_empty_lanes_zero",
            "(declared with empty_lanes='zero') every empty lane's lane_embedding is exactly 0, "
            "so a consumer may read all M lanes without a lane mask",
            (
                _cause(
                    "a bias or a learned token left in empty lanes", "empty_lane_bias", "empty_lane"
                ),
            ),
        ),
        Property(
            "devices_agree",
            "assert_devices_agree",
            "the encoder on CUDA gives what it gives on the CPU, within the tolerance rule",
            (
                _cause("a fast path taken on one device only", "cuda_only_fast_path"),
                _cause("device-dependent kernels with different mask conventions"),
            ),
        ),
    ]
}
"""Every property, in the order `lpim.testing.check_encoder` runs them."""


class PropertyError(AssertionError, Generic[ExampleT]):
    """Base of lpim's property failures: a property name, what was seen, and the example.

    Subclasses name their property registry (`properties`), the word that opens the
    message (`label`) and how to read the example's dtype; the message, the reproducer and
    their formatting live here once.

    Attributes:
        property_name: the property (a key of the subclass's `properties`).
        example: the (shrunk, when raised by a check) example that shows it.
        detail: what was seen: where, which output, how far off.
        reproducer: pasteable Python that re-raises this error (set by the check; a bare
            assert leaves it empty).
        dtype: the dtype the failure was seen at.
        error_ratio: the error on `example` as a fraction of the allowed one (0.0 for exact
            checks and crashes).
        largest_ratio: the largest error seen over every example the check drew for this
            property and dtype, shrunk ones included (set by the check), so that a bug whose
            shrunk example is small is never presented as rounding.
        report: the check's report, every row (set by the check; None for a bare assert).
        failures: every failure of the check, this one first (set by the check; `[self]`
            for a bare assert).
    """

    properties: ClassVar[dict[str, Property]] = {}
    label: ClassVar[str] = "property"
    report: CheckReport | None
    failures: list[PropertyError[Any]]

    def __init__(
        self, property_name: str, detail: str, example: ExampleT, error_ratio: float = 0.0
    ) -> None:
        self.property_name = property_name
        self.detail = detail
        self.example = example
        self.reproducer = ""
        self.dtype = self.example_dtype(example)
        self.error_ratio = error_ratio
        self.largest_ratio = error_ratio
        self.report = None
        self.failures = [self]
        super().__init__(self._message())

    @staticmethod
    def example_dtype(example: ExampleT) -> str:
        """The dtype of `example`'s float data, as `str(torch.dtype)`."""
        raise NotImplementedError

    @staticmethod
    def example_features(example: ExampleT) -> frozenset[str]:
        """What `example` has, in the words of `Cause.needs`: the usual causes shown are
        those that can produce a failure on it."""
        raise NotImplementedError

    def _message(self) -> str:
        prop = self.properties[self.property_name]
        causes = prop.causes_for(self.example_features(self.example))
        lines = [
            f"{self.label} {self.property_name!r} failed: {self.detail}",
            f"  the property: {prop.meaning}.",
        ]
        if causes:
            lines.append("  usual causes that fit this example:")
            lines += [f"  - {cause.describe()}" for cause in causes]
        else:
            lines.append(f"  no usual cause fits this example: see the gallery, {GALLERY}")
        if self.largest_ratio > max(self.error_ratio, 1.0) * 1.5:
            lines.append(
                f"  largest error seen: {self.largest_ratio:.3g}x the allowed one over every "
                f"example drawn (the shrunk example below shows {self.error_ratio:.3g}x)"
            )
        lines.append(f"  example: {self.example!r}")
        if self.reproducer:
            lines += ["  reproducer (paste into a file and run):", "", self.reproducer]
        others = self.failures[1:]
        if others:
            lines += ["", f"  {len(others)} more failure(s) in this check (each on .failures):"]
            lines += [f"  - {other.summary()}" for other in others]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: property, dtype and what was seen."""
        dtype = self.dtype.removeprefix("torch.")
        return f"{self.property_name} at {dtype}: {self.detail.splitlines()[0][:160]}"

    def refresh(self) -> None:
        """Rebuild the message after the check set attributes it shows."""
        self.args = (self._message(),)

    def attach_reproducer(self, source: str) -> None:
        """Set `reproducer` and add it to the message."""
        self.reproducer = source
        self.args = (self._message(),)

    def __str__(self) -> str:
        return self._message()


class EncoderPropertyError(PropertyError[LaneBatch]):
    """An encoder broke a property.

    Attributes:
        property_name: the property (a key of [`PROPERTIES`][lpim.testing.errors.PROPERTIES]).
        example: the (shrunk, when raised by `check_encoder`) [`LaneBatch`][lpim.LaneBatch].
        detail: what was seen: which lane, which output, how far off.
        reproducer: pasteable Python that re-raises this error (set by `check_encoder`; a
            bare assert leaves it empty).
        dtype: the dtype the failure was seen at (set by `check_encoder`).

    An exception raised by the encoder itself is wrapped as property `runs` with the
    original as `__cause__`.
    """

    properties = PROPERTIES

    @staticmethod
    def example_dtype(example: LaneBatch) -> str:
        """`str(example.points.dtype)`."""
        return str(example.points.dtype)

    @staticmethod
    def example_features(example: LaneBatch) -> frozenset[str]:
        """Lanes, padding, its layout, empty lanes, NaN/inf, float16 (see `Cause.needs`)."""
        b, m, _, _ = example.shape
        padded = ~example.point_mask
        found = {
            "lanes": b * m > 1,
            "padding": bool(padded.any()),
            "unaligned": bool(padded.any()) and example.layout != "right",
            "empty_lane": bool((~example.lane_mask).any()),
            "nonfinite": not bool(example.points.isfinite().all()),
            "half": example.points.dtype == torch.float16,
        }
        return frozenset(name for name, present in found.items() if present)
