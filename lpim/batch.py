"""`LaneBatch`: a padded batch of lanes in the library convention.

A batch holds `B` samples, each padded to `M` lane slots, each lane padded to `N` point slots
of `D` coordinates:

| field | shape | dtype | meaning |
|---|---|---|---|
| `points` | `[B, M, N, D]` | floating | coordinates; padded slots may hold anything |
| `point_mask` | `[B, M, N]` | `bool` | `True` = real point (the library convention) |
| `lane_mask` | `[B, M]` | `bool` | `True` = lane has at least one real point |
| `lengths` | `[B, M]` | `int64` | number of real points in each lane |
| `args` | `[B, ...]` each | (any) | the encoder's other positional inputs, one row per sample |
| `kwargs` | `[B, ...]` each | (any) | the encoder's other keyword inputs, one row per sample |

An encoder is called as `encoder(points, point_mask, *args, **kwargs)` (`call`); the other
inputs are per-sample context (an agent embedding, an ego state): every tensor among them has
`B` rows, and the lanes of sample `b` are read with row `b` of each (`samples`).

Real points need not sit at the front of their lane: the padding `layout` is `"right"` (real
points first), `"left"` (real points last), `"contiguous"` (real points in one run, padding
at either end or both: a polyline clipped at the edges of a box) or `"scattered"` (anything
else). Values in padded
slots are meaningless by contract and an encoder must never let them reach a real output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch

from lpim._errors import UsageTypeError, UsageValueError
from lpim._validation import (
    WHY_BATCH_VALUES,
    allocating,
    check_bool,
    check_callable,
    check_choice,
    check_dense,
    check_device,
    check_fill,
    check_floating_dtype,
    check_int,
    convert_input,
    no_values_message,
    point_mask_dtype_message,
    value_summary,
)

__all__ = ["LAYOUTS", "LaneBatch", "Layout"]

Layout = Literal["right", "left", "contiguous", "scattered"]
"""Where a lane's real points sit among its `N` slots: first, last, or anywhere."""

LAYOUTS: tuple[Layout, ...] = get_args(Layout)
"""Every [`Layout`][lpim.batch.Layout], in the order the strategies shrink toward."""


@dataclass(frozen=True, eq=False, repr=False)
class LaneBatch:
    """A padded batch of lanes: `points [B, M, N, D]` and `point_mask [B, M, N]`.

    Args:
        points: `[B, M, N, D]` floating tensor of coordinates. Values in padded slots are
            ignored by contract (they may be zeros, huge, inf or NaN).
        point_mask: `[B, M, N]` `torch.bool`, `True` = real point. Same device as
            `points`.
        args: the encoder's other positional inputs, passed after `point_mask`: per-sample
            context, every tensor `[B, ...]` (default none).
        kwargs: the encoder's other keyword inputs, every tensor `[B, ...]` (default none).

    Raises:
        lpim._errors.UsageTypeError: (a `TypeError`) `points` is not a floating tensor,
            `point_mask` is not a `torch.bool` tensor, either is sparse or nested, `args` is
            not a tuple or `kwargs` not a mapping.
        lpim._errors.UsageValueError: (a `ValueError`) wrong ranks, shapes that disagree,
            `D = 0`, different devices, the `meta` device (no values), a real point that is
            NaN or inf, or an other input tensor without one row per sample.

    What `True` means: a slot the mask marks real *is* a real point, whatever it holds. A
    mask that marks a padded slot as real cannot be told from a real point at those
    coordinates when the slot holds a finite fill (zeros, a repeated last point): it is
    encoded as a real point. When the slot holds NaN or inf (a common padding fill), the batch
    is refused, naming the first such slot. Zero-size batches (`B`, `M` or `N` = 0),
    non-contiguous and expanded tensors, and `points` that require grad are accepted as
    they are (nothing is copied).

    Example:
        ```python
        import torch
        from lpim import LaneBatch

        lanes = [[torch.zeros(3, 2)], [torch.ones(1, 2), torch.ones(2, 2)]]
        batch = LaneBatch.from_lanes(lanes)
        batch.points.shape, batch.lengths.tolist()
        # (torch.Size([2, 2, 3, 2]), [[3, 0], [1, 2]])
        ```
    """

    points: torch.Tensor
    point_mask: torch.Tensor
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # -- derived views -------------------------------------------------------------------------

    @property
    def lane_mask(self) -> torch.Tensor:
        """`[B, M]` bool, `True` = the lane has at least one real point."""
        return self.point_mask.any(dim=-1)

    @property
    def lengths(self) -> torch.Tensor:
        """`[B, M]` int64, the number of real points in each lane (any layout)."""
        return self.point_mask.sum(dim=-1)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """`(B, M, N, D)`."""
        b, m, n, d = self.points.shape
        return b, m, n, d

    @property
    def layout(self) -> Layout:
        """`"right"` if every lane's real points come first, `"left"` if they all come last,
        `"contiguous"` if each lane's real points form one run, else `"scattered"`. A batch
        whose lanes are all full or empty counts as `"right"`."""
        n = self.point_mask.shape[-1]
        lengths = self.lengths.unsqueeze(-1)  # [B, M, 1]
        slot = torch.arange(n, device=self.point_mask.device)  # [N]
        if torch.equal(self.point_mask, slot < lengths):
            return "right"
        if torch.equal(self.point_mask, slot >= n - lengths):
            return "left"
        first = self.point_mask.int().argmax(-1, keepdim=True)  # [B, M, 1]: first real slot
        if torch.equal(self.point_mask, (slot >= first) & (slot < first + lengths)):
            return "contiguous"
        return "scattered"

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_lanes(
        cls,
        lanes: Sequence[Sequence[torch.Tensor]],
        num_lanes: int | None = None,
        num_points: int | None = None,
        layout: Layout = "right",
        *,
        point_dim: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        fill: float = 0.0,
    ) -> LaneBatch:
        """Pad nested lists of lanes into a batch.

        Args:
            lanes: one sequence per sample, each holding that sample's lanes as `[n_i, D]`
                tensors (`n_i` may be 0).
            num_lanes: `M`, lane slots per sample; default the most lanes in any sample. A
                sample with more lanes is an error (lanes are never dropped silently).
            num_points: `N`, point slots per lane; default the longest lane. A longer lane is
                an error.
            layout: where real points go: `"right"` (slots `0..n-1`), `"left"` (slots
                `N-n..N-1`), `"contiguous"` (one run in the middle, padding at both ends:
                slots `(N-n)//2 ..`) or `"scattered"` (slots `floor(i * N / n)`, spreading
                padding between real points).
            point_dim: `D` when there is no lane to read it from (default 2).
            dtype: of `points`; default that of the first lane (else float32).
            device: of `points` and `point_mask`; default that of the first lane (else CPU).
            fill: value written into padded slots.

        Returns:
            The padded `LaneBatch`.

        Raises:
            lpim._errors.UsageTypeError: (a `TypeError`) `lanes` is not a sequence of
                sequences of tensors, a lane is sparse or holds no real numbers, a size is not
                an int, `dtype` is not a floating dtype, `device` not a str or torch.device,
                or `fill` not a number.
            lpim._errors.UsageValueError: (a `ValueError`) a lane is not `[n_i, D]`, lanes
                disagree on `D`, a sample or lane does not fit `num_lanes` / `num_points`, a
                size is negative (`point_dim` below 1) or too large to allocate, an unknown
                `layout`, or a device torch does not know, `meta` or one that is not
                available.
        """
        where = "LaneBatch.from_lanes"
        layout = check_choice(layout, "layout", LAYOUTS, where)  # type: ignore[assignment]
        samples = _samples(lanes, where)
        flat = [lane for sample in samples for lane in sample]
        for i, lane in enumerate(flat):
            if isinstance(lane, torch.Tensor):
                check_dense(lane, f"lane {i}", where)
            if not isinstance(lane, torch.Tensor) or lane.dim() != 2:
                got = tuple(lane.shape) if isinstance(lane, torch.Tensor) else type(lane).__name__
                raise UsageValueError(
                    f"{where}: each lane must be a [n_i, D] tensor; lane {i} is {got}"
                )
            if lane.device.type == "meta":  # its points would be copied: it has none
                raise UsageValueError(
                    f"{where}: lane {i}: "
                    + no_values_message("LaneBatch", "real points are checked to be finite")
                )
            if lane.dtype == torch.bool or lane.is_complex():
                raise UsageTypeError(
                    f"{where}: each lane must hold real coordinates (a floating or integer "
                    f"dtype); lane {i} is {lane.dtype}"
                )
        first = flat[0] if flat else None
        if point_dim is not None:
            point_dim = check_int(point_dim, "point_dim", where, minimum=1)
        if num_lanes is not None:
            num_lanes = check_int(num_lanes, "num_lanes", where, minimum=0)
        if num_points is not None:
            num_points = check_int(num_points, "num_points", where, minimum=0)
        if dtype is not None:
            dtype = check_floating_dtype(dtype)
        if device is not None:
            device = check_device(device, why_data=WHY_BATCH_VALUES)
        d = point_dim if point_dim is not None else (first.shape[1] if first is not None else 2)
        if dtype is None and first is not None:
            dtype = check_floating_dtype(first.dtype, name="dtype (by default lane 0's dtype)")
        dtype = dtype or torch.float32
        fill = check_fill(fill, dtype, "fill", where)
        device = device or (first.device if first is not None else "cpu")
        for i, lane in enumerate(flat):
            if lane.shape[1] != d:
                raise UsageValueError(
                    f"{where}: every lane must have D = {d} coordinates; lane {i} has "
                    f"{lane.shape[1]}"
                )

        most_lanes = max((len(sample) for sample in samples), default=0)
        longest = max((lane.shape[0] for lane in flat), default=0)
        m = most_lanes if num_lanes is None else num_lanes
        n = longest if num_points is None else num_points
        if most_lanes > m:
            raise UsageValueError(
                f"{where}: a sample has {most_lanes} lanes but num_lanes = {m}; raise num_lanes"
            )
        if longest > n:
            raise UsageValueError(
                f"{where}: a lane has {longest} points but num_points = {n}; raise num_points"
            )

        shape = (len(samples), m, n, d)
        with allocating(
            f"{where}: a [B, M, N, D] = {list(shape)} batch",
            "num_lanes or num_points",
            tensors=[(shape, dtype), (shape[:-1], torch.bool)],
            device=device,
        ):
            points = torch.full(shape, fill, dtype=dtype, device=device)
            point_mask = torch.zeros(shape[:-1], dtype=torch.bool, device=device)
        for b, sample in enumerate(samples):
            for j, lane in enumerate(sample):
                slots = _slots(lane.shape[0], n, layout, device)
                points[b, j, slots] = lane.to(dtype=dtype, device=device)
                point_mask[b, j, slots] = True
        return cls(points, point_mask)

    def lanes(self, *, drop_empty: bool = False) -> list[list[torch.Tensor]]:
        """The real points of each lane, in slot order: the inverse of `from_lanes`.

        Returns one list per sample of `[n_i, D]` tensors; empty lanes are `[0, D]` tensors
        unless `drop_empty`.
        """
        check_bool(drop_empty, "drop_empty")
        out: list[list[torch.Tensor]] = []
        for b in range(self.points.shape[0]):
            sample = [self.points[b, j][self.point_mask[b, j]] for j in range(self.points.shape[1])]
            out.append([lane for lane in sample if lane.shape[0] > 0] if drop_empty else sample)
        return out

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> LaneBatch:
        """A copy on `device` with `points` cast to `dtype` (the mask stays bool).

        Raises:
            lpim._errors.UsageTypeError: (a `TypeError`) `device` is not a str or
                torch.device, or `dtype` not a floating torch.dtype.
            lpim._errors.UsageValueError: (a `ValueError`) a device torch does not know,
                `meta`, or one that is not available.
        """
        if device is not None:
            device = check_device(device, why_data=WHY_BATCH_VALUES)
        if dtype is not None:
            dtype = check_floating_dtype(dtype)
        return LaneBatch(
            self.points.to(device=device, dtype=dtype),
            self.point_mask.to(device=device),
            tuple(convert_input(value, device, dtype) for value in self.args),
            {key: convert_input(value, device, dtype) for key, value in self.kwargs.items()},
        )

    def samples(self, index: Sequence[int] | torch.Tensor) -> LaneBatch:
        """Samples `index` (in that order, repeats allowed), each with its own rows of the
        other inputs: `batch.samples([b])` is sample `b` alone, `[1, M, N, D]`.

        Non-tensor other inputs are passed as they are.
        """
        rows = torch.as_tensor(index, dtype=torch.long, device=self.points.device)
        return LaneBatch(
            self.points[rows],
            self.point_mask[rows],
            tuple(_rows(value, rows) for value in self.args),
            {key: _rows(value, rows) for key, value in self.kwargs.items()},
        )

    def with_points(self, points: torch.Tensor, point_mask: torch.Tensor) -> LaneBatch:
        """The same samples (and other inputs) with other points and mask, `[B, M', N', D']`
        and `[B, M', N']`."""
        return LaneBatch(points, point_mask, self.args, self.kwargs)

    def call(self, encoder: Any) -> Any:
        """`encoder(points, point_mask, *args, **kwargs)`.

        Raises:
            lpim._errors.UsageTypeError: (a `TypeError`) `encoder` is not callable.
        """
        check_callable(encoder, "encoder", "encoder(points, point_mask, *args, **kwargs)")
        return encoder(self.points, self.point_mask, *self.args, **self.kwargs)

    # -- checks --------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check ranks, dtypes, shapes, devices, and that every real point is finite.

        Raises:
            lpim._errors.UsageTypeError: (a `TypeError`) `points` not a floating tensor,
                `point_mask` not a `torch.bool` tensor, or either sparse or nested.
            lpim._errors.UsageValueError: (a `ValueError`) anything else, naming what was
                expected and what came.
        """
        points, point_mask = self.points, self.point_mask
        if not isinstance(points, torch.Tensor) or not isinstance(point_mask, torch.Tensor):
            raise UsageTypeError(
                "LaneBatch expects tensors points [B, M, N, D] and point_mask [B, M, N]; got "
                f"{type(points).__name__} and {type(point_mask).__name__}"
            )
        check_dense(points, "points")
        check_dense(point_mask, "point_mask")
        if points.dim() != 4:
            raise UsageValueError(
                f"points must be [B, M, N, D] (4-D); got shape {tuple(points.shape)}"
            )
        if not points.is_floating_point():
            raise UsageTypeError(f"points must be a floating dtype; got {points.dtype}")
        if point_mask.dtype != torch.bool:
            raise UsageTypeError(point_mask_dtype_message(point_mask.dtype))
        if point_mask.shape != points.shape[:-1]:
            raise UsageValueError(
                f"point_mask must have shape points.shape[:-1] = {tuple(points.shape[:-1])} "
                f"([B, M, N]); got {tuple(point_mask.shape)}"
            )
        if point_mask.device != points.device:
            raise UsageValueError(
                f"points and point_mask must be on one device; got {points.device} and "
                f"{point_mask.device}"
            )
        if points.shape[-1] == 0:
            raise UsageValueError(
                f"points must have D >= 1 coordinates per point; got shape {tuple(points.shape)}"
            )
        if points.device.type == "meta":
            raise UsageValueError(
                no_values_message("LaneBatch", "real points are checked to be finite")
            )
        if not isinstance(self.args, tuple):
            raise UsageTypeError(f"args must be a tuple; got {type(self.args).__name__}")
        if not isinstance(self.kwargs, Mapping):
            raise UsageTypeError(f"kwargs must be a mapping; got {type(self.kwargs).__name__}")
        others = [(f"args[{i}]", v) for i, v in enumerate(self.args)]
        others += [(f"kwargs[{k!r}]", v) for k, v in self.kwargs.items()]
        for name, value in others:
            if isinstance(value, torch.Tensor) and (
                value.dim() == 0 or value.shape[0] != points.shape[0]
            ):
                raise UsageValueError(
                    f"{name} must have one row per sample, [B, ...] = [{points.shape[0]}, ...] "
                    f"(other inputs are per-sample context); got shape {tuple(value.shape)}"
                )
        bad = point_mask & ~torch.isfinite(points).all(dim=-1)  # [B, M, N]
        if bool(bad.any()):
            where = tuple(int(i) for i in bad.nonzero()[0])
            raise UsageValueError(
                f"real points must be finite; {int(bad.sum())} real point(s) hold NaN or inf, "
                f"the first at [b, m, n] = {list(where)}. Padded slots may hold anything; real "
                "ones may not"
            )

    def __repr__(self) -> str:
        b, m, n, d = self.shape
        real_lanes = int(self.lane_mask.sum())
        real_points = int(self.point_mask.sum())
        dtype = str(self.points.dtype).removeprefix("torch.")
        others = ""
        if self.args:
            others += f", args=({', '.join(value_summary(v) for v in self.args)},)"
        if self.kwargs:
            inner = ", ".join(f"{k!r}: {value_summary(v)}" for k, v in self.kwargs.items())
            others += f", kwargs={{{inner}}}"
        return (
            f"LaneBatch(B={b}, M={m}, N={n}, D={d}, {dtype}, {self.points.device}, "
            f"layout={self.layout}, real lanes {real_lanes}/{b * m}, "
            f"real points {real_points}/{b * m * n}{others})"
        )


def _rows(value: Any, rows: torch.Tensor) -> Any:
    """Rows `rows` of a per-sample tensor; anything else as it is."""
    return value[rows.to(value.device)] if isinstance(value, torch.Tensor) else value


def _samples(lanes: object, where: str) -> list[Sequence[torch.Tensor]]:
    """`lanes` as a list of samples, each a sequence of lanes; a usage error for anything else."""
    expected = "a sequence (one per sample) of sequences of [n_i, D] tensors"
    if isinstance(lanes, str | bytes | torch.Tensor) or not isinstance(lanes, Sequence):
        raise UsageTypeError(f"{where}: lanes must be {expected}; got {type(lanes).__name__}")
    for b, sample in enumerate(lanes):
        if isinstance(sample, str | bytes | torch.Tensor) or not isinstance(sample, Sequence):
            got = (
                f"a tensor of shape {tuple(sample.shape)}"
                if isinstance(sample, torch.Tensor)
                else type(sample).__name__
            )
            raise UsageTypeError(
                f"{where}: lanes must be {expected}; lanes[{b}] (a sample's lanes) is {got}"
            )
    return list(lanes)


def _slots(count: int, num_points: int, layout: Layout, device: torch.device | str) -> torch.Tensor:
    """Slot indices, in increasing order, that `count` real points occupy under `layout`."""
    index = torch.arange(count, device=device)
    if layout == "right":
        return index
    if layout == "left":
        return index + (num_points - count)
    if layout == "contiguous":
        return index + (num_points - count) // 2
    return torch.div(index * num_points, max(count, 1), rounding_mode="floor")
