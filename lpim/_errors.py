"""lpim's one error family: every error lpim raises on purpose derives from `LpimError`.

Two branches, told apart by who has to act:

- `UsageError`: the caller's arguments are wrong (a keyword, a flag, a `[tool.lpim]` key, a
  contract that cannot be met, a folder that cannot be written). Its two concrete kinds are
  also the builtin errors Python code expects, as Hypothesis' `InvalidArgument` is a
  `TypeError`: `UsageTypeError` (a value of the wrong type) and `UsageValueError` (a value out
  of range, or options that contradict each other). The `lpim` command exits 2 on any of them.
- Property failures (`lpim.testing.PropertyError` and its subclasses,
  `lpim.testing.IncompleteCheckError`, `lpim.MaskHazardError`) are `AssertionError`s as well
  as `LpimError`s: the code under check is wrong, and test runners report them as failures.

This module imports nothing, so every floor of lpim (and the `lpim` command before torch is
imported) can raise these.
"""

from __future__ import annotations

__all__ = ["LpimError", "UsageError", "UsageTypeError", "UsageValueError"]


class LpimError(Exception):
    """The root of every error lpim raises on purpose (`except lpim.errors.LpimError`)."""

    __module__ = "lpim.errors"  # where users import it from


class UsageError(LpimError):
    """A mistake in how lpim was called, not in the code it checks.

    The message names what was expected, what came, and the keyword, flag or `[tool.lpim]`
    key to change, as the caller wrote it. The `lpim` command prints it in one line and exits 2.
    """

    __module__ = "lpim.errors"  # where users import it from


class UsageTypeError(UsageError, TypeError):
    """A usage error of type: a value of the wrong type (a string where an int belongs, ...)."""

    __module__ = "lpim.errors"  # where users import it from


class UsageValueError(UsageError, ValueError):
    """A usage error of value: out of range, unknown, or contradicting another option."""

    __module__ = "lpim.errors"  # where users import it from
