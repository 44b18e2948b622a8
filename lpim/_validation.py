"""Argument validation shared by every public lpim function: one wording per mistake.

Each check names the argument, what it expects and what came. Type mistakes (a string where an
int belongs, a bool where a count belongs) raise `TypeError`; out-of-range values raise the
caller's value error, `ValueError` by default (`lpim.strategies` passes Hypothesis'
`InvalidArgument`, which Hypothesis reports as a usage error of the strategy).

Only torch and the standard library are imported here, so every floor of lpim may use it.
"""

from __future__ import annotations

import operator

import torch

__all__ = [
    "POINT_MASK_DTYPE_FIX",
    "check_device",
    "check_floating_dtype",
    "check_int",
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


def check_int(
    value: object,
    name: str,
    where: str,
    *,
    minimum: int,
    value_error: type[Exception] = ValueError,
) -> int:
    """`value` as an int of at least `minimum` (a bool is not an int here).

    Args:
        value: what the caller passed.
        name: the argument's name, as the caller wrote it.
        where: the public function the argument was passed to.
        minimum: the smallest value allowed.
        value_error: raised for an int below `minimum`.

    Returns:
        The value, as an `int`.

    Raises:
        TypeError: `value` is not an integer (a float, a bool, a string, None, ...).
        ValueError: `value` is below `minimum` (or `value_error` when given).
    """
    if isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be an int >= {minimum}; got the bool {value}")
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{where}: {name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})"
        ) from None
    if count < minimum:
        raise value_error(f"{name} must be >= {minimum}; got {count} (in {where})")
    return count


def check_device(
    value: object,
    *,
    name: str = "device",
    why_data: str = "its values are read",
    type_error: type[Exception] = TypeError,
    value_error: type[Exception] = ValueError,
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
    return chosen


def check_floating_dtype(
    value: object, *, name: str = "dtype", type_error: type[Exception] = TypeError
) -> torch.dtype:
    """`value` as a floating `torch.dtype` (float16, bfloat16, float32, float64, ...).

    Raises:
        TypeError: `value` is not a floating `torch.dtype` (or `type_error` when given).
    """
    if not (isinstance(value, torch.dtype) and value.is_floating_point):
        raise type_error(f"{name} must be a floating torch.dtype; got {value!r}")
    return value
