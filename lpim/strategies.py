"""Hypothesis strategies that draw padded lane batches.

[`lane_batches`][lpim.strategies.lane_batches] draws a [`LaneBatch`][lpim.LaneBatch];
[`padded_tensors`][lpim.strategies.padded_tensors] draws the same data
as a `(points, point_mask)` tuple for users with their own batch types.
[`lane_sets`][lpim.strategies.lane_sets] draws
a [`LaneSet`][lpim.LaneSet], the input of a lane-set consumer (`lane_embedding [B, M, C]`,
`lane_mask [B, M]` and the consumer's other inputs). Every knob takes an int
(or a value), a `(min, max)` range, or a Hypothesis strategy.

Everything is drawn from Hypothesis' own primitives (`integers`, `floats`, `sampled_from`,
`hypothesis.extra.numpy.arrays`), so the database replays failures and examples shrink toward
the simplest batch: 1 sample, 1 lane, 1 point, coordinates 0, every slot real, right padding,
zeros in padded slots.

Example:
    ```python
    >>> from hypothesis import given
    >>> from lpim.strategies import lane_batches
    >>> @given(lane_batches(num_lanes=(1, 50), layout="left", garbage="nan"))
    ... def test_my_encoder(batch):
    ...     ...
    ```
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra.numpy import arrays

from lpim._errors import UsageValueError
from lpim._validation import (
    WHY_BATCH_VALUES,
    WHY_LANE_SET_VALUES,
    check_bool,
    check_callable,
    check_choice,
    check_device,
    check_floating_dtype,
    check_int,
    check_positive_number,
    check_real_number,
    check_size,
    extent,
)
from lpim.batch import LAYOUTS, LaneBatch
from lpim.lane_set import LaneSet

__all__ = [
    "GARBAGE_CONTRACTS",
    "GARBAGE_KINDS",
    "MAX_DRAWN_VALUES",
    "NONFINITE_GARBAGE_KINDS",
    "OtherInputs",
    "bev_maps",
    "bev_queries",
    "garbage_fills",
    "lane_batches",
    "lane_sets",
    "padded_tensors",
    "repeat_last_point",
    "with_other_inputs",
]

GARBAGE_KINDS = ("zeros", "finite", "repeat_last", "large", "inf", "nan")
"""What padded slots may hold: exact zeros; finite values within the real coordinates' range;
each lane's last real point repeated (zeros in empty lanes), as many loaders pad; huge finite
values; +-inf; NaN."""

NONFINITE_GARBAGE_KINDS = ("inf", "nan")
"""The kinds of `GARBAGE_KINDS` that are not finite."""

GARBAGE_CONTRACTS: dict[str, tuple[str, ...]] = {
    "any": GARBAGE_KINDS,
    "finite": ("zeros", "finite", "repeat_last"),
    "any_finite": ("zeros", "finite", "repeat_last", "large"),
    "zeros": ("zeros",),
    "repeat_last": ("repeat_last",),
}
"""What a data contract's `garbage=` allows in padded slots, as kinds of `GARBAGE_KINDS`:
`"any"` (huge, inf and NaN too), `"finite"` (finite values within the real coordinates'
range), `"any_finite"` (finite values of any magnitude, huge ones too: a loader that re-frames
zero padding with the real points), `"zeros"`, `"repeat_last"` (each lane's last real point,
zeros in empty lanes)."""

_T = TypeVar("_T")

MAX_DRAWN_VALUES = 2**22
"""The most values (coordinates, embedding entries, query values) one drawn example may hold:
sizes drawn beyond it raise `InvalidArgument` naming them, rather than running out of memory
(4M float64 values are 32 MiB per array, and an example builds a few)."""


def _check_drawn_size(where: str, **sizes: int) -> None:
    """The `extent` of the drawn `sizes` (their product, empty axes aside) is at most
    `MAX_DRAWN_VALUES`, or InvalidArgument: sizes too large at `batch_size=1` are too large at
    `batch_size=0` too, where numpy would refuse the empty array's strides."""
    total = extent(list(sizes.values()))
    if total > MAX_DRAWN_VALUES:
        names = " * ".join(sizes)
        values = " * ".join(str(v) for v in sizes.values())
        reach = f", {total} with the empty axes set aside" if 0 in sizes.values() else f" = {total}"
        lower = ", ".join(name for name, size in sizes.items() if size != 0)
        raise InvalidArgument(
            f"{where}: {names} must be at most {MAX_DRAWN_VALUES} values per example; drew "
            f"{values}{reach} (lower {lower})"
        )


# How often a lane, a sample, a whole batch is drawn empty: often enough that a few dozen
# examples see each case, rarely enough that most examples still have real lanes to compare.
_EMPTY_LANE = [False, False, False, True]
_EMPTY_SAMPLE = [False] * 7 + [True]
_EMPTY_BATCH = [False] * 15 + [True]


def _samples_and_batch_flag(
    draw: st.DrawFn,
    lane: st.SearchStrategy[_T],
    b: int,
    m: int,
    empty_samples: bool,
    all_empty: bool,
) -> tuple[list[tuple[bool, list[_T]]], bool]:
    """Draw `b` samples of `m` lanes each, with a per-sample "drawn empty" flag, then a
    whole-batch "empty" flag.

    Each sample's draws are contiguous so the shrinker can delete them as a block; the flags
    shrink toward False (real). Shared by [`lane_batches`][lpim.strategies.lane_batches] and
    [`lane_sets`][lpim.strategies.lane_sets].
    """
    samples = draw(_samples_strategy(lane, b, m, empty_samples))
    batch_empty = draw(st.sampled_from(_EMPTY_BATCH)) if empty_samples and all_empty else False
    return samples, batch_empty


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
    min_points: int = 1,
) -> LaneBatch:
    """A Hypothesis strategy of padded [`LaneBatch`][lpim.LaneBatch] es.

    Args:
        batch_size: `B`, samples per batch.
        num_lanes: `M`, lane slots per sample.
        num_points: `N`, point slots per lane.
        point_dim: `D`, coordinates per point.
        layout: `"right"`, `"left"`, `"contiguous"` (one run of real points, padding at
            either end or both), `"scattered"`, a list of them, or None for any (shrinks toward
            `"right"`).
        garbage: what padded slots hold: `"zeros"`, `"finite"` (finite values within
            `[-coord_range, coord_range]`), `"repeat_last"` (each lane's last real point;
            zeros in empty lanes), `"large"` (up to 1e30, clipped to the dtype's largest
            finite value), `"inf"` (+-inf), `"nan"`, a list, or None (or `"any"`) for any
            (shrinks toward `"zeros"`).
        empty_lanes: draw lanes with no real point.
        empty_samples: draw samples with no real lane (needs `empty_lanes`).
        all_empty: draw batches with no real point at all (needs `empty_samples`).
        dtype: of `points` (a floating dtype, or a strategy of them).
        device: of both tensors.
        coord_range: real coordinates are finite and lie in `[-coord_range, coord_range]`.
        min_points: the fewest real points a non-empty lane has (lanes of fewer slots than this
            are drawn empty); the low end of a `num_points` range is raised to it.

    Returns:
        A strategy; each example is a valid `LaneBatch` (real points finite, mask bool).

    Raises:
        hypothesis.errors.InvalidArgument: when drawing, for any knob outside what is
            documented here (a negative or reversed range, an unknown layout or garbage kind,
            a non-floating dtype, a device torch does not know, is not available, or the
            `meta` device, which holds no values; a non-positive or non-finite
            `coord_range`; a non-bool flag; drawn sizes of more than `MAX_DRAWN_VALUES`
            coordinates), naming the knob, what it expects and what came. Values drawn from
            a strategy knob are checked the same way.
    """
    _check_flags(empty_lanes=empty_lanes, empty_samples=empty_samples, all_empty=all_empty)
    _positive(coord_range, "coord_range")
    if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 1:
        raise InvalidArgument(f"min_points must be an int >= 1; got {min_points!r}")
    b = draw(_ints(batch_size, "batch_size", low=0))
    m = draw(_ints(num_lanes, "num_lanes", low=0))
    n = draw(_ints(_at_least(num_points, min_points), "num_points", low=0))
    d = draw(_ints(point_dim, "point_dim", low=1))
    # the limit sets empty axes aside (extent): lanes of no point slot are drawn too
    _check_drawn_size("lane_batches", batch_size=b, num_lanes=m, num_points=n, point_dim=d)
    chosen_layout = draw(_choice(layout, LAYOUTS, "layout"))
    chosen_garbage = draw(_choice(garbage, GARBAGE_KINDS, "garbage"))
    chosen_dtype = _dtype(draw(_value(dtype)))
    chosen_device = _device(draw(_value(device)), why_data=WHY_BATCH_VALUES)

    # The mask, drawn so that it shrinks: per lane the number of padded slots (shrinking toward 0,
    # every slot real) and whether the lane is drawn empty, per sample and per batch whether it
    # is, so that each case is common; then the layout. Counts keep their meaning when the
    # shrinker lowers N (one bit per slot would realign and lose the padded slot), and each
    # lane's and each sample's draws are contiguous, so the shrinker can delete or reorder them
    # as a block: a batch with padding shrinks to 1 sample, 1 lane, 1 point.
    if not empty_lanes and n == 0 and b * m:
        raise InvalidArgument(
            "empty_lanes=False needs num_points >= 1 (a lane with no point slot is empty); "
            f"drew num_points={n} with {b * m} lane(s)"
        )
    if not empty_lanes and 0 < n < min_points and b * m:
        raise InvalidArgument(
            f"empty_lanes=False needs num_points >= min_points = {min_points}; drew num_points={n}"
        )
    scattered = chosen_layout == "scattered"
    contiguous = chosen_layout == "contiguous"
    # With min_points 1 an all-padded count is one more way to draw an empty lane (the draws
    # lpim always made); above it, empty lanes come from the flag alone.
    most_padded = n if empty_lanes and min_points == 1 else max(n - min_points, 0)
    lane = _lane_strategy(most_padded, empty_lanes, scattered, contiguous, n)
    samples, batch_empty = _samples_and_batch_flag(
        draw, lane, b, m, empty_lanes and empty_samples, all_empty
    )
    counts = np.zeros((b, m), dtype=np.int64)  # [B, M] real points per lane
    keys = np.zeros((b, m, n), dtype=np.int64)  # [B, M, N] where scattered lanes put them
    for i, (sample_empty, lanes) in enumerate(samples):
        for j, (padded, lane_empty, lane_keys) in enumerate(lanes):
            if not (batch_empty or sample_empty or lane_empty or n < min_points):
                counts[i, j] = n - padded
            if lane_keys is not None and n:
                keys[i, j] = lane_keys
    fewest = min(min_points, n)
    if empty_lanes and empty_samples and not all_empty and b * m * n and not counts.any():
        counts[0, 0] = fewest
    if empty_lanes and not empty_samples and m * n:
        counts[~counts.any(axis=1), 0] = fewest  # samples left without a real lane get one

    # Real coordinates, bounded; padded slots get the garbage.
    real = draw(_float_arrays((b, m, n, d), coord_range))
    point_mask = _apply_layout(counts, n, chosen_layout, keys)  # [B, M, N]
    if chosen_garbage == "repeat_last":
        junk = repeat_last_point(real, point_mask)
    elif chosen_garbage == "finite":
        junk = draw(_float_arrays((b, m, n, d), coord_range))
    else:
        garbage_values = _garbage_values(chosen_garbage, chosen_dtype)
        junk = (
            np.full((b, m, n, d), garbage_values[0])  # one possible value: nothing to draw
            if len(garbage_values) == 1
            else draw(_sampled_arrays((b, m, n, d), tuple(garbage_values)))
        )
    points = np.where(point_mask[..., None], real, junk)  # [B, M, N, D]
    return LaneBatch(
        torch.from_numpy(points).to(dtype=chosen_dtype, device=chosen_device),
        torch.from_numpy(point_mask).to(chosen_device),
    )


# The strategies a draw builds, made once per shape and kept: building a strategy and
# validating it on its first draw cost more than most draws (same draws, same shrinking).
_STRATEGY_CACHE_SIZE = 512


@functools.lru_cache(maxsize=_STRATEGY_CACHE_SIZE)
def _lane_strategy(
    most_padded: int, empty_lanes: bool, scattered: bool, contiguous: bool, n: int
) -> st.SearchStrategy[tuple[int, bool, list[int] | None]]:
    """One lane's draws: padded slots, whether drawn empty, and where its real points go."""
    return st.tuples(
        st.integers(0, most_padded),  # padded slots (all of them: an empty lane)
        st.sampled_from(_EMPTY_LANE) if empty_lanes else st.just(False),
        # scattered: real points take the slots with the smallest keys, ties in slot order (so
        # the keys shrink toward right padding)
        # contiguous: the run of real points starts this many slots in (at most the padding;
        # shrinks toward 0, right padding)
        st.lists(st.integers(0, n), min_size=n, max_size=n)
        if scattered
        else st.lists(st.integers(0, n), min_size=1, max_size=1)
        if contiguous
        else st.just(None),
    )


@functools.lru_cache(maxsize=_STRATEGY_CACHE_SIZE)
def _samples_strategy(
    lane: st.SearchStrategy[_T], b: int, m: int, empty_samples: bool
) -> st.SearchStrategy[list[tuple[bool, list[_T]]]]:
    """`b` samples of `m` lanes, each with its "drawn empty" flag."""
    sample = st.tuples(
        st.sampled_from(_EMPTY_SAMPLE) if empty_samples else st.just(False),
        st.lists(lane, min_size=m, max_size=m),
    )
    return st.lists(sample, min_size=b, max_size=b)


@functools.lru_cache(maxsize=_STRATEGY_CACHE_SIZE)
def _float_arrays(shape: tuple[int, ...], bound: float) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of `shape`, finite, in `[-bound, bound]`."""
    values = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    return arrays(np.float64, shape, elements=values)


@functools.lru_cache(maxsize=_STRATEGY_CACHE_SIZE)
def _sampled_arrays(
    shape: tuple[int, ...], values: tuple[float, ...]
) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of `shape` whose entries are drawn from `values`."""
    return arrays(np.float64, shape, elements=st.sampled_from(values))


_STRATEGY_CACHES = (_lane_strategy, _samples_strategy, _float_arrays, _sampled_arrays)


def repeat_last_point(points: np.ndarray, point_mask: np.ndarray) -> np.ndarray:
    """`points [B, M, N, D]` with every slot set to its lane's last real point (in slot
    order; zeros for a lane with none): what a loader that pads by repetition writes.

    Only the padded slots of the result are meant to be used.
    """
    n = point_mask.shape[-1]
    slot = np.arange(n)
    last = np.where(point_mask, slot, -1).max(axis=-1)  # [B, M]; -1: empty lane
    picked = np.take_along_axis(points, np.maximum(last, 0)[..., None, None], axis=2)  # [B,M,1,D]
    picked = np.where((last >= 0)[..., None, None], picked, 0.0)
    repeated: np.ndarray = np.broadcast_to(picked, points.shape).copy()
    return repeated


def padded_tensors(**knobs: Any) -> st.SearchStrategy[tuple[torch.Tensor, torch.Tensor]]:
    """The same draws as [`lane_batches`][lpim.strategies.lane_batches] (same knobs), as
    `(points, point_mask)` tuples.

    `points [B, M, N, D]` floating, `point_mask [B, M, N]` bool, True = real point.
    """
    return lane_batches(**knobs).map(lambda batch: (batch.points, batch.point_mask))


# -- knob handling ---------------------------------------------------------------------------------


def _ints(knob: object, name: str, *, low: int) -> st.SearchStrategy[int]:
    if isinstance(knob, st.SearchStrategy):
        return knob.map(lambda value: _check_drawn_int(value, name, low))
    if isinstance(knob, bool) or not isinstance(knob, int | tuple):
        raise InvalidArgument(
            f"{name} must be an int, a (min, max) tuple or a strategy; got {knob!r}"
        )
    if isinstance(knob, tuple) and len(knob) != 2:
        raise InvalidArgument(f"{name} must be a (min, max) tuple of two ints; got {knob!r}")
    lo, hi = check_size(
        knob, name, minimum=low, type_error=InvalidArgument, value_error=InvalidArgument
    )
    return st.integers(lo, hi)


def _at_least(knob: object, low: int) -> object:
    """A `(min, max)` knob with `min` raised to `low` where the range reaches it."""
    if isinstance(knob, tuple) and len(knob) == 2 and all(isinstance(v, int) for v in knob):
        lo, hi = knob
        if lo < low <= hi:
            return (low, hi)
    return knob


def _check_drawn_int(value: object, name: str, low: int) -> int:
    """A value drawn from a strategy knob: an int of at least `low`, or InvalidArgument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidArgument(f"{name} must be an int >= {low}; its strategy drew {value!r}")
    return value


def _device(value: object, *, why_data: str) -> torch.device:
    """`value` as a torch.device that holds data and is available, or InvalidArgument."""
    return check_device(
        value, why_data=why_data, type_error=InvalidArgument, value_error=InvalidArgument
    )


def _dtype(value: object) -> torch.dtype:
    """`value` as a floating torch.dtype, or InvalidArgument."""
    return check_floating_dtype(value, type_error=InvalidArgument)


def _positive(value: object, name: str) -> float:
    """`value` as a positive finite number, or InvalidArgument."""
    return check_positive_number(
        value, name, type_error=InvalidArgument, value_error=InvalidArgument
    )


def _check_flags(**flags: object) -> None:
    """Each flag is True or False, or InvalidArgument."""
    for name, value in flags.items():
        check_bool(value, name, type_error=InvalidArgument)


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
    if not options:
        raise InvalidArgument(f"{name} must name at least one of {tuple(allowed)}; got {knob!r}")
    for option in options:
        _check_choice(option, allowed, name)
    return st.sampled_from([str(option) for option in options])


def _check_choice(value: object, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise InvalidArgument(f"{name} must be one of {tuple(allowed)} (or 'any'); got {value!r}")
    return str(value)


def _value(knob: _T | st.SearchStrategy[_T]) -> st.SearchStrategy[_T]:
    return knob if isinstance(knob, st.SearchStrategy) else st.just(knob)


def garbage_fills(kind: str, dtype: torch.dtype, bound: float = 1.0) -> dict[str, float]:
    """The constant values of garbage `kind` (of `GARBAGE_KINDS`), by label: what the
    padding properties write into padded slots and what the strategies draw there.

    `"finite"` is plus and minus `bound` (the real values' range); `"large"` is +-1e30,
    clipped to `dtype`'s largest finite value; `"repeat_last"` has none (it copies each
    lane's last real point).

    Raises:
        lpim._errors.UsageValueError: (a `ValueError`) `kind` is not one of `GARBAGE_KINDS`,
            or `bound` is negative, inf or NaN.
        lpim._errors.UsageTypeError: (a `TypeError`) `dtype` is not a floating torch.dtype,
            or `bound` not a number.
    """
    check_choice(kind, "kind", GARBAGE_KINDS, "garbage_fills")
    check_floating_dtype(dtype)
    bound = check_real_number(bound, "bound", "garbage_fills")
    if not (math.isfinite(bound) and bound >= 0):
        raise UsageValueError(f"garbage_fills: bound must be a finite number >= 0; got {bound}")
    big = min(1e30, float(torch.finfo(dtype).max))
    return {
        "zeros": {"zeros": 0.0},
        "finite": {f"{bound:g}": bound, f"-{bound:g}": -bound},
        "repeat_last": {},
        "large": {"large": big, "-large": -big},
        "inf": {"inf": float("inf"), "-inf": float("-inf")},
        "nan": {"nan": float("nan")},
    }[kind]


def _garbage_values(kind: str, dtype: torch.dtype, bound: float = 1.0) -> list[float]:
    """The values drawn for `kind`: its fills, and for `"large"` values in between too."""
    if kind == "repeat_last":
        return [0.0]  # lane sets have no points to repeat: a padded lane holds zeros
    values = list(garbage_fills(kind, dtype, bound).values())
    if kind == "finite":
        values.append(0.5 * bound)
    if kind == "large":
        values += [1e4, -3e4]
    return values


def _apply_layout(counts: np.ndarray, n: int, layout: str, keys: np.ndarray) -> np.ndarray:
    """`[B, M, N]` mask with `counts [B, M]` real points per lane: first (`"right"`), last
    (`"left"`), in one run starting `keys[..., 0]` slots in (at most the padding;
    `"contiguous"`), or on the slots whose `keys [B, M, N]` are smallest (`"scattered"`)."""
    slot = np.arange(n)
    if layout == "contiguous":
        start = np.minimum(keys[..., :1], n - counts[..., None])  # [B, M, 1]
        run: np.ndarray = (slot >= start) & (slot < start + counts[..., None])
        return run
    if layout == "scattered":
        slot = np.argsort(np.argsort(keys, axis=-1, kind="stable"), axis=-1)  # rank of each slot
    placed: np.ndarray = (
        slot >= n - counts[..., None] if layout == "left" else slot < counts[..., None]
    )
    return placed


# -- lane sets: the inputs of lane-set consumers ---------------------------------------------------

OtherInputs = Callable[[int, torch.dtype, torch.device], st.SearchStrategy[Any]]
"""`other_inputs(batch_size, dtype, device)` -> a strategy of a consumer's other inputs: a
`tuple` (positional, passed after `lane_mask`) or a `dict` (keyword)."""


@st.composite
def lane_sets(
    draw: st.DrawFn,
    batch_size: int | tuple[int, int] | st.SearchStrategy[int] = (1, 3),
    num_lanes: int | tuple[int, int] | st.SearchStrategy[int] = (1, 6),
    embed_dim: int | tuple[int, int] | st.SearchStrategy[int] = 16,
    garbage: str | Sequence[str] | st.SearchStrategy[str] | None = "zeros",
    empty_lanes: bool = True,
    empty_samples: bool = True,
    all_empty: bool = True,
    dtype: torch.dtype | st.SearchStrategy[torch.dtype] = torch.float32,
    device: str | torch.device | st.SearchStrategy[str | torch.device] = "cpu",
    value_range: float = 4.0,
    other_inputs: OtherInputs | None = None,
) -> LaneSet:
    """A Hypothesis strategy of [`LaneSet`][lpim.LaneSet] s: what a lane-set consumer receives.

    Each example holds `lane_embedding [B, M, C]`, `lane_mask [B, M]` (bool, True = real
    lane) and the consumer's other inputs drawn by `other_inputs`. Shrinks toward 1 sample, 1
    real lane, embeddings 0, zeros in padded lanes, and the simplest other inputs.

    Args:
        batch_size: `B`, samples per batch.
        num_lanes: `M`, lane slots per sample (`M = 0` only if asked for).
        embed_dim: `C`, the embedding width.
        garbage: what padded lanes hold: `"zeros"`, `"large"` (up to 1e30, clipped to the
            dtype's largest finite value), `"inf"` (+-inf), `"nan"`, a list, or None for any
            (shrinks toward `"zeros"`).
        empty_lanes: draw padded lanes (`lane_mask` False) among the `M` slots.
        empty_samples: draw samples with no real lane (needs `empty_lanes`).
        all_empty: draw batches with no real lane at all (needs `empty_samples`).
        dtype: of `lane_embedding` (a floating dtype, or a strategy of them).
        device: of both tensors, and passed to `other_inputs`.
        value_range: real embeddings are finite and lie in `[-value_range, value_range]`.
        other_inputs: `(batch_size, dtype, device) -> SearchStrategy` of a tuple (extra
            positional inputs) or a dict (extra keyword inputs); None for none.

    Returns:
        A strategy; each example is a valid `LaneSet` (real lanes finite, mask bool).

    Raises:
        hypothesis.errors.InvalidArgument: when drawing, for any knob outside what is
            documented here (a negative or reversed range, `embed_dim` below 1, an unknown
            garbage kind, a non-floating dtype, a device torch does not know, is not
            available, or the `meta` device, which holds no values; a non-positive or
            non-finite `value_range`; a non-bool flag; `other_inputs` not callable or not
            returning a strategy of a tuple or a dict; drawn sizes of more than
            `MAX_DRAWN_VALUES` values), naming the knob, what it expects and what came.
            Values drawn from a strategy knob are checked the same way.
    """
    _check_flags(empty_lanes=empty_lanes, empty_samples=empty_samples, all_empty=all_empty)
    _positive(value_range, "value_range")
    if other_inputs is not None:
        check_callable(
            other_inputs,
            "other_inputs",
            "other_inputs(batch_size, dtype, device) -> SearchStrategy",
            args=(1, torch.float32, torch.device("cpu")),
            type_error=InvalidArgument,
        )
    b = draw(_ints(batch_size, "batch_size", low=0))
    m = draw(_ints(num_lanes, "num_lanes", low=0))
    c = draw(_ints(embed_dim, "embed_dim", low=1))
    _check_drawn_size("lane_sets", batch_size=b, num_lanes=m, embed_dim=c)
    chosen_garbage = draw(_choice(garbage, GARBAGE_KINDS, "garbage"))
    chosen_dtype = _dtype(draw(_value(dtype)))
    chosen_device = _device(draw(_value(device)), why_data=WHY_LANE_SET_VALUES)

    # The lane mask, as flags that shrink toward "real": per sample whether it is drawn empty and
    # per lane whether it is padded, each sample's draws contiguous so the shrinker can delete
    # them as a block; then whether the whole batch is empty.
    lane_flag = st.sampled_from(_EMPTY_LANE) if empty_lanes else st.just(False)
    samples, batch_empty = _samples_and_batch_flag(
        draw, lane_flag, b, m, empty_lanes and empty_samples, all_empty
    )
    lane_mask = np.zeros((b, m), dtype=bool)  # [B, M]
    for i, (sample_empty, padded) in enumerate(samples):
        lane_mask[i] = [not (batch_empty or sample_empty or p) for p in padded]
    if m and not empty_samples:
        lane_mask[~lane_mask.any(axis=1), 0] = True  # every sample keeps a real lane
    if m and b and not all_empty and not lane_mask.any():
        lane_mask[0, 0] = True

    real = draw(_float_arrays((b, m, c), value_range))  # [B, M, C]
    garbage_values = _garbage_values(chosen_garbage, chosen_dtype, value_range)
    junk = (
        np.full((b, m, c), garbage_values[0])
        if len(garbage_values) == 1
        else draw(_sampled_arrays((b, m, c), tuple(garbage_values)))
    )
    embedding = np.where(lane_mask[..., None], real, junk)  # [B, M, C]

    args, kwargs = _draw_other_inputs(draw, other_inputs, b, chosen_dtype, chosen_device)
    return LaneSet(
        torch.from_numpy(embedding).to(dtype=chosen_dtype, device=chosen_device),
        torch.from_numpy(lane_mask).to(chosen_device),
        args,
        kwargs,
    )


def _draw_other_inputs(
    draw: st.DrawFn,
    other_inputs: OtherInputs | None,
    batch_size: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """`(args, kwargs)` drawn from `other_inputs(batch_size, dtype, device)` (none when it
    is None)."""
    if other_inputs is None:
        return (), {}
    inputs = other_inputs(batch_size, dtype, device)
    if not isinstance(inputs, st.SearchStrategy):
        raise InvalidArgument(
            "other_inputs(batch_size, dtype, device) must return a strategy of a tuple "
            f"(positional inputs) or a dict (keyword inputs); got {inputs!r} "
            f"({type(inputs).__name__})"
        )
    extra = draw(inputs)
    if isinstance(extra, tuple):
        return extra, {}
    if isinstance(extra, Mapping):
        return (), dict(extra)
    raise InvalidArgument(
        "other_inputs(batch_size, dtype, device) must return a strategy of a tuple "
        f"(positional inputs) or a dict (keyword inputs); it drew {type(extra).__name__}"
    )


@st.composite
def with_other_inputs(
    draw: st.DrawFn, batches: st.SearchStrategy[LaneBatch], other_inputs: OtherInputs
) -> LaneBatch:
    """Batches from `batches`, each with an encoder's other inputs drawn for it.

    For an encoder called as `encoder(points, point_mask, *args, **kwargs)` with per-sample
    context (an agent embedding `[B, C]`, an ego state): `other_inputs(batch_size, dtype,
    device)` is called with each batch's `B`, dtype and device and returns a strategy of a
    tuple (positional inputs, after `point_mask`) or a dict (keyword inputs), every tensor
    `[B, ...]`. The checks run each lane alone with its own sample's rows.

    Example:
        ```python
        import torch
        from hypothesis import strategies as st
        from lpim.strategies import lane_batches, with_other_inputs

        def agents(batch_size, dtype, device):  # one agent embedding per sample
            return st.just((torch.randn(batch_size, 16, dtype=dtype, device=device),))

        batches = with_other_inputs(lane_batches(), agents)
        ```

    Raises:
        hypothesis.errors.InvalidArgument: when drawing, if `other_inputs` returns no
            strategy, or one that draws neither a tuple nor a dict.
        lpim._errors.UsageValueError: (a `ValueError`) a drawn tensor without one row per
            sample.
    """
    check_callable(
        other_inputs,
        "other_inputs",
        "other_inputs(batch_size, dtype, device) -> SearchStrategy",
        type_error=InvalidArgument,
    )
    batch = draw(batches)
    args, kwargs = _draw_other_inputs(
        draw, other_inputs, batch.shape[0], batch.points.dtype, batch.points.device
    )
    return LaneBatch(batch.points, batch.point_mask, args, kwargs)


# -- other inputs of the zoo's consumers -----------------------------------------------------------


def bev_queries(
    num_queries: int | tuple[int, int] = (1, 3), embed_dim: int = 16, value_range: float = 4.0
) -> OtherInputs:
    """`other_inputs` for consumers that take BEV queries: a 1-tuple `(bev_queries,)`.

    `bev_queries [B, Q, C]` at the check's dtype and device, values finite in
    `[-value_range, value_range]`, shrinking toward one query of zeros. (Moved here from
    `lpim.zoo.consumers`, which no longer imports Hypothesis.)

    Args:
        num_queries: `Q`, or a `(min, max)` range of it.
        embed_dim: `C`.
        value_range: the largest magnitude of a query value.

    Returns:
        A function `(batch_size, dtype, device) -> SearchStrategy` of `(bev_queries,)`, as
        `lane_sets(other_inputs=...)` and `check_lane_consumer(other_inputs=...)` take it.

    Raises:
        hypothesis.errors.InvalidArgument: a `num_queries` that is negative or a reversed
            range, an `embed_dim` below 1, a `value_range` that is not positive and finite;
            and, when the function is called, a `batch_size` below 0, a non-floating `dtype`,
            an unavailable `device` or more than `MAX_DRAWN_VALUES` values per example.
    """
    low, high = check_size(
        num_queries,
        "num_queries",
        "bev_queries",
        type_error=InvalidArgument,
        value_error=InvalidArgument,
    )
    embed_dim = check_int(
        embed_dim,
        "embed_dim",
        "bev_queries",
        minimum=1,
        type_error=InvalidArgument,
        value_error=InvalidArgument,
    )
    value_range = _positive(value_range, "value_range")

    def draw(batch_size: int, dtype: torch.dtype, device: torch.device) -> st.SearchStrategy[Any]:
        batch_size, dtype, device = _other_inputs_arguments(batch_size, dtype, device)
        _check_drawn_size(
            "bev_queries", batch_size=batch_size, num_queries=high, embed_dim=embed_dim
        )
        values = st.floats(-value_range, value_range, allow_nan=False, allow_infinity=False)
        return (
            st.integers(low, high)
            .flatmap(lambda q: arrays(np.float64, (batch_size, q, embed_dim), elements=values))
            .map(lambda a: (torch.from_numpy(a).to(dtype=dtype, device=device),))
        )

    return draw


def bev_maps(
    channels: int = 16,
    height: int | tuple[int, int] = (1, 4),
    width: int | tuple[int, int] = (1, 4),
) -> OtherInputs:
    """`other_inputs` for consumers that take a BEV feature map: a 1-tuple `(bev_map,)`.

    `bev_map [B, C, H, W]` at the check's dtype and device (what the LaneDiffusion fusion
    flattens into `H * W` queries), values finite in `[-4, 4]`, shrinking toward a 1 x 1 map of
    zeros.

    Args:
        channels: `C` (the lane embedding width, for a fusion that attends with the map's
            pixels as queries).
        height: `H`, or a `(min, max)` range of it.
        width: `W`, or a `(min, max)` range of it.

    Returns:
        A function `(batch_size, dtype, device) -> SearchStrategy` of `(bev_map,)`, as
        `lane_sets(other_inputs=...)` and `check_lane_consumer(other_inputs=...)` take it.

    Raises:
        hypothesis.errors.InvalidArgument: `channels`, `height` or `width` below 1 (or a
            reversed range); and, when the function is called, a `batch_size` below 0, a
            non-floating `dtype`, an unavailable `device` or more than `MAX_DRAWN_VALUES`
            values per example.
    """

    channels = check_int(
        channels,
        "channels",
        "bev_maps",
        minimum=1,
        type_error=InvalidArgument,
        value_error=InvalidArgument,
    )
    heights, widths = _ints(height, "height", low=1), _ints(width, "width", low=1)
    most = [
        check_size(
            v, name, "bev_maps", minimum=1, type_error=InvalidArgument, value_error=InvalidArgument
        )[1]
        for v, name in ((height, "height"), (width, "width"))
        if not isinstance(v, st.SearchStrategy)
    ]

    def draw(batch_size: int, dtype: torch.dtype, device: torch.device) -> st.SearchStrategy[Any]:
        batch_size, dtype, device = _other_inputs_arguments(batch_size, dtype, device)
        _check_drawn_size(
            "bev_maps", batch_size=batch_size, channels=channels, pixels=math.prod(most)
        )
        values = st.floats(-4.0, 4.0, allow_nan=False, allow_infinity=False)
        return (
            st.tuples(heights, widths)
            .flatmap(lambda hw: arrays(np.float64, (batch_size, channels, *hw), elements=values))
            .map(lambda a: (torch.from_numpy(a).to(dtype=dtype, device=device),))
        )

    return draw


def _other_inputs_arguments(
    batch_size: object, dtype: object, device: object
) -> tuple[int, torch.dtype, torch.device]:
    """The arguments an `OtherInputs` function is called with, checked (InvalidArgument)."""
    return (
        check_int(
            batch_size,
            "batch_size",
            minimum=0,
            type_error=InvalidArgument,
            value_error=InvalidArgument,
        ),
        _dtype(dtype),
        _device(device, why_data="the other inputs are drawn as values"),
    )
