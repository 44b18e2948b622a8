"""Arguments every check takes, checked once: the dtypes, the device, and a name for what is
checked (in reports and the example database)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "DEFAULT_DTYPES",
    "checked_device",
    "checked_dtypes",
    "checked_properties",
    "subject_name",
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
    """`device=` of a check (default CPU): one torch knows, that is available and holds data."""
    if device is not None and (
        isinstance(device, bool) or not isinstance(device, str | torch.device)
    ):
        raise TypeError(f"device must be a str or torch.device; got {device!r}")
    try:
        target = torch.device(device or "cpu")
    except RuntimeError as error:
        raise ValueError(
            f"device must be one torch knows (cpu, cuda, ...); got {device!r} ({error})"
        ) from None
    if target.type == "meta":
        raise ValueError(
            "device must hold data (the checks compare values); expected cpu or cuda, got meta"
        )
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device must be available; got {str(target)!r}, but torch.cuda.is_available() is "
            f"False (torch {torch.__version__})"
        )
    return target


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
