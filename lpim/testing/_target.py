"""What a check is given: a `MODULE:FACTORY` target, and the one rule that tells a factory from
the thing it builds.

Every door reads this rule here: `lpim check` / `lpim check-consumer` (their target and
`--other-inputs`), the `lpim_check` / `lpim_check_consumer` fixtures, and the reproducer's
`factory`. A factory is a class, or a function (not a module instance) whose parameters all have
defaults: it is called with no argument. Anything else that is callable (an `nn.Module`, a
function taking the batch) is the thing itself. A class that needs arguments is a usage error:
it cannot be built without them, and it is not an encoder.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lpim._errors import UsageTypeError, UsageValueError

__all__ = ["built", "factory_path", "load_target"]

_EXAMPLE = "lpim.encoder:PriorEncoder(d_model=64)"


def _is_module(thing: object) -> bool:
    torch = sys.modules.get("torch")  # a module instance means torch is imported
    return torch is not None and isinstance(thing, torch.nn.Module)


def _required(function: Callable[..., Any]) -> list[str] | None:
    """The parameters `function` needs (no default), or None when it cannot be inspected."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    return [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def built(thing: Any, what: str = "encoder", option: str = "") -> Any:
    """`thing`, or what it builds when it is a factory (the module docstring's rule).

    Args:
        thing: what the user gave.
        what: what it should be, for messages (`"encoder"`, `"consumer"`, ...).
        option: how the user gave it (`"--other-inputs"`, the target, ...), for messages.

    Raises:
        UsageValueError: a class that needs arguments, or a factory that raised.
        UsageTypeError: `thing` (or what its factory returned) is not callable.
    """
    where = f"{option}: " if option else ""
    if _is_module(thing):
        return thing
    if isinstance(thing, type):
        needed = _required(thing)
        if needed:
            raise UsageValueError(
                f"{where}the {what} class {thing.__qualname__} needs arguments "
                f"({', '.join(needed)}) to be built; pass an instance "
                f"({thing.__qualname__}(...)) or a function that builds one"
            )
        factory = True
    else:
        needed = _required(thing) if callable(thing) else None
        factory = callable(thing) and needed == []
    if factory:
        try:
            thing = thing()
        except Exception as error:
            raise UsageValueError(
                f"{where}cannot build the {what}: {_name(thing)}() raised "
                f"{type(error).__name__}: {error}"
            ) from error
    if not callable(thing):
        raise UsageTypeError(f"{where}gave a {type(thing).__name__}, not a callable {what}")
    return thing


def _name(thing: object) -> str:
    return getattr(thing, "__qualname__", None) or type(thing).__name__


def load_target(target: str, what: str = "encoder", option: str = "") -> Any:
    """Import `MODULE:FACTORY` and return what it names, built by `built`.

    The current folder is importable, as with `python -m` and pytest, so that a user's
    `lane_encoder.py` next to them is found.

    Raises:
        UsageValueError: a malformed target, an import error (naming the folders searched and
            the fix), an expression that fails, or a factory that fails.
        UsageTypeError: it names something that is not callable.
    """
    where = f"{option}: " if option else ""
    module_name, colon, expression = target.partition(":")
    if not colon or not module_name or not expression:
        raise UsageValueError(f"{where}expected MODULE:FACTORY (e.g. {_EXAMPLE}); got {target!r}")
    here = str(Path.cwd())
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)  # as `python -m` does; console scripts put their own folder
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise UsageValueError(
                f"{where}importing {module_name!r} failed: {type(error).__name__}: {error} (a "
                f"module {module_name!r} imports is missing: install it in this environment)"
            ) from error
        searched = [str(Path(p or ".").resolve()) for p in sys.path[:3]]
        raise UsageValueError(
            f"{where}cannot import {module_name!r}: no module of that name in the current folder "
            f"({Path.cwd()}) or on sys.path (first: {', '.join(searched)}, ...). Run lpim "
            "from the folder that holds it, or add that folder to PYTHONPATH "
            f"(PYTHONPATH=path/to/folder lpim ... {target})"
        ) from error
    except Exception as error:  # any import-time failure is the user's to fix, in one line
        raise UsageValueError(
            f"{where}cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    try:
        found = eval(expression, vars(module))  # an attribute path or a small expression
    except Exception as error:
        raise UsageValueError(
            f"{where}cannot build the {what} from {target!r}: {type(error).__name__}: {error}"
        ) from error
    return built(found, what, option or repr(target))


def factory_path(factory: Any) -> str | None:
    """`module:qualname` for a factory defined at a module's top level (what a reproducer
    imports to rebuild the subject), or None."""
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", "")
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"
