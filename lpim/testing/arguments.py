"""What a check reads off the subject it is given: its name (in reports and the example
database) and the width it declares (`in_dim`, `embed_dim`, ...).

The checks' options (dtypes, device, settings, sizes, ...) are declared and checked in
`lpim.testing.options`.
"""

from __future__ import annotations

from collections.abc import Sequence

from lpim._errors import UsageValueError

__all__ = ["declared_width", "subject_name", "unknown_width"]


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
