"""Where tensors came from, for what the attention call alone cannot tell.

The function mode records a few results by identity (a weak reference, dropped with the
tensor):

- `mask.repeat(k, 1, 1)` of a 3D mask: the line that built a head-major `attn_mask`, and the
  per-entry mask it repeated (conversions after it, `.bool()`, `~`, `.to(...)`, follow it);
- `scores.masked_fill(condition, fill)` with a negative fill, and `scores + mask`: attention
  written by hand. When `softmax` over the last axis reads such a tensor, the fill is
  measured on that softmax's own weights (`_proof.fill_harm`) and rows with every key masked
  are reported.
"""

from __future__ import annotations

import linecache
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lpim.sanitizer._inspect import Hazard, RepeatRecord, read_float
from lpim.sanitizer._proof import fill_harm, harm_text, measurable, rows_gave


@dataclass(frozen=True)
class Filled:
    """`source.masked_fill(condition, fill)` at `where` (`line` its text)."""

    source: weakref.ref[Tensor]
    condition: Tensor
    fill: float
    where: str
    line: str


@dataclass(frozen=True)
class Added:
    """`left + right`: one of them may be an additive mask."""

    left: weakref.ref[Tensor]
    right: weakref.ref[Tensor]


@dataclass(frozen=True)
class CleanFill:
    """`scores.masked_fill(condition, -inf)` whose condition was seen to leave every row a key
    (`_NO_EMPTY_ROW`): a softmax over it is counted, and has nothing to check."""


CLEAN_FILL = CleanFill()


class _Ref(weakref.ref):  # type: ignore[type-arg]
    """A weak reference that knows its `Records` key (one callback for every entry)."""

    __slots__ = ("key",)
    key: int


class Records:
    """Facts about tensors by identity; an entry goes when its tensor is freed."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Tensor], object]] = {}
        entries = self._entries

        def drop(ref: _Ref) -> None:
            entry = entries.get(ref.key)
            if entry is not None and entry[0] is ref:
                del entries[ref.key]

        self._drop = drop

    def put(self, tensor: Tensor, fact: object) -> None:
        key = id(tensor)
        try:
            ref = _Ref(tensor, self._drop)
        except TypeError:
            return  # a tensor type without weak references: not recorded
        ref.key = key
        self._entries[key] = (ref, fact)

    def get(self, tensor: object) -> object | None:
        entry = self._entries.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1]

    def clear(self) -> None:
        self._entries.clear()


def source_line(filename: str, line: int) -> str:
    return linecache.getline(filename, line).strip()


def repeat_sizes(args: tuple[Any, ...]) -> tuple[int, ...]:
    sizes = args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], tuple | list | torch.Size):
        sizes = tuple(sizes[0])
    return tuple(int(s) if isinstance(s, int) else -1 for s in sizes)


def on_repeat(
    records: Records, args: tuple[Any, ...], result: object, where: Callable[[], tuple[str, str]]
) -> None:
    """Record `mask.repeat(k, 1, 1)` of a 3D mask with more than one entry."""
    source = args[0] if args else None
    if not isinstance(source, Tensor) or not isinstance(result, Tensor) or source.dim() != 3:
        return
    sizes = repeat_sizes(args)
    if len(sizes) == 3 and sizes[1:] == (1, 1) and sizes[0] > 1 and source.shape[0] > 1:
        site, line = where()
        records.put(result, RepeatRecord(source, sizes[0], site, line))


def on_convert(
    records: Records,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: object,
) -> None:
    """A conversion of a recorded repeat keeps the record, with the same conversion applied
    to its source (so the source stays in the polarity of the mask the call gets)."""
    if not args or not isinstance(result, Tensor):
        return
    record = records.get(args[0])
    if isinstance(record, RepeatRecord):
        source = func(record.source, *args[1:], **kwargs)
        if isinstance(source, Tensor):
            records.put(result, RepeatRecord(source, record.times, record.where, record.line))


def on_masked_fill(
    records: Records,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: object,
    where: Callable[[], tuple[str, str]],
) -> None:
    # `(input, mask, value)`, by position or by name (read at every masked_fill: no dict made)
    source = kwargs.get("input", args[0] if args else None)
    condition = kwargs.get("mask", args[1] if len(args) > 1 else None)
    value = kwargs.get("value", args[2] if len(args) > 2 else None)
    if not isinstance(result, Tensor) or not isinstance(condition, Tensor):
        return
    if not isinstance(source, Tensor) or not result.is_floating_point():
        return
    if isinstance(value, Tensor):
        if value.numel() != 1:
            return
        value = value.item()
    if not isinstance(value, int | float) or not value < 0:
        return  # a non-negative fill is not a mask
    if value == float("-inf") and leaves_every_row_a_key(condition, result.shape):
        records.put(result, CLEAN_FILL)  # nothing to check, no site to read
        return
    site, line = where()
    records.put(result, Filled(weakref.ref(source), condition, float(value), site, line))


def on_add(records: Records, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
    if len(args) < 2 or kwargs.get("alpha", 1) != 1 or not isinstance(result, Tensor):
        return
    left, right = args[0], args[1]
    if not isinstance(left, Tensor) or not isinstance(right, Tensor) or result.dim() < 2:
        return
    if not result.is_floating_point():
        return
    try:
        records.put(result, Added(weakref.ref(left), weakref.ref(right)))
    except TypeError:
        return


def on_softmax(
    records: Records,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: object,
) -> tuple[str, list[Hazard]] | None:
    """The findings of a softmax over the last axis of recorded masked scores, with the API
    name to report; None when the softmax is not over masked scores."""
    scores = args[0] if args else kwargs.get("input")
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if not isinstance(scores, Tensor) or not isinstance(result, Tensor) or dim is None:
        return None
    if dim not in (-1, scores.dim() - 1) or result.shape != scores.shape:
        return None
    fact = records.get(scores)
    if fact is CLEAN_FILL:
        return "masked_fill + softmax", []
    if isinstance(fact, Filled):
        return "masked_fill + softmax", _filled(scores, result, fact)
    if isinstance(fact, Added):
        return _added(scores, result, fact)
    return None


_NO_EMPTY_ROW: dict[tuple[Any, ...], weakref.ref[Tensor]] = {}
"""Conditions seen to leave every row a key: a `-inf` fill with such a condition needs no more
than this look-up. By the identity and version of the tensor that owns the values (a view's
base: `mask[:, None, None, :]` is a new view at every forward of the same mask), and the
view's layout."""


def _no_empty_row_key(
    condition: Tensor, shape: torch.Size
) -> tuple[Tensor, tuple[Any, ...]] | None:
    """`(owner, key)` of `condition` read against scores of `shape`; None without a version."""
    try:
        owner = condition._base
        if owner is None:
            return condition, (id(condition), condition._version, condition.shape, shape)
        layout = (condition.shape, condition.stride(), condition.storage_offset())
        return owner, (id(owner), owner._version, condition.dtype, *layout, shape)
    except RuntimeError:
        return None  # an inference tensor: no version to read


def leaves_every_row_a_key(condition: Tensor, shape: torch.Size) -> bool:
    """`condition` was seen, as it is now, to leave every row of scores of `shape` a key."""
    found = _no_empty_row_key(condition, shape)
    if found is None:
        return False
    owner, key = found
    ref = _NO_EMPTY_ROW.get(key)
    return ref is not None and ref() is owner


def _remember_no_empty_row(condition: Tensor, shape: torch.Size) -> None:
    found = _no_empty_row_key(condition, shape)
    if found is None:
        return
    owner, key = found
    if len(_NO_EMPTY_ROW) >= 256:
        _NO_EMPTY_ROW.pop(next(iter(_NO_EMPTY_ROW)))
    try:
        _NO_EMPTY_ROW[key] = weakref.ref(owner)
    except TypeError:
        pass


def _filled(scores: Tensor, weights: Tensor, fact: Filled) -> list[Hazard]:
    if fact.fill == float("-inf") and leaves_every_row_a_key(fact.condition, scores.shape):
        return []
    hazards = _fully_masked(fact.condition, weights, "masked_fill + softmax", fact)
    if fact.fill == float("-inf"):
        if not hazards:
            _remember_no_empty_row(fact.condition, scores.shape)
        return hazards
    blocked = torch.broadcast_to(fact.condition, scores.shape)
    none = torch.zeros((), dtype=torch.bool, device=scores.device)
    harm = fill_harm(scores, weights, blocked, none, fact.fill)
    text = harm_text(
        harm, f"masked_fill({fact.fill:g}) at {fact.where}, then softmax", scores.dtype
    )
    if text is None:
        return hazards
    source = fact.source()
    fixed_ok = False
    if source is not None:
        fixed = source.detach().masked_fill(blocked, float("-inf")).float().softmax(-1)
        fixed_ok = _fix_holds(fixed, blocked)
    fix = (
        f" Fix: fill with float('-inf') instead of {fact.fill:g} on that line"
        + (f" (`{fact.line}`)" if fact.line else "")
        + " (checked on this call: the same keys stay masked, with weight 0, and the rows with "
        "a key are finite)."
        if fixed_ok
        else " No fix is printed: filling with -inf did not keep this call finite."
    )
    return [Hazard("finite_fill", text + fix), *hazards]


def _added(scores: Tensor, weights: Tensor, fact: Added) -> tuple[str, list[Hazard]] | None:
    for mask, other in ((fact.right(), fact.left()), (fact.left(), fact.right())):
        if mask is None or other is None or not mask.is_floating_point() or mask.requires_grad:
            continue  # a mask is built, not learned: a trainable bias is no mask
        reading = read_float(mask)
        if reading.kind == "additive":
            blocked = torch.isneginf(mask)  # broadcastable to the scores
            return "added mask + softmax", _fully_masked(blocked, weights, "added mask + softmax")
        if reading.kind != "fill" or reading.fill is None:
            continue
        fill = reading.fill
        fill_blocked = torch.broadcast_to(mask == fill, scores.shape)
        hard = torch.broadcast_to(torch.isneginf(mask), scores.shape)
        blocked = fill_blocked | hard
        hazards = _fully_masked(blocked, weights, "added mask + softmax")
        harm = fill_harm(scores, weights, fill_blocked, hard, fill)
        text = harm_text(harm, f"an added {tuple(mask.shape)} mask of 0 / {fill:g}", scores.dtype)
        if text is not None:
            fixed_mask = mask.detach().masked_fill(mask == fill, float("-inf"))
            fixed = (other.detach() + fixed_mask).float().softmax(-1)
            fix = (
                f" Fix: build the mask with float('-inf') instead of {fill:g}, e.g. "
                f"mask.masked_fill(mask == {fill!r}, float('-inf')) (checked on this call: the "
                "same keys stay masked, with weight 0, and the rows with a key are finite)."
                if _fix_holds(fixed, blocked)
                else " No fix is printed: a -inf fill did not keep this call finite."
            )
            hazards.insert(0, Hazard("finite_fill", text + fix))
        return "added mask + softmax", hazards
    return None


def _fix_holds(fixed_weights: Tensor, blocked: Tensor) -> bool:
    has_key = (~blocked).any(dim=-1)
    rows = fixed_weights[has_key]
    return bool(torch.isfinite(rows).all()) and float(
        (fixed_weights.nan_to_num(0) * blocked)[has_key].sum()
    ) <= measurable(torch.float32)


def _fully_masked(
    blocked: Tensor, weights: Tensor, api: str, fact: Filled | None = None
) -> list[Hazard]:
    """`blocked` is bool and broadcastable to `weights` (read unbroadcast: it is smaller)."""
    fully = blocked.all(dim=-1) if blocked.dim() else blocked  # broadcastable to the rows
    if not bool(fully.any()):
        return []
    try:
        fully = torch.broadcast_to(fully, weights.shape[:-1])
    except RuntimeError:
        return []
    gave = rows_gave(weights[fully])
    if gave not in ("NaN", "0"):
        gave = "equal weights on every masked key: the output is the mean of the masked values"
    site = f" at {fact.where}" if fact is not None else ""
    return [
        Hazard(
            "fully_masked_rows",
            f"{int(fully.sum())} of {fully.numel()} row(s) of the softmax over masked scores"
            f"{site} have every key masked; in this call they came out {gave}. A -inf fill "
            "gives NaN there, a finite fill the mean of what was masked. Fix: give every row a "
            "key it may attend to, or set those rows' outputs with torch.where afterwards "
            "(their gradient is NaN under -inf either way). If the pattern is intended, "
            "silence it with lpim.sanitize(allow=[('fully_masked_rows', 'FILE:LINE')]).",
        )
    ]
