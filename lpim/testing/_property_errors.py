"""The error a failed property raises: what was seen, the example, the usual causes that fit it."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import torch

from lpim._errors import LpimError
from lpim._property_registry import CONSUMER_PROPERTIES, GALLERY, PROPERTIES, Property
from lpim.batch import LaneBatch
from lpim.lane_set import LaneSet
from lpim.testing._report import CheckReport

ExampleT = TypeVar("ExampleT")
"""The type of a property's example: `lpim.LaneBatch` for encoders, `lpim.LaneSet` for
consumers."""

__all__ = ["EncoderPropertyError", "ExampleT", "LaneConsumerPropertyError", "PropertyError"]


class PropertyError(LpimError, AssertionError, Generic[ExampleT]):
    """Base of lpim's property failures: a property name, what was seen, and the example.

    Subclasses name their side of the property registry (`properties`), the word that opens the
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
        subject_features: what the code under check was seen to do (`{"attention"}` when it
            calls attention), found by the check by running it; None when unknown (a bare
            assert), in which case every cause that fits the example is shown.
    """

    __module__ = "lpim.testing"  # where users import it from

    properties: ClassVar[Mapping[str, Property]] = {}
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
        self.subject_features: frozenset[str] | None = None
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
        subject = self.subject_features
        seen = subject if subject is not None else frozenset({"attention"})
        causes = prop.causes_for(self.example_features(self.example) | seen)
        lines = [
            f"{self.label} {self.property_name!r} failed: {self.detail}",
            f"  the property: {prop.meaning}.",
        ]
        if causes:
            lines.append("  usual causes that fit this example:")
            lines += [f"  - {cause.with_link()}" for cause in causes]
        else:
            lines.append(f"  no usual cause fits this example: see the gallery, {GALLERY}")
        if self.largest_ratio > max(self.error_ratio, 1.0) * 1.5:
            lines.append(
                f"  largest error seen: {self.largest_ratio:.3g}x the allowed one over every "
                f"example drawn (the shrunk example below shows {self.error_ratio:.3g}x)"
            )
        lines.append(f"  example: {self.example!r}{self._run_as()}")
        if self.reproducer:
            lines += ["  reproducer (paste into a file and run):", "", self.reproducer]
        others = self.failures[1:]
        if others:
            lines += ["", f"  {len(others)} more failure(s) in this check (each on .failures):"]
            lines += [f"  - {other.summary()}" for other in others]
        return "\n".join(lines)

    def _run_as(self) -> str:
        """How the example was run when its data's dtype is not the failure's: float32
        inputs under `torch.autocast` at the row's dtype (never shown as a float32 row)."""
        held = self.example_dtype(self.example)
        if self.dtype == held:
            return ""
        row = self.dtype.removeprefix("torch.")
        kept = held.removeprefix("torch.")
        return f", run under torch.autocast at {row} (the row's dtype; its inputs stay {kept})"

    def summary(self) -> str:
        """One line: property, dtype and what was seen."""
        dtype = self.dtype.removeprefix("torch.")
        seen = textwrap.shorten(self.detail.splitlines()[0], 160, placeholder=" ...")
        return f"{self.property_name} at {dtype}: {seen}"

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
        property_name: the property (a key of [`PROPERTIES`][lpim.testing.PROPERTIES]).
        example: the (shrunk, when raised by `check_encoder`) [`LaneBatch`][lpim.LaneBatch].
        detail: what was seen: which lane, which output, how far off.
        reproducer: pasteable Python that re-raises this error (set by `check_encoder`; a
            bare assert leaves it empty).
        dtype: the dtype the failure was seen at (set by `check_encoder`).

    An exception raised by the encoder itself is wrapped as property `runs` with the
    original as `__cause__`.
    """

    __module__ = "lpim.testing"  # where users import it from

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


class LaneConsumerPropertyError(PropertyError[LaneSet]):
    """A lane-set consumer broke a property: the consumer-side sibling of
    [`EncoderPropertyError`][lpim.testing.EncoderPropertyError] (both are
    [`PropertyError`][lpim.testing.PropertyError]).

    Attributes:
        property_name: the property (a key of
            [`CONSUMER_PROPERTIES`][lpim.testing.CONSUMER_PROPERTIES]).
        example: the (shrunk, when raised by `check_lane_consumer`) [`LaneSet`][lpim.LaneSet].
        detail: what was seen: which output, which element, how far off.
        reproducer: pasteable Python that re-raises this error (set by `check_lane_consumer`;
            a bare assert leaves it empty).
        dtype: the dtype the failure was seen at.

    An exception raised by the consumer itself is wrapped as property `runs` with the
    original as `__cause__`.
    """

    __module__ = "lpim.testing"  # where users import it from

    properties = CONSUMER_PROPERTIES
    label = "lane-consumer property"

    @staticmethod
    def example_dtype(example: LaneSet) -> str:
        """`str(example.lane_embedding.dtype)`."""
        return str(example.lane_embedding.dtype)

    @staticmethod
    def example_features(example: LaneSet) -> frozenset[str]:
        """Several lanes, padded lanes, a sample without a lane (see `Cause.needs`)."""
        _, m, _ = example.shape
        found = {
            "lanes": m > 1,
            "padded_lanes": bool((~example.lane_mask).any()),
            "empty_sample": bool((~example.lane_mask.any(-1)).any()) if m else True,
        }
        return frozenset(name for name, present in found.items() if present)
