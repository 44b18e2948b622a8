"""Hypothesis strategies that draw padded lane batches.

:func:`lane_batches` draws a :class:`~lpim.LaneBatch`; :func:`padded_tensors` draws the same data
as a ``(points, point_mask)`` tuple for users with their own batch types. Every knob takes an int
(or a value), a ``(min, max)`` range, or a Hypothesis strategy.

Everything is drawn from Hypothesis' own primitives (``integers``, ``floats``, ``sampled_from``,
``hypothesis.extra.numpy.arrays``), so the database replays failures and examples shrink toward
the simplest batch: 1 sample, 1 lane, 1 point, coordinates 0, every slot real, right padding,
zeros in padded slots.

Example:
    >>> from hypothesis import given
    >>> from lpim.strategies import lane_batches
    >>> @given(lane_batches(num_lanes=(1, 50), layout="left", garbage="nan"))
    ... def test_my_encoder(batch):
    ...     ...
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra.numpy import arrays

from lpim.batch import LAYOUTS, LaneBatch

GARBAGE_KINDS = ("zeros", "large", "inf", "nan")
"""What padded slots may hold: exact zeros, huge finite values, +-inf, NaN."""

T = TypeVar("T")

# How often a lane, a sample, a whole batch is drawn empty: often enough that a few dozen
# examples see each case, rarely enough that most examples still have real lanes to compare.
_EMPTY_LANE = [False, False, False, True]
_EMPTY_SAMPLE = [False] * 7 + [True]
_EMPTY_BATCH = [False] * 15 + [True]


@st.composite
def lane_batches(
    draw: st.DrawFn,
    batch_size: int | tuple[int, int] | st.SearchStrategy[int] = (1, 3),
    num_lanes: int | tuple[int, int] | st.SearchStrategy[int] = (1, 6),
    num_points: int | tuple[int, int] | st.SearchStrategy[int] = (1, 8),
    point_dim: int | tuple[int, int] | st.SearchStrategy[int] = 2,
    layout: str | Sequence[str] | st.SearchStrategy[str] | None = None,
    garbage: str | Sequence[str] | st.SearchStrategy[str] | None = "zeros",
    empty_lanes: bool = True,
    empty_samples: bool = True,
    all_empty: bool = True,
    dtype: torch.dtype | st.SearchStrategy[torch.dtype] = torch.float32,
    device: str | torch.device | st.SearchStrategy[str | torch.device] = "cpu",
    coord_range: float = 50.0,
) -> LaneBatch:
    """A Hypothesis strategy of padded :class:`~lpim.LaneBatch` es.

    Args:
        batch_size: ``B``, samples per batch.
        num_lanes: ``M``, lane slots per sample.
        num_points: ``N``, point slots per lane.
        point_dim: ``D``, coordinates per point.
        layout: ``"right"``, ``"left"``, ``"scattered"``, a list of them, or None for any
            (shrinks toward ``"right"``).
        garbage: what padded slots hold: ``"zeros"``, ``"large"`` (up to 1e30, clipped to the
            dtype's largest finite value), ``"inf"`` (+-inf), ``"nan"``, a list, or None for any
            (shrinks toward ``"zeros"``).
        empty_lanes: draw lanes with no real point.
        empty_samples: draw samples with no real lane (needs ``empty_lanes``).
        all_empty: draw batches with no real point at all (needs ``empty_samples``).
        dtype: of ``points`` (a floating dtype, or a strategy of them).
        device: of both tensors.
        coord_range: real coordinates are finite and lie in ``[-coord_range, coord_range]``.

    Returns:
        A strategy; each example is a valid ``LaneBatch`` (real points finite, mask bool).
    """
    b = draw(_ints(batch_size, "batch_size", low=0))
    m = draw(_ints(num_lanes, "num_lanes", low=0))
    n = draw(_ints(num_points, "num_points", low=0))
    d = draw(_ints(point_dim, "point_dim", low=1))
    chosen_layout = draw(_choice(layout, LAYOUTS, "layout"))
    chosen_garbage = draw(_choice(garbage, GARBAGE_KINDS, "garbage"))
    chosen_dtype = draw(_value(dtype))
    chosen_device = torch.device(draw(_value(device)))  # type: ignore[call-overload]
    if not (isinstance(chosen_dtype, torch.dtype) and chosen_dtype.is_floating_point):
        raise InvalidArgument(f"dtype must be a floating torch.dtype; got {chosen_dtype!r}")
    if not (coord_range > 0 and np.isfinite(coord_range)):
        raise InvalidArgument(f"coord_range must be positive and finite; got {coord_range!r}")

    # The mask: one bit per slot (shrinking toward True: every slot real), then emptiness drawn
    # per lane, per sample and per batch so that each case is common, then the layout.
    real_bits = draw(arrays(np.bool_, (b, m, n), elements=st.booleans().map(operator.not_)))
    lane_empty = draw(arrays(np.bool_, (b, m), elements=st.sampled_from(_EMPTY_LANE)))
    sample_empty = draw(arrays(np.bool_, (b,), elements=st.sampled_from(_EMPTY_SAMPLE)))
    batch_empty = draw(st.sampled_from(_EMPTY_BATCH))
    if not empty_lanes:
        lane_empty[:] = False
        real_bits[..., 0] |= ~real_bits.any(axis=-1)  # every lane keeps at least one point
    if not (empty_lanes and empty_samples):
        sample_empty[:] = False
    if not (empty_lanes and empty_samples and all_empty):
        batch_empty = False
    keep = ~lane_empty & ~sample_empty[:, None] & (not batch_empty)  # [B, M]
    real_bits &= keep[..., None]
    if empty_lanes and empty_samples and not all_empty and b * m * n and not real_bits.any():
        real_bits[0, 0, 0] = True
    if empty_lanes and not empty_samples and m * n:
        lonely = ~real_bits.any(axis=(1, 2))  # [B] samples left without a real lane
        real_bits[lonely, 0, 0] = True
    point_mask = _apply_layout(real_bits, chosen_layout)  # [B, M, N]

    # Real coordinates, bounded; padded slots get the garbage.
    coords = st.floats(-coord_range, coord_range, allow_nan=False, allow_infinity=False)
    real = draw(arrays(np.float64, (b, m, n, d), elements=coords))
    junk = draw(arrays(np.float64, (b, m, n, d), elements=_garbage(chosen_garbage, chosen_dtype)))
    points = np.where(point_mask[..., None], real, junk)  # [B, M, N, D]
    return LaneBatch(
        torch.from_numpy(points).to(dtype=chosen_dtype, device=chosen_device),
        torch.from_numpy(point_mask).to(chosen_device),
    )


def padded_tensors(**knobs: Any) -> st.SearchStrategy[tuple[torch.Tensor, torch.Tensor]]:
    """The same draws as :func:`lane_batches` (same knobs), as ``(points, point_mask)`` tuples.

    ``points [B, M, N, D]`` floating, ``point_mask [B, M, N]`` bool, True = real point.
    """
    return lane_batches(**knobs).map(lambda batch: (batch.points, batch.point_mask))


# -- knob handling ---------------------------------------------------------------------------------


def _ints(knob: object, name: str, *, low: int) -> st.SearchStrategy[int]:
    if isinstance(knob, st.SearchStrategy):
        return knob
    if isinstance(knob, bool) or not isinstance(knob, int | tuple):
        raise InvalidArgument(
            f"{name} must be an int, a (min, max) tuple or a strategy; got {knob!r}"
        )
    lo, hi = (knob, knob) if isinstance(knob, int) else knob
    if not (isinstance(lo, int) and isinstance(hi, int) and low <= lo <= hi):
        raise InvalidArgument(f"{name} must satisfy {low} <= min <= max; got {knob!r}")
    return st.integers(lo, hi)


def _choice(knob: object, allowed: Sequence[str], name: str) -> st.SearchStrategy[str]:
    if isinstance(knob, st.SearchStrategy):
        return knob.map(lambda value: _check_choice(value, allowed, name))
    options: list[object]
    if knob is None or knob == "any":
        options = list(allowed)
    elif isinstance(knob, str):
        options = [knob]
    elif isinstance(knob, Sequence):
        options = list(knob)
    else:
        raise InvalidArgument(f"{name} must be a string, a list or a strategy; got {knob!r}")
    for option in options:
        _check_choice(option, allowed, name)
    return st.sampled_from([str(option) for option in options])


def _check_choice(value: object, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise InvalidArgument(f"{name} must be one of {tuple(allowed)} (or 'any'); got {value!r}")
    return str(value)


def _value(knob: T | st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    return knob if isinstance(knob, st.SearchStrategy) else st.just(knob)


def _garbage(kind: str, dtype: torch.dtype) -> st.SearchStrategy[float]:
    biggest = min(1e30, float(torch.finfo(dtype).max))
    values = {
        "zeros": [0.0],
        "large": [biggest, -biggest, 1e4, -3e4],
        "inf": [float("inf"), float("-inf")],
        "nan": [float("nan")],
    }[kind]
    return st.sampled_from(values)


def _apply_layout(real_bits: np.ndarray, layout: str) -> np.ndarray:
    """Keep each lane's count of real points; place them first, last, or where drawn."""
    if layout == "scattered":
        return real_bits
    n = real_bits.shape[-1]
    counts = real_bits.sum(axis=-1, keepdims=True)  # [B, M, 1]
    slot = np.arange(n)
    placed: np.ndarray = slot < counts if layout == "right" else slot >= n - counts
    return placed
