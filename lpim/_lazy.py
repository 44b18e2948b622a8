"""Lazy re-exports (PEP 562) for lpim's packages: a name is imported the first time it is read.

`lpim/__init__.py` and `lpim/testing/__init__.py` re-export names whose modules import torch;
with these, `import lpim` (which the pytest plugin and the `lpim` command do) imports neither
torch nor Hypothesis until a name is used. Each package lists its names twice: under
`if TYPE_CHECKING:` as plain imports (what type checkers and the API docs read) and in the
table given here (what runs); `tests/test_exports.py` checks that the two agree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, where: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`, whose name `N` is defined in module `where[N]`
    (or is that module, when `where[N]` is `package.N`); `public` is its `__all__`."""

    def __getattr__(name: str) -> object:
        module_name = where.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(module_name)
        value = module if module_name == f"{package}.{name}" else getattr(module, name)
        vars(importlib.import_module(package))[name] = value  # later reads are plain reads
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *public})

    return __getattr__, __dir__
