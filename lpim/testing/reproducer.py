"""Pasteable Python that re-raises a property failure: the exact tensors and the failing assert."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from lpim._version import __version__
from lpim.batch import LaneBatch

__all__ = ["encoder_source", "reproducer"]


def encoder_source(encoder: object, factory: str | None = None) -> tuple[list[str], str]:
    """`(import lines, expression)` that rebuild `encoder` in a fresh interpreter.

    `factory` is `"module:expression"`: the expression, evaluated in the module, is the
    encoder or a zero-argument callable returning it. Without it, an instance of an importable
    class is rebuilt from its constructor arguments that the instance stores under the same
    names (as `PriorEncoder` and the zoo do). Weights are those of a fresh construction after
    `torch.manual_seed(0)`: mask bugs do not depend on them.
    """
    if factory is not None:
        module, _, expression = factory.partition(":")
        alias = "_factory"
        return [f"import {module}"], (
            f"(lambda {alias}: {alias}() if callable({alias}) and not isinstance({alias}, "
            f"torch.nn.Module) else {alias})(eval({expression!r}, vars({module})))"
        )
    cls = type(encoder)
    module_name, qualname = cls.__module__, cls.__qualname__
    try:
        found = _resolve(module_name, qualname)
    except (ImportError, AttributeError):
        found = None
    if found is not cls or "<locals>" in qualname or module_name == "__main__":
        return [], "...  # build the encoder you checked here (its class is not importable)"
    kwargs = _constructor_arguments(encoder, cls)
    arguments = ", ".join(f"{name}={value!r}" for name, value in kwargs.items())
    top = qualname.split(".")[0]
    return [f"from {module_name} import {top}"], f"{qualname}({arguments})"


def reproducer(
    example: LaneBatch,
    assert_name: str,
    property_name: str,
    encoder: object,
    factory: str | None = None,
    call: str | None = None,
    *,
    keywords: str = "",
    autocast: str | None = None,
) -> str:
    """Python source that rebuilds `example` exactly and calls `lpim.testing.<assert_name>`.

    `call`, when given, replaces that last line: source that uses `encoder`, `points`,
    `point_mask`, `LaneBatch` and `EncoderPropertyError` (used for the `deadline`
    check, which no assert function times). `keywords` (e.g. `", garbage='finite'"`) are
    appended to the assert's arguments; `autocast` (a dtype such as `"torch.bfloat16"`)
    runs the assert under `torch.autocast` at that dtype, as the check did.
    """
    imports, build = encoder_source(encoder, factory)
    dtype = example.points.dtype
    device = example.points.device
    on_device = "" if device.type == "cpu" else f", device={str(device)!r}"
    to_device = "" if device.type == "cpu" else f".to({str(device)!r})"
    lines = [
        f"# lpim {__version__} reproducer: property {property_name!r} at {dtype}",
        "import torch",
        "",
        "from lpim import LaneBatch",
        f"from lpim.testing import {assert_name if call is None else 'EncoderPropertyError'}",
        *imports,
        "",
        "nan, inf = float('nan'), float('inf')",
        "torch.manual_seed(0)",
        f"encoder = {build}",
        "if isinstance(encoder, torch.nn.Module):",
        f"    encoder = encoder.to({dtype}){to_device}.eval()",
        f"points = torch.tensor({example.points.tolist()!r}, dtype={dtype}{on_device})",
        f"point_mask = torch.tensor({example.point_mask.tolist()!r}{on_device})",
        "points = points.reshape(" + ", ".join(map(str, example.points.shape)) + ")",
        "point_mask = point_mask.reshape(" + ", ".join(map(str, example.point_mask.shape)) + ")",
        *_last_lines(
            f"{assert_name}(encoder, LaneBatch(points, point_mask){keywords})"
            if call is None
            else call,
            autocast,
            device.type,
        ),
        "",
    ]
    return "\n".join(lines)


def _last_lines(call: str, autocast: str | None, device_type: str) -> list[str]:
    if autocast is None:
        return call.splitlines()
    return [
        f"with torch.autocast({device_type!r}, dtype={autocast}):",
        *(f"    {line}" if line else line for line in call.splitlines()),
    ]


def _resolve(module_name: str, qualname: str) -> Any:
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _constructor_arguments(encoder: object, cls: type) -> dict[str, Any]:
    """Constructor parameters the instance stores under their own names, as plain literals."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    found: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            continue
        value = getattr(encoder, name, parameter.default)
        if value is not parameter.default and isinstance(value, bool | int | float | str):
            found[name] = value
    return found
