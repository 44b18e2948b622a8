"""Argument validation shared by every public lpim function: one wording per mistake.

Each check names the argument, what it expects and what came. Type mistakes (a string where an
int belongs, a bool where a count belongs) raise `TypeError`; out-of-range values raise the
caller's value error, `UsageValueError` by default (both are `lpim._errors.UsageError`s and
the builtin error Python code expects) (`lpim.strategies` passes Hypothesis'
`InvalidArgument`, which Hypothesis reports as a usage error of the strategy).

Only torch and the standard library are imported here, so every floor of lpim may use it.
"""

from __future__ import annotations

import math
import operator

import torch

from lpim._errors import UsageTypeError, UsageValueError

__all__ = [
    "POINT_MASK_DTYPE_FIX",
    "check_bool",
    "check_callable",
    "check_device",
    "check_floating_dtype",
    "check_int",
    "check_positive_number",
    "check_size",
    "mask_dtype_fix",
    "no_values_message",
    "point_mask_dtype_message",
]

POINT_MASK_DTYPE_FIX = (
    "convert with point_mask.bool() if 1 = real, or ~ if it is a key_padding_mask"
)
"""How to fix a `point_mask` of another dtype; the same words as `lpim/encoder.py`'s check."""


def point_mask_dtype_message(dtype: object) -> str:
    """The one wording of "point_mask is not bool", as `lpim/encoder.py` says it.

    `lpim/encoder.py` is vendorable and imports nothing from lpim, so it spells the sentence
    itself; `tests/test_batch.py` checks that both still say the same thing.
    """
    return (
        f"point_mask must be torch.bool with True = real point; got {dtype} — "
        f"{POINT_MASK_DTYPE_FIX}"
    )


def mask_dtype_fix(name: str) -> str:
    """How to fix a mask `name` of the library convention (True = real) that is not bool:
    `POINT_MASK_DTYPE_FIX`, for that mask."""
    return POINT_MASK_DTYPE_FIX.replace("point_mask", name)


def no_values_message(holder: str, why: str) -> str:
    """The one wording of "tensors on the meta device where values are read" (`LaneBatch`,
    `LaneSet`): `holder` holds values because `why`."""
    return (
        f"a {holder} holds values ({why}); expected tensors on a device with data "
        "(cpu, cuda, ...), got tensors on the meta device"
    )


def _got(value: object) -> str:
    """What came, for a message: its repr (shortened) and its type."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__name__})"


def check_bool(value: object, name: str, *, type_error: type[Exception] = UsageTypeError) -> bool:
    """`value` as a bool (True or False; 1, 0, "yes" and None are not).

    Raises:
        TypeError: `value` is not a bool (or `type_error` when given).
    """
    if not isinstance(value, bool):
        raise type_error(f"{name} must be True or False; got {_got(value)}")
    return value


def check_callable(
    value: object, name: str, signature: str, *, type_error: type[Exception] = UsageTypeError
) -> None:
    """`value` is callable as `signature` (e.g. `"consumer(lane_embedding, lane_mask)"`).

    Raises:
        TypeError: `value` is not callable (or `type_error` when given).
    """
    if not callable(value):
        raise type_error(f"{name} must be callable as {signature}; got {_got(value)}")


def check_positive_number(
    value: object,
    name: str,
    *,
    type_error: type[Exception] = UsageTypeError,
    value_error: type[Exception] = UsageValueError,
) -> float:
    """`value` as a positive finite number (an int or a float; a bool is not a number here).

    Raises:
        TypeError: `value` is not a number (or `type_error` when given).
        ValueError: `value` is zero, negative, inf or NaN (or `value_error` when given).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(f"{name} must be a positive finite number; got {_got(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise value_error(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def check_size(
    value: object,
    name: str,
    where: str | None = None,
    *,
    minimum: int = 0,
    type_error: type[Exception] = UsageTypeError,
    value_error: type[Exception] = UsageValueError,
) -> tuple[int, int]:
    """A size: an int >= `minimum` or an inclusive `(low, high)` range of them, low <= high.

    Returns:
        `(low, high)` (`(value, value)` for an int).

    Raises:
        TypeError: not an int or a tuple of one or two ints (or `type_error` when given).
        ValueError: below `minimum`, or `low > high` (or `value_error` when given).
    """
    prefix, suffix = (f"{where}: ", f" (in {where})") if where else ("", "")
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, bool) or not isinstance(value, int | tuple) or len(values) not in (1, 2):
        raise type_error(
            f"{prefix}{name} must be an int or a (min, max) tuple of ints; got {_got(value)}"
        )
    low, high = (
        check_int(v, name, where, minimum=minimum, type_error=type_error, value_error=value_error)
        for v in (values * 2)[:2]
    )
    if low > high:
        raise value_error(f"{name} must satisfy min <= max; got {value!r}{suffix}")
    return low, high


def check_int(
    value: object,
    name: str,
    where: str | None = None,
    *,
    minimum: int,
    type_error: type[Exception] = UsageTypeError,
    value_error: type[Exception] = UsageValueError,
) -> int:
    """`value` as an int of at least `minimum` (a bool is not an int here).

    Args:
        value: what the caller passed.
        name: the argument's name, as the caller wrote it.
        where: the public function the argument was passed to (None: the caller adds it).
        minimum: the smallest value allowed.
        type_error: raised for a value that is not an int.
        value_error: raised for an int below `minimum`.

    Returns:
        The value, as an `int`.

    Raises:
        TypeError: `value` is not an integer (a float, a bool, a string, None, ...) (or
            `type_error` when given).
        ValueError: `value` is below `minimum` (or `value_error` when given).
    """
    prefix, suffix = (f"{where}: ", f" (in {where})") if where else ("", "")
    if isinstance(value, bool):
        raise type_error(f"{prefix}{name} must be an int >= {minimum}; got the bool {value}")
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise type_error(
            f"{prefix}{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})"
        ) from None
    if count < minimum:
        raise value_error(f"{name} must be >= {minimum}; got {count}{suffix}")
    return count


def check_device(
    value: object,
    *,
    name: str = "device",
    why_data: str = "its values are read",
    type_error: type[Exception] = UsageTypeError,
    value_error: type[Exception] = UsageValueError,
) -> torch.device:
    """`value` as a `torch.device` that torch knows, that holds data and that is available.

    Args:
        value: a `str` or `torch.device`.
        name: the argument's name.
        why_data: why the `meta` device (shapes only, no values) will not do.
        type_error: raised when `value` is not a `str` or `torch.device`.
        value_error: raised for an unknown, `meta` or unavailable device.

    Returns:
        The device.

    Raises:
        TypeError: `value` is not a `str` or `torch.device` (or `type_error` when given).
        ValueError: a device torch does not know, `meta`, or one that is not available (or
            `value_error` when given).
    """
    if isinstance(value, bool) or not isinstance(value, str | torch.device):
        raise type_error(f"{name} must be a str or torch.device; got {value!r}")
    try:
        chosen = torch.device(value)
    except RuntimeError as error:
        raise value_error(
            f"{name} must be one torch knows (cpu, cuda, ...); got {value!r} ({error})"
        ) from None
    if chosen.type == "meta":
        raise value_error(f"{name} must hold data ({why_data}); got the meta device")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise value_error(
            f"{name} must be available; got {str(chosen)!r}, but torch.cuda.is_available() is "
            f"False (torch {torch.__version__})"
        )
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise value_error(
            f"{name} must be available; got {str(chosen)!r}, but torch.cuda.device_count() is "
            f"{torch.cuda.device_count()}"
        )
    return chosen


def check_floating_dtype(
    value: object, *, name: str = "dtype", type_error: type[Exception] = UsageTypeError
) -> torch.dtype:
    """`value` as a floating `torch.dtype` (float16, bfloat16, float32, float64, ...).

    Raises:
        TypeError: `value` is not a floating `torch.dtype` (or `type_error` when given).
    """
    if not (isinstance(value, torch.dtype) and value.is_floating_point):
        raise type_error(f"{name} must be a floating torch.dtype; got {value!r}")
    return value
