"""Arguments every check takes, checked once: the dtypes, the device, the settings, the
factory, and a name for what is checked (in reports and the example database).

The wordings are `lpim._validation`'s where it has one; these add what only checks take.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import settings as Settings

from lpim._validation import check_device

__all__ = [
    "DEFAULT_DTYPES",
    "checked_device",
    "checked_dtypes",
    "checked_factory",
    "checked_properties",
    "checked_settings",
    "declared_width",
    "subject_name",
    "unknown_width",
]

DEFAULT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
"""The dtypes checked by default: mixed precision is where fill values such as -1e9 overflow."""


def checked_dtypes(dtype: torch.dtype | Sequence[torch.dtype] | None) -> tuple[torch.dtype, ...]:
    """`dtype=` of a check: one dtype or several (default `DEFAULT_DTYPES`), each among them."""
    if dtype is not None and not isinstance(dtype, torch.dtype | Sequence):
        raise TypeError(f"dtype must be a torch.dtype or a list of them; got {dtype!r}")
    if isinstance(dtype, str):
        raise ValueError(
            f"dtype must be among {list(DEFAULT_DTYPES)} (torch.dtype objects); got the string "
            f"{dtype!r}"
        )
    chosen = (
        DEFAULT_DTYPES
        if dtype is None
        else (dtype,)
        if isinstance(dtype, torch.dtype)
        else tuple(dtype)
    )
    if not chosen:
        raise ValueError(f"dtype must name at least one of {DEFAULT_DTYPES}; got an empty list")
    for d in chosen:
        if d not in DEFAULT_DTYPES:
            raise ValueError(f"dtype must be among {list(DEFAULT_DTYPES)}; got {d!r}")
    return chosen


def checked_device(device: str | torch.device | None) -> torch.device:
    """`device=` of a check (default CPU): one torch knows, that is available and holds data.

    Raises:
        TypeError: not a `str`, `torch.device` or None.
        ValueError: a device torch does not know, `meta`, or one that is not available.
    """
    return check_device("cpu" if device is None else device, why_data="the checks compare values")


def checked_settings(settings: object, default: Settings) -> Settings:
    """`settings=` of a check: a `hypothesis.settings` (a profile's, ...), or `default` for None.

    Raises:
        TypeError: anything else (a profile's name, a dict, a number, ...).
    """
    if settings is None:
        return default
    if not isinstance(settings, Settings):
        raise TypeError(
            "settings must be a hypothesis.settings (e.g. settings.get_profile('lpim-ci') or "
            f"settings(max_examples=...)); got {settings!r} ({type(settings).__name__})"
        )
    return settings


def checked_factory(factory: object) -> str | None:
    """`factory=` of a check: None or `"module:expression"` (what rebuilds the subject).

    Raises:
        TypeError: not a string.
        ValueError: a string without a module, a colon or an expression.
    """
    if factory is None:
        return None
    if not isinstance(factory, str):
        raise TypeError(f"factory must be a 'module:expression' string; got {factory!r}")
    module, colon, expression = factory.partition(":")
    if not (module and colon and expression):
        raise ValueError(
            f"factory must be 'module:expression' (e.g. 'lpim.encoder:PriorEncoder'); got "
            f"{factory!r}"
        )
    return factory


def subject_name(encoder: object) -> str:
    """What is checked, as `module.Class` (a report's first line, the database key)."""
    cls = type(encoder)
    return f"{cls.__module__}.{cls.__qualname__}"


def checked_properties(chosen: str | Sequence[str] | None, known: Sequence[str]) -> list[str]:
    """`properties=` of a check: a name or a list of names among `known` (default all)."""
    names = list(known) if chosen is None else [chosen] if isinstance(chosen, str) else chosen
    if not isinstance(names, Sequence):
        raise TypeError(f"properties must be a name or a list of names; got {chosen!r}")
    names = list(names)
    if not names:
        raise ValueError(f"properties must name at least one of {list(known)}; got none")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown properties: got {unknown}; expected some of {list(known)}")
    return names


def declared_width(subject: object, attributes: Sequence[str]) -> int | None:
    """The width `subject` declares: its first attribute among `attributes` that is a positive
    int (`in_dim`, `embed_dim`, ...), or None."""
    for attribute in attributes:
        value = getattr(subject, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def unknown_width(
    check: str,
    subject: object,
    width: str,
    attributes: Sequence[str],
    keyword: str,
    tried: str = "",
) -> ValueError:
    """The error of a check that cannot tell `width` (e.g. "how many coordinates a point has")
    of `subject`: it names the attributes read and the keyword to pass instead."""
    return ValueError(
        f"{check} cannot tell {width} for {subject_name(subject)}: it has none of the "
        f"attributes {', '.join(attributes)}{tried}; pass {keyword}"
    )
