"""Pasteable Python that re-raises a property failure: the exact tensors and the failing assert."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch

from lpim._version import __version__
from lpim.batch import LaneBatch
from lpim.lane_set import LaneSet
from lpim.testing.deadline import hard_stop

__all__ = ["deadline_call", "encoder_source", "reproducer"]


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
    example: LaneBatch | LaneSet,
    assert_name: str,
    property_name: str,
    subject: object,
    factory: str | None = None,
    call: str | None = None,
    *,
    keywords: str = "",
    autocast: str | None = None,
) -> str:
    """Python source that rebuilds `example` exactly and calls `lpim.testing.<assert_name>`.

    One builder for both sides: a [`LaneBatch`][lpim.LaneBatch] example is checked on an
    `encoder`, a [`LaneSet`][lpim.LaneSet] (its other inputs included) on a `consumer`; the
    subject is rebuilt by `encoder_source`. `call`, when given, replaces the last line:
    source that uses `encoder`, `points`, `point_mask`, `LaneBatch` and
    `EncoderPropertyError` (used for the `deadline` check, which no assert function times).
    `keywords` (e.g. `", garbage='finite'"`) are appended to the assert's arguments;
    `autocast` (a dtype such as `"torch.bfloat16"`) runs the assert under `torch.autocast`
    at that dtype, as the check did.
    """
    imports, build = encoder_source(subject, factory)
    if isinstance(example, LaneBatch):
        role, label, example_type = "encoder", "property", "LaneBatch"
        tensor = example.points
        inputs = [
            f"points = {_tensor_source(example.points)}",
            f"point_mask = {_tensor_source(example.point_mask)}",
        ]
        built = "LaneBatch(points, point_mask)"
    else:
        role, label, example_type = "consumer", "lane-consumer property", "LaneSet"
        tensor = example.lane_embedding
        args = "".join(f"\n    {_value_source(v)}," for v in example.args)
        kwargs = "".join(f"\n    {k!r}: {_value_source(v)}," for k, v in example.kwargs.items())
        inputs = [
            f"lane_embedding = {_tensor_source(example.lane_embedding)}",
            f"lane_mask = {_tensor_source(example.lane_mask)}",
            f"args = ({args}\n)",
            f"kwargs = {{{kwargs}\n}}",
        ]
        built = "LaneSet(lane_embedding, lane_mask, args, kwargs)"
    dtype, device = tensor.dtype, tensor.device
    to_device = "" if device.type == "cpu" else f".to({str(device)!r})"
    last = f"{assert_name}({role}, {built}{keywords})" if call is None else call
    lines = [
        f"# lpim {__version__} reproducer: {label} {property_name!r} at {dtype}",
        "import torch",
        "",
        f"from lpim import {example_type}",
        f"from lpim.testing import {assert_name if call is None else 'EncoderPropertyError'}",
        *imports,
        "",
        "nan, inf = float('nan'), float('inf')",
        "torch.manual_seed(0)",
        f"{role} = {build}",
        f"if isinstance({role}, torch.nn.Module):",
        f"    {role} = {role}.to({dtype}){to_device}.eval()",
        *inputs,
        *_last_lines(last, autocast, device.type),
        "",
    ]
    return "\n".join(lines)


def deadline_call(deadline: float) -> str:
    """Reproducer lines (the `call` of `reproducer`) that time the encoder twice, each call
    stopped after `lpim.testing.deadline.hard_stop(deadline)` seconds as the check's were,
    and raise property `deadline` as the check did: a reproducer of a hang ends too."""
    return "\n".join(
        [
            "import time",
            "",
            "from lpim.testing.deadline import CallTimedOut, call_within",
            "",
            f"deadline, stop = {deadline!r}, {hard_stop(deadline)!r}  # seconds",
            "times = []",
            "for _ in range(2):  # the first call on a new shape is often slow: time it twice",
            "    started = time.perf_counter()",
            "    try:",
            "        call_within(stop, encoder, points.clone(), point_mask.clone())",
            "    except CallTimedOut:  # it did not return within `stop` seconds: stopped",
            "        pass",
            "    times.append(time.perf_counter() - started)",
            "if min(times) > deadline:",
            "    raise EncoderPropertyError(",
            '        "deadline",',
            '        f"one call took {times[0]:.3g} s, then {times[1]:.3g} s (a call is stopped "',
            '        f"after {stop:g} s); the deadline is {deadline:g} s",',
            "        LaneBatch(points, point_mask),",
            "    )",
        ]
    )


def _tensor_source(value: torch.Tensor) -> str:
    on_device = "" if value.device.type == "cpu" else f", device={str(value.device)!r}"
    shape = ", ".join(map(str, value.shape)) + ("," if value.dim() == 1 else "")
    return (
        f"torch.tensor({value.detach().cpu().tolist()!r}, dtype={value.dtype}{on_device})"
        f".reshape({shape})"
    )


def _value_source(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return _tensor_source(value)
    if isinstance(value, bool | int | float | str | type(None)):
        return repr(value)
    return f"...  # a {type(value).__name__}: rebuild it here"


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
