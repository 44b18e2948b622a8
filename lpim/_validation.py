"""Argument validation shared by every public lpim function: one wording per mistake.

Each check names the argument, what it expects and what came. Type mistakes (a string where an
int belongs, a bool where a count belongs) raise `TypeError`; out-of-range values raise the
caller's value error, `UsageValueError` by default (both are `lpim._errors.UsageError`s and
the builtin error Python code expects) (`lpim.strategies` passes Hypothesis'
`InvalidArgument`, which Hypothesis reports as a usage error of the strategy).

Only the standard library is imported when this module loads (torch inside the checks that
need it), so every floor of lpim may use it, the doors that must not load torch included (the
options of the pytest plugin and the `lpim` command).
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lpim._errors import UsageError, UsageTypeError, UsageValueError

if TYPE_CHECKING:
    import torch

__all__ = [
    "INT64_MAX",
    "POINT_MASK_DTYPE_FIX",
    "WHY_BATCH_VALUES",
    "WHY_LANE_SET_VALUES",
    "allocating",
    "check_allocatable",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_dense",
    "check_device",
    "check_fill",
    "check_floating_dtype",
    "check_int",
    "check_positive_number",
    "check_real_number",
    "check_size",
    "dense_message",
    "mask_dtype_fix",
    "no_values_message",
    "point_mask_dtype_message",
    "shown",
]

POINT_MASK_DTYPE_FIX = (
    "convert with point_mask.bool() if 1 = real, or ~ if it is a key_padding_mask"
)
"""How to fix a `point_mask` of another dtype; the same words as `lpim/encoder.py`'s check."""


WHY_BATCH_VALUES = "a lane batch's real points are checked to be finite"
"""Why a `LaneBatch` needs a device with data (the `why_data` of `check_device`)."""

WHY_LANE_SET_VALUES = "a lane set's real lanes are checked to be finite"
"""Why a `LaneSet` needs a device with data (the `why_data` of `check_device`)."""


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


def shown(value: object) -> str:
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
        raise type_error(f"{name} must be True or False; got {shown(value)}")
    return value


def check_callable(
    value: object,
    name: str,
    signature: str,
    *,
    args: Sequence[object] | None = None,
    type_error: type[Exception] = UsageTypeError,
) -> None:
    """`value` is callable as `signature` (e.g. `"consumer(lane_embedding, lane_mask)"`).

    Args:
        value: what the caller passed.
        name: the argument's name.
        signature: how lpim will call it, for the message.
        args: when given, the positional arguments lpim will pass: a callable whose signature
            cannot take them is refused here, not with a `TypeError` from inside lpim later.
        type_error: raised for a value that is not callable as `signature`.

    Raises:
        TypeError: `value` is not callable, or cannot take `args` (or `type_error` when given).
    """
    if not callable(value):
        raise type_error(f"{name} must be callable as {signature}; got {shown(value)}")
    if args is None:
        return
    try:
        parameters = inspect.signature(value)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        parameters.bind(*args)
    except TypeError:
        raise type_error(
            f"{name} must be callable as {signature}; got {shown(value)}, which takes {parameters}"
        ) from None


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
        raise type_error(f"{name} must be a positive finite number; got {shown(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise value_error(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def check_real_number(
    value: object,
    name: str,
    where: str | None = None,
    *,
    type_error: type[Exception] = UsageTypeError,
) -> float:
    """`value` as a real number (an int or a float, NaN and inf included; a bool is not one).

    Raises:
        TypeError: `value` is not an int or a float (or `type_error` when given).
    """
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(f"{prefix}{name} must be a number (an int or a float); got {shown(value)}")
    return float(value)


def check_fill(
    value: object,
    dtype: torch.dtype,
    name: str = "fill",
    where: str | None = None,
    *,
    type_error: type[Exception] = UsageTypeError,
    value_error: type[Exception] = UsageValueError,
) -> float | int:
    """`value` as a number a tensor of `dtype` holds: no silent truncation, wrap-around or
    overflow (a float beyond the dtype's largest finite value; inf and NaN are floats' own).

    Returns:
        The value, as the int or float to hand torch.

    Raises:
        TypeError: `value` is not an int or a float (or `type_error` when given).
        ValueError: `dtype` cannot hold it (or `value_error` when given).
    """
    import torch

    prefix = f"{where}: " if where else ""
    number = check_real_number(value, name, where, type_error=type_error)
    if dtype.is_floating_point or dtype.is_complex:
        largest = torch.finfo(dtype).max
        if not math.isfinite(number) or abs(number) <= largest:
            return number
        holds = f"a float of magnitude at most {largest:g}, inf or NaN"
    elif dtype == torch.bool:
        if number in (0.0, 1.0):
            return int(number)
        holds = "0 or 1"
    else:
        info = torch.iinfo(dtype)
        exact = value if isinstance(value, int) else number  # a big int loses digits as float
        if float(number).is_integer() and info.min <= exact <= info.max:
            return int(exact)
        holds = f"an integer in [{info.min}, {info.max}]"
    raise value_error(f"{prefix}{name} must be a value {dtype} holds ({holds}); got {value!r}")


def check_choice(
    value: object,
    name: str,
    allowed: Sequence[str],
    where: str | None = None,
    *,
    value_error: type[Exception] = UsageValueError,
) -> str:
    """`value` as one of the strings `allowed` (an unhashable value is just not one of them).

    Raises:
        ValueError: `value` is not one of `allowed` (or `value_error` when given).
    """
    prefix = f"{where}: " if where else ""
    if not (isinstance(value, str) and value in allowed):
        raise value_error(f"{prefix}{name} must be one of {tuple(allowed)}; got {shown(value)}")
    return value


def dense_message(tensor: torch.Tensor, name: str) -> str:
    """The one wording of "a sparse (or nested) tensor where a dense one belongs"."""
    kind = "nested" if tensor.is_nested else str(tensor.layout)
    fix = "torch.nested.to_padded_tensor" if tensor.is_nested else ".to_dense()"
    return (
        f"{name} must be a dense (torch.strided) tensor; got a {kind} tensor — convert it "
        f"with {fix}"
    )


def check_dense(
    tensor: torch.Tensor,
    name: str,
    where: str | None = None,
    *,
    type_error: type[Exception] = UsageTypeError,
) -> torch.Tensor:
    """Refuse a sparse, sparse-compressed or nested tensor: lpim reads dense tensors only.

    Raises:
        TypeError: `tensor` is not a dense (`torch.strided`, not nested) tensor (or
            `type_error` when given).
    """
    import torch

    if tensor.is_nested or tensor.layout != torch.strided:
        prefix = f"{where}: " if where else ""
        raise type_error(prefix + dense_message(tensor, name))
    return tensor


_ALLOCATION_ERRORS = (RuntimeError, TypeError, ValueError, MemoryError, OverflowError)
"""What torch raises for a tensor it cannot allocate: out of memory (`torch.OutOfMemoryError`
is a `RuntimeError`), a size beyond int64 (`TypeError`, `OverflowError`)."""


@contextmanager
def allocating(
    what: str,
    knobs: str,
    *,
    tensors: Sequence[tuple[Sequence[int], torch.dtype]],
    device: torch.device | str,
    value_error: type[Exception] = UsageValueError,
) -> Iterator[None]:
    """Turn torch's failure to allocate a tensor whose size the caller chose into a usage error.

    `what` says what was being built (e.g. `"to_key_padding_mask: the (B*M, query_tokens + N)
    mask (2, 100000000003)"`), `knobs` the arguments that set its size (`"query_tokens"`), and
    `tensors` every tensor the block allocates, as `(shape, dtype)` pairs on `device`:
    intermediates too, since with a zero-sized axis the result can be empty while an
    intermediate (an `arange`, an index) is not. Whether a failure inside the block is the
    size's is decided by experiment, never by torch's wording: each of those tensors is
    allocated alone (`torch.empty`), and only if one fails too is the size blamed; otherwise
    the block's own error is raised as it came.

    Raises:
        ValueError: a tensor of the block cannot be allocated (or `value_error` when given).
    """
    try:
        yield
    except UsageError:
        raise
    except _ALLOCATION_ERRORS:
        for shape, dtype in tensors:
            reason = _allocation_failure(shape, dtype, device)
            if reason is not None:
                raise value_error(_too_large(what, knobs, reason)) from None
        raise


def _allocation_failure(
    shape: Sequence[int], dtype: torch.dtype, device: torch.device | str
) -> str | None:
    """Why a `shape` tensor of `dtype` cannot be allocated on `device` (that tensor, and
    torch's error, its first line, shortened), or None when it can."""
    import torch

    try:
        probe = torch.empty(tuple(shape), dtype=dtype, device=device)
    except _ALLOCATION_ERRORS as error:
        text = str(error).strip()
        first = text.splitlines()[0].strip() if text else ""
        return f"a {tuple(shape)} {dtype} tensor: {type(error).__name__}: {first[:160]}"
    del probe
    return None


def extent(sizes: Sequence[int]) -> int:
    """The product of the non-zero `sizes`: how far a tensor of that shape's strides reach.

    torch ("Stride calculation overflowed") and numpy ("array is too big") refuse a shape
    whose extent overflows, even when a zero-sized axis leaves it empty, so a size limit
    multiplies this, never the element count, which a single 0 would hide.
    """
    return math.prod(size for size in sizes if size != 0)


def check_allocatable(
    shape: Sequence[int], what: str, knobs: str, *, value_error: type[Exception] = UsageValueError
) -> None:
    """Refuse a `shape` that no dtype can hold (an `extent` over `INT64_MAX` bytes at 8 bytes
    each, empty axes aside): torch cannot size such a tensor even on the `meta` device. Same
    words as `allocating`.

    Raises:
        ValueError: too many elements (or `value_error` when given).
    """
    reach = extent(shape)
    if reach * 8 > INT64_MAX:
        raise value_error(_too_large(what, knobs, f"{reach} elements, over 2**63 bytes"))


def _too_large(what: str, knobs: str, reason: str) -> str:
    """The one wording of "a tensor whose size the caller chose cannot be allocated"."""
    return f"{what} is too large to allocate ({reason}); lower {knobs}"


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
            f"{prefix}{name} must be an int or a (min, max) tuple of ints; got {shown(value)}"
        )
    low, high = (
        check_int(v, name, where, minimum=minimum, type_error=type_error, value_error=value_error)
        for v in (values * 2)[:2]
    )
    if low > high:
        raise value_error(f"{name} must satisfy min <= max; got {value!r}{suffix}")
    return low, high


INT64_MAX = 2**63 - 1
"""The largest size torch represents (its sizes are int64): `check_int` refuses beyond it."""


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
        ValueError: `value` is below `minimum`, or above `INT64_MAX` (or `value_error` when
            given).
    """
    prefix, suffix = (f"{where}: ", f" (in {where})") if where else ("", "")
    if isinstance(value, bool):
        raise type_error(f"{prefix}{name} must be an int >= {minimum}; got the bool {value}")
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise type_error(
            f"{prefix}{name} must be an int >= {minimum}; got {shown(value)}"
        ) from None
    if count < minimum:
        raise value_error(f"{name} must be >= {minimum}; got {count}{suffix}")
    if count > INT64_MAX:
        raise value_error(
            f"{name} must be at most {INT64_MAX} (torch's int64 sizes); got {count}{suffix}"
        )
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

    Available: CUDA by `torch.cuda.is_available()` and `torch.cuda.device_count()`; any other
    device but the CPU (`mps`, `xpu`, `hpu`, ...) by whether torch can make a tensor there.

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
    import torch

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
    if chosen.type not in ("cpu", "cuda"):
        missing = _unavailable(chosen)
        if missing:
            raise value_error(
                f"{name} must be available; got {str(chosen)!r}, but {missing} "
                f"(torch {torch.__version__})"
            )
    return chosen


def _unavailable(device: torch.device) -> str:
    """Why torch cannot place a tensor on `device` here ('' if it can): mps, xpu, hpu, ...

    Tried once per device and remembered: making an empty tensor is the one test every
    backend answers (a backend torch was built without, a missing module, no device).
    """
    import torch

    key = str(device)
    if key not in _AVAILABILITY:
        try:
            torch.empty(0, device=device)
            _AVAILABILITY[key] = ""
        except Exception as error:  # each backend fails in its own way
            first = next((line for line in str(error).splitlines() if line.strip()), "")
            _AVAILABILITY[key] = (
                f"torch cannot make a tensor there ({type(error).__name__}: {first[:120]})"
            )
    return _AVAILABILITY[key]


_AVAILABILITY: dict[str, str] = {}
"""`_unavailable`'s answers by device, so that a check does not retry a backend each call."""


def check_floating_dtype(
    value: object, *, name: str = "dtype", type_error: type[Exception] = UsageTypeError
) -> torch.dtype:
    """`value` as a floating `torch.dtype` (float16, bfloat16, float32, float64, ...).

    Raises:
        TypeError: `value` is not a floating `torch.dtype` (or `type_error` when given).
    """
    import torch

    if not (isinstance(value, torch.dtype) and value.is_floating_point):
        raise type_error(f"{name} must be a floating torch.dtype; got {value!r}")
    return value


def convert_input(value: Any, device: str | torch.device | None, dtype: torch.dtype | None) -> Any:
    """An other input (`LaneBatch.args`, `LaneSet.kwargs`, ...) moved: tensors to `device`,
    floating ones to `dtype`; anything else as it is."""
    import torch

    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point() and dtype is not None:
        return value.to(device=device, dtype=dtype)
    return value.to(device) if device is not None else value


def value_summary(value: Any) -> str:
    """An other input in a few words, for a repr: `Tensor[2, 16] float32`, else its repr."""
    import torch

    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"Tensor{list(value.shape)} {dtype}"
    return repr(value)
