"""The properties by name, what each means, and the error a failed one raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from lpim.batch import LaneBatch
from lpim.testing.report import CheckReport

ExampleT = TypeVar("ExampleT")


@dataclass(frozen=True)
class Property:
    """One property every encoder must hold.

    Attributes:
        name: its name in reports, ``--property`` and ``EncoderPropertyError.property_name``.
        assert_name: the ``lpim.testing`` function that checks it on one batch.
        meaning: what it says, in one sentence.
        usual_causes: the bug classes (``lpim.zoo`` names) that usually break it.
    """

    name: str
    assert_name: str
    meaning: str
    usual_causes: str


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in [
        Property(
            "runs",
            "(any)",
            "the encoder runs on every valid batch and returns the protocol's output: a tensor "
            "[B, M, C] or an object with lane_embedding [B, M, C] (and point_features "
            "[B, M, N, C]) on the input's device",
            "a 3D attn_mask with B*M rows instead of B*M*num_heads (seed_crash_3d_mask); a fill "
            "value that overflows the dtype (fill_minus_1e9_fp16); an empty lane or batch the "
            "code never expected",
        ),
        Property(
            "deterministic",
            "assert_deterministic",
            "the encoder gives the same output when called twice on the same batch (a "
            "reliability check: a nondeterministic encoder cannot be held to any other property)",
            "dropout left active (a module wrapped in a plain function and never put in eval "
            "mode, or F.dropout(training=True)); random numbers drawn in forward; state kept "
            "between calls",
        ),
        Property(
            "inputs_unchanged",
            "(any)",
            "the encoder does not write into points or point_mask (checked after every call: "
            "the checker hands the encoder copies)",
            "in-place ops on the inputs: points.masked_fill_, points[~mask] = 0, points /= "
            "range, point_mask &= ...",
        ),
        Property(
            "deadline",
            "(any)",
            "each call of the encoder on one batch finishes within check_encoder's deadline "
            "(timed twice before it counts)",
            "a Python loop over lanes or points; a per-call copy of the weights; a host sync "
            "per lane",
        ),
        Property(
            "finite",
            "assert_finite",
            "no NaN or inf in any output for finite real points, including empty lanes, empty "
            "samples and all-empty batches",
            "a fully masked attention row with need_weights=True (empty_lane_nan_need_weights); "
            "NaN as an 'empty' marker (nan_sentinel_empty_lanes); dividing by a zero count",
        ),
        Property(
            "matches_unpadded",
            "assert_matches_unpadded",
            "each real lane's output (and its real points' features) equals the same encoder "
            "run on that lane alone, unpadded, as points [1, 1, n, D]",
            "a head-major 3D mask (repeat_head_order); inverted polarity (library_mask_as_kpm, "
            "mha_polarity_in_sdpa); a missing or shifted query column; slot-index positions; "
            "pooling over slots instead of real points; lanes sorted and never unsorted",
        ),
        Property(
            "ignores_padding",
            "assert_ignores_padding",
            "whatever finite values padded slots hold (zeros, values in the real coordinates' "
            "range, the lane's last point repeated and, unless the data contract says "
            "garbage='finite', huge values) changes no output",
            "a finite additive fill such as -1e4 that huge padded scores overcome "
            "(additive_minus_1e4); pooling or attending over padded slots; an unmasked max-pool",
        ),
        Property(
            "ignores_nonfinite_padding",
            "assert_ignores_nonfinite_padding",
            "NaN or inf in padded slots changes no output (your loader must never write NaN/inf "
            "in padded slots, or the encoder must select real points before its first layer)",
            "multiplying by the mask instead of selecting (multiply_by_mask: 0 * NaN = NaN); "
            "keys and values computed from padded slots and masked only in the softmax, where "
            "weight 0 times an inf value is NaN (kpm_values_from_padding)",
        ),
        Property(
            "lanes_independent",
            "assert_lanes_independent",
            "a lane's outputs do not depend on other lanes or other samples: changing or "
            "emptying them changes nothing, and permuting lanes and samples permutes outputs",
            "statistics across lanes (normalise_across_lanes, empty_lanes_take_sample_mean); "
            "lanes reordered and not restored (sort_without_unsort)",
        ),
        Property(
            "gradients_isolated",
            "assert_gradients_isolated",
            "padded inputs get exactly zero gradient, no gradient is NaN, and no gradient flows "
            "from one lane's output to another lane's points",
            "NaN from fully masked rows that is masked in the forward pass but not the backward "
            "(nan_grad_from_empty_rows); multiplying by a mask",
        ),
        Property(
            "gradients_ignore_padding",
            "assert_gradients_ignore_padding",
            "training with huge, inf or NaN values in padded slots (those of the data contract) "
            "gives every parameter the finite gradient it gets with zeros there",
            "a layer run on every slot and masked after it (linear_on_every_slot: the weight "
            "gradient sums 0 * NaN); 0 * NaN in any backward pass over padded slots",
        ),
        Property(
            "empty_lanes_zero",
            "assert_empty_lanes_zero",
            "(declared with empty_lanes='zero') every empty lane's lane_embedding is exactly 0, "
            "so a consumer may read all M lanes without a lane mask",
            "a bias or a learned token left in empty lanes (empty_lane_bias); the output of a "
            "layer on zeros, mlp(0), where no point was",
        ),
        Property(
            "devices_agree",
            "assert_devices_agree",
            "the encoder on CUDA gives what it gives on the CPU, within the tolerance rule",
            "a fast path taken on one device only (cuda_only_fast_path); device-dependent "
            "kernels with different mask conventions",
        ),
    ]
}
"""Every property, in the order :func:`~lpim.testing.check_encoder` runs them."""


class PropertyError(AssertionError, Generic[ExampleT]):
    """Base of lpim's property failures: a property name, what was seen, and the example.

    Subclasses name their property registry (:attr:`properties`), the word that opens the
    message (:attr:`label`) and how to read the example's dtype; the message, the reproducer and
    their formatting live here once.

    Attributes:
        property_name: the property (a key of the subclass's `properties`).
        example: the (shrunk, when raised by a check) example that shows it.
        detail: what was seen: where, which output, how far off.
        reproducer: pasteable Python that re-raises this error (set by the check; a bare
            assert leaves it empty).
        dtype: the dtype the failure was seen at.
        error_ratio: the error on ``example`` as a fraction of the allowed one (0.0 for exact
            checks and crashes).
        largest_ratio: the largest error seen over every example the check drew for this
            property and dtype, shrunk ones included (set by the check), so that a bug whose
            shrunk example is small is never presented as rounding.
        report: the check's report, every row (set by the check; None for a bare assert).
        failures: every failure of the check, this one first (set by the check; ``[self]``
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
        """The dtype of ``example``'s float data, as ``str(torch.dtype)``."""
        raise NotImplementedError

    def _message(self) -> str:
        prop = self.properties[self.property_name]
        lines = [
            f"{self.label} {self.property_name!r} failed: {self.detail}",
            f"  the property: {prop.meaning}.",
            f"  usual causes: {prop.usual_causes}.",
        ]
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
        """Set :attr:`reproducer` and add it to the message."""
        self.reproducer = source
        self.args = (self._message(),)

    def __str__(self) -> str:
        return self._message()


class EncoderPropertyError(PropertyError[LaneBatch]):
    """An encoder broke a property.

    Attributes:
        property_name: the property (a key of :data:`PROPERTIES`).
        example: the (shrunk, when raised by ``check_encoder``) :class:`~lpim.LaneBatch`.
        detail: what was seen: which lane, which output, how far off.
        reproducer: pasteable Python that re-raises this error (set by ``check_encoder``; a
            bare assert leaves it empty).
        dtype: the dtype the failure was seen at (set by ``check_encoder``).

    An exception raised by the encoder itself is wrapped as property ``runs`` with the
    original as ``__cause__``.
    """

    properties = PROPERTIES

    @staticmethod
    def example_dtype(example: LaneBatch) -> str:
        """``str(example.points.dtype)``."""
        return str(example.points.dtype)
