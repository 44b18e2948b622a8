"""What a check reads off the subject it is given: its name (in reports and the example
database) and the width it declares (`in_dim`, `embed_dim`, ...).

The checks' options (dtypes, device, settings, sizes, ...) are declared and checked in
`lpim.testing.options`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lpim._errors import UsageTypeError, UsageValueError

if TYPE_CHECKING:
    import torch

    from lpim.testing.options import CheckOptions

__all__ = ["check_other_inputs", "declared_width", "subject_name", "unknown_width"]


def subject_name(encoder: object) -> str:
    """What is checked, as `module.Class` (a report's first line, the database key)."""
    cls = type(encoder)
    return f"{cls.__module__}.{cls.__qualname__}"


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
) -> UsageValueError:
    """The error of a check that cannot tell `width` (e.g. "how many coordinates a point has")
    of `subject`: it names the attributes read and the keyword to pass instead."""
    return UsageValueError(
        f"{check} cannot tell {width} for {subject_name(subject)}: it has none of the "
        f"attributes {', '.join(attributes)}{tried}; pass {keyword}"
    )


def check_other_inputs(options: CheckOptions, device: torch.device) -> None:
    """Call `other_inputs` once, as the check will: what it gives must be a strategy (both
    checks: an encoder's per-sample context, a consumer's other inputs).

    Raises:
        UsageValueError: it raised (it is the user's function, called with the check's
            arguments: its failure is a usage error, not the code's).
        UsageTypeError: it gave something other than a Hypothesis strategy (e.g. the factory
            itself was passed: `bev_maps` rather than `bev_maps(16, 8, 8)`).
    """
    import torch
    from hypothesis import strategies as st

    name = options.name("other_inputs")
    try:
        given = options.other_inputs(1, torch.float32, device)
    except Exception as error:
        raise UsageValueError(
            f"{name}: calling it as other_inputs(batch_size=1, dtype=torch.float32, "
            f"device={str(device)!r}) raised {type(error).__name__}: {error}"
        ) from error
    if not isinstance(given, st.SearchStrategy):
        hint = (
            " (is it the factory rather than what it builds, e.g. bev_maps rather than "
            "bev_maps(16, 8, 8)?)"
            if callable(given)
            else ""
        )
        raise UsageTypeError(
            f"{name} must be a function (batch_size, dtype, device) -> a Hypothesis strategy of "
            f"the code's other inputs; calling it gave a {type(given).__name__}{hint}"
        )
