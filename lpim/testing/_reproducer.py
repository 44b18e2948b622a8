"""Pasteable Python that re-raises a property failure: the exact tensors and the failing assert.

`reproducer` builds the source; `write_reproducers` writes one file per failure into a folder
(`lpim check --reproducer-dir`), and never overwrites a file lpim did not write (see there).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lpim._errors import UsageError
from lpim._version import __version__
from lpim.batch import LaneBatch
from lpim.lane_set import LaneSet
from lpim.testing._deadline import hard_stop
from lpim.testing._property_errors import PropertyError
from lpim.testing._protocol import Adapted

__all__ = [
    "REPRODUCER_MARKER",
    "deadline_call",
    "encoder_source",
    "is_lpim_reproducer",
    "reproducer",
    "reproducer_filename",
    "write_reproducers",
]

REPRODUCER_MARKER = re.compile(r"# lpim \S+ reproducer: ")
"""The first line of every reproducer: `# lpim <version> reproducer: ...`."""


def encoder_source(encoder: object, factory: str | None = None) -> tuple[list[str], str]:
    """`(import lines, expression)` that rebuild `encoder` in a fresh interpreter.

    `factory` is `"module:expression"`: the expression, evaluated in the module, is the
    encoder or a zero-argument callable returning it. Without it, an instance of an importable
    class is rebuilt from its constructor arguments that the instance stores under the same
    names (as `PriorEncoder` and the zoo do). Weights are those of a fresh construction after
    `torch.manual_seed(0)`: mask bugs do not depend on them.
    """
    if isinstance(encoder, Adapted):  # as it is called: rebuilt around the user's encoder
        imports, inner = encoder_source(encoder.inner, factory)
        arguments = encoder.arguments()
        return [*imports, "from lpim.testing import Adapted"], f"Adapted({inner}, {arguments})"
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
        if example.args or example.kwargs:  # the encoder's per-sample context
            inputs += _other_inputs_lines(example.args, example.kwargs)
            built = "LaneBatch(points, point_mask, args, kwargs)"
    else:
        role, label, example_type = "consumer", "lane-consumer property", "LaneSet"
        tensor = example.lane_embedding
        inputs = [
            f"lane_embedding = {_tensor_source(example.lane_embedding)}",
            f"lane_mask = {_tensor_source(example.lane_mask)}",
            *_other_inputs_lines(example.args, example.kwargs),
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
    stopped after `lpim.testing._deadline.hard_stop(deadline)` seconds as the check's were,
    and raise property `deadline` as the check did: a reproducer of a hang ends too."""
    return "\n".join(
        [
            "import time",
            "",
            "from lpim.testing._deadline import CallTimedOut, call_within",
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


def _other_inputs_lines(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[str]:
    """`args = (...)` and `kwargs = {...}`: the other inputs, rebuilt exactly."""
    positional = "".join(f"\n    {_value_source(v)}," for v in args)
    keywords = "".join(f"\n    {k!r}: {_value_source(v)}," for k, v in kwargs.items())
    return [f"args = ({positional}\n)", f"kwargs = {{{keywords}\n}}"]


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


# -- files -----------------------------------------------------------------------------------------

_SIGNATURE = (
    "# lpim wrote this file (sha256 {digest}); a later run replaces it only while it is unchanged"
)
_SIGNED = re.compile(r"# lpim wrote this file \(sha256 ([0-9a-f]{16})\)")
_MOST_NAMES = 100  # runs_float32.py, runs_float32_2.py, ... runs_float32_100.py
_LARGEST_READ = 64 * 2**20  # a larger file is nobody's reproducer: never read whole, never lpim's


def reproducer_filename(failure: PropertyError[Any]) -> str:
    """The file name a failure's reproducer gets: `<property>_<dtype>.py`
    (`matches_unpadded_float32.py`), unless a file lpim may not replace holds it."""
    return f"{failure.property_name}_{failure.dtype.removeprefix('torch.')}.py"


def is_lpim_reproducer(path: Path) -> bool:
    """True when `path` is a reproducer that `write_reproducers` wrote and nobody changed since:
    a regular file whose first line is `REPRODUCER_MARKER`, whose second line is lpim's
    signature, and whose content still has the digest the signature records."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _LARGEST_READ:
            return False
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    first, _, rest = text.partition("\n")
    second, _, body = rest.partition("\n")
    signed = _SIGNED.match(second)
    return bool(
        REPRODUCER_MARKER.match(first) and signed and signed.group(1) == _digest(first, body)
    )


def write_reproducers(
    failures: Sequence[PropertyError[Any]],
    directory: str | os.PathLike[str],
    *,
    sys_path: Sequence[str] = (),
    option: str = "directory",
) -> list[Path]:
    """Write each failure's reproducer into `directory` (created if missing); the paths
    written, in the order of `failures`.

    Each file is named by `reproducer_filename` and signed: its second line records a digest of
    its content. lpim replaces a file only when it is its own reproducer, unchanged since it was
    written (`is_lpim_reproducer`): the stale reproducer of an earlier run. Any other file under
    that name (yours, or a reproducer you edited) is left exactly as it is, and the reproducer
    goes to the first free name after it (`runs_float32_2.py`, ...): a careful user points
    `--reproducer-dir` at their own folder expecting files to be added, never lost, and a
    folder refused for holding other files would make that flag useless for the current
    folder. Each file is written whole, then moved into place.

    Args:
        failures: the failures (each with its reproducer and dtype).
        directory: the folder.
        sys_path: folders put first on the reproducer's `sys.path` (where the checked code was
            imported from), so that it runs from any folder.
        option: how the caller names `directory` in messages (`"--reproducer-dir"`).

    Raises:
        UsageError: `directory` is a file, cannot be created, or cannot be written into
            (read-only, full): naming the folder, `option`, and the reproducers written before.
    """
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise _unusable(folder, option, "it is a file, not a folder", [])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unusable(folder, option, f"it cannot be created ({_reason(error)})", []) from error
    written: list[Path] = []
    for failure in failures:
        try:
            written.append(_write_one(failure, folder, sys_path, written))
        except OSError as error:
            raise _unusable(
                folder, option, f"it cannot be written into ({_reason(error)})", written
            ) from error
    return written


def _write_one(
    failure: PropertyError[Any], folder: Path, sys_path: Sequence[str], taken: list[Path]
) -> Path:
    text = _signed(failure.reproducer, sys_path)
    name = reproducer_filename(failure)
    stem = name.removesuffix(".py")
    for number in range(1, _MOST_NAMES + 1):
        path = folder / (name if number == 1 else f"{stem}_{number}.py")
        if path in taken:  # two failures of this run under one name: both kept
            continue
        if not os.path.lexists(path):
            try:
                _write_new(path, text)
            except FileExistsError:  # appeared meanwhile: not ours
                continue
            return path
        if is_lpim_reproducer(path):
            _replace(path, text)
            return path
    raise OSError(f"{_MOST_NAMES} files named {stem}*.py there are not lpim's to replace")


def _signed(source: str, sys_path: Sequence[str]) -> str:
    """`source` with lpim's signature as its second line (and `sys_path` put first)."""
    first, _, rest = source.partition("\n")  # the "# lpim ... reproducer" line stays first
    header = (
        f"import sys\nsys.path[:0] = {list(sys_path)!r}  # where your code was imported from\n"
        if sys_path
        else ""
    )
    body = header + rest
    return f"{first}\n{_SIGNATURE.format(digest=_digest(first, body))}\n{body}"


def _digest(first: str, body: str) -> str:
    return hashlib.sha256(f"{first}\n{body}".encode()).hexdigest()[:16]


def _write_new(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8") as file:  # exclusive: never over a file
        file.write(text)


def _replace(path: Path, text: str) -> None:
    """Write `text` beside `path`, then move it over `path` (never a half-written file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.lpim-tmp")
    try:
        _write_new(temporary, text)
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            temporary.unlink()


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _unusable(folder: Path, option: str, why: str, written: list[Path]) -> UsageError:
    done = f"; written before that: {', '.join(str(p) for p in written)}" if written else ""
    return UsageError(
        f"cannot write the reproducers to {option} {str(folder)!r}: {why}; pass "
        f"{option} with a folder you can write to{done}"
    )
