"""Which crash is the dtype's: decided by running the lanes, never by reading torch's message.

A check reports a dtype `unsupported` (a row with the reason, never a failure) when the code
under check cannot run one real lane, alone and unpadded, at that dtype, in the precision mode
being checked, while the same lane runs at plain float32 (outside any autocast). Padding plays
no part in that experiment, so what it shows is the dtype's, whatever torch's message says.

One exception: a fill value that does not fit the dtype (`masked_fill(mask, -1e9)` in float16)
crashes on an unpadded lane too, yet it is a mask bug with a one-line fix, so it stays a
failure. It is told apart by the call that raised: the aten op and its arguments are recorded
(a `TorchDispatchMode`), and a finite scalar argument beyond the dtype's largest value marks it.
The same record gives the hint: floating tensors of two dtypes met in that op, or the op has no
kernel at that dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lpim.testing._report import shorten

__all__ = ["Crash", "crash_of", "dtype_unsupported", "runs_at_float32"]


@dataclass(frozen=True)
class Crash:
    """What one probe run raised, and the aten op it came out of.

    Attributes:
        error: the exception.
        op: the aten op that raised (`"aten.mm.default"`), or '' when it was raised before
            any op ran (a check in Python, or in torch's front end).
        dtypes: the floating dtypes of that op's tensor arguments.
        overflow: a finite scalar argument of that op that the dtype cannot hold, or None.
    """

    error: BaseException
    op: str = ""
    dtypes: tuple[torch.dtype, ...] = ()
    overflow: float | None = None


class _Recorder(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch leaves it untyped
    """Remembers the first (innermost) aten op that raised, with its arguments."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.failed: tuple[Any, tuple[Any, ...], dict[str, Any]] | None = None

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        try:
            return func(*args, **(kwargs or {}))
        except Exception:
            if self.failed is None:
                self.failed = (func, args, kwargs or {})
            raise


def crash_of(run: Callable[[], object], dtype: torch.dtype) -> Crash | None:
    """Run `run()`; None if it returns, else what it raised and where (see `Crash`)."""
    recorder = _Recorder()
    try:
        with recorder:
            run()
    except Exception as error:
        if recorder.failed is None:
            return Crash(error)
        func, args, kwargs = recorder.failed
        leaves = tree_leaves((args, kwargs))
        floating = tuple(
            dict.fromkeys(
                leaf.dtype
                for leaf in leaves
                if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()
            )
        )
        largest = torch.finfo(dtype).max if dtype.is_floating_point else math.inf
        overflow = next(
            (
                float(leaf)
                for leaf in leaves
                if isinstance(leaf, int | float)
                and not isinstance(leaf, bool)
                and math.isfinite(leaf)
                and abs(leaf) > largest
            ),
            None,
        )
        return Crash(error, str(func), floating, overflow)
    return None


def runs_at_float32(run: Callable[[], object], device: torch.device) -> bool:
    """Whether `run()` (the lane at float32) returns, with autocast off on `device`'s type:
    the float32 side of the experiment runs at plain float32, whatever mode the row checks."""
    try:
        with torch.autocast(device.type, enabled=False):
            run()
    except Exception:
        return False
    return True


def dtype_unsupported(
    at_dtype: Callable[[], object],
    float32_runs: Callable[[], bool],
    dtype: torch.dtype,
    device: torch.device,
    *,
    mode: str,
    alternative: str,
) -> str:
    """Why the code cannot run at `dtype` ('' when it can, or when its crash is not the
    dtype's).

    Args:
        at_dtype: runs one real lane, unpadded, at `dtype` in the mode checked (inside any
            autocast the caller entered).
        float32_runs: whether the same lane runs at plain float32 (`runs_at_float32`, or
            what a check already saw); asked only when `at_dtype` crashed.
        dtype: the row's dtype.
        device: where both run.
        mode: how the dtype is run, for the reason (`"cast to it"`, `"under autocast"`).
        alternative: what to do instead, for the reason.
    """
    if dtype == torch.float32:
        return ""
    crash = crash_of(at_dtype, dtype)
    if crash is None or crash.overflow is not None:
        return ""  # it runs, or a fill value overflows the dtype: a bug, reported by the rows
    if not float32_runs():
        return ""  # it does not run at float32 either: not the dtype's
    raised = crash.error.__cause__ or crash.error  # a check's own wrapper keeps the crash there
    first = str(raised).splitlines()[0] if str(raised) else ""
    seen = shorten(f"{type(raised).__name__}: {first}", 160)  # at a word, never mid-word
    if len(crash.dtypes) >= 2:
        names = " and ".join(str(d).removeprefix("torch.") for d in crash.dtypes)
        hint = f"{names} tensors meet in {crash.op}: it computes in another dtype internally"
    elif crash.op:
        hint = f"{crash.op} has no kernel at this dtype on this device"
    else:
        hint = "one real lane, alone and unpadded, fails at this dtype and runs at float32"
    return f"{hint} ({mode}): {seen}; {alternative}"
