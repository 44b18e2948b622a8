"""Comparing two outputs under the tolerance rule: the one comparator every property uses.

Encoder properties compare lane and point rows (`[K, C]`), consumer properties whole output
tensors of any shape; both ask the same question, here: how far is `actual` from `expected`, as a
fraction of the error the rule of `lpim.tolerance` allows, and where is it worst. The caller
raises its own side's `PropertyError` with `Mismatch.sentence`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lpim.tolerance import Tolerance

__all__ = ["Mismatch", "first_index", "largest_error", "reference_drift", "same_values"]


@dataclass(frozen=True)
class Mismatch:
    """The element where `actual` is furthest past the rule.

    Attributes:
        where: which output element, in the caller's words (e.g. `"lane (b=0, m=1) with 3
            real points: lane_embedding[4]"`).
        got: the element of `actual`.
        want: the element of `expected`.
        allowed: the error the rule allows there.
        ratio: `|got - want| / allowed` (inf where one is NaN or inf and the other is not).
        dtype: the dtype the rule was taken at.
    """

    where: str
    got: float
    want: float
    allowed: float
    ratio: float
    dtype: torch.dtype

    def sentence(self, what: str) -> str:
        """`"<where> is <got> <what> but <want> is expected (allowed error ..., Nx over)"`;
        `what` says under which change `got` was seen (e.g. `"with huge padding"`)."""
        times = "inf" if math.isinf(self.ratio) else f"{self.ratio:.3g}"
        return (
            f"{self.where} is {self.got:.6g} {what} but {self.want:.6g} is expected "
            f"(allowed error {self.allowed:.3g} at {self.dtype}, {times}x over)"
        )


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape, dtype, device and values, NaN equal to NaN (padded slots may hold NaN):
    whether code under check left an input it was given as it was."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    with torch.no_grad():
        equal = a == b
        if a.is_floating_point() or a.is_complex():
            equal = equal | (a.isnan() & b.isnan())
        return bool(equal.all())


def first_index(found: torch.Tensor) -> tuple[int, ...]:
    """The index of the first True element of the bool tensor `found` (which has one)."""
    flat = found.flatten().nonzero()[0, 0]
    return tuple(int(i) for i in torch.unravel_index(flat, found.shape))


def reference_drift(expected: torch.Tensor, expected_64: torch.Tensor | None) -> float:
    """`max |expected - expected_64|` over elements finite in both: how far the reference
    itself is from float64 (0.0 without a float64 reference)."""
    if expected_64 is None:
        return 0.0
    finite = expected.isfinite() & expected_64.isfinite()
    gap = (expected.double() - expected_64.double()).abs()[finite]
    return float(gap.max()) if gap.numel() else 0.0


def largest_error(
    rule: Tolerance,
    actual: torch.Tensor,
    expected: torch.Tensor,
    expected_64: torch.Tensor | None,
    where: Callable[[tuple[int, ...]], str],
) -> tuple[float, Mismatch | None]:
    """The largest error ratio of `actual` against `expected` (same shape), and the worst
    element when it is past the rule (ratio > 1), else None.

    Args:
        rule: the tolerance rule at the compared dtype.
        actual: what the code under check gave.
        expected: what it should have given (same shape).
        expected_64: the float64 reference of `expected`, or None (the floors alone apply).
        where: names an element by its index, for the message.
    """
    if actual.numel() == 0:
        return 0.0, None
    drift = reference_drift(expected, expected_64)
    ratio = rule.error_ratio(actual, expected, drift)
    largest = float(ratio.max())
    if largest <= 1.0:
        return largest, None
    index = tuple(int(i) for i in torch.unravel_index(ratio.argmax(), ratio.shape))
    allowed = float(rule.allowed(expected[index].reshape(1), drift).max())
    return largest, Mismatch(
        where(index), float(actual[index]), float(expected[index]), allowed, largest, rule.dtype
    )
