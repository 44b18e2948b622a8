"""Every error lpim raises on purpose, in one family: `except lpim.errors.LpimError` catches them.

```text
LpimError
├── UsageError                      the caller's arguments are wrong (`lpim` exits 2)
│   ├── UsageTypeError (TypeError)  a value of the wrong type
│   └── UsageValueError (ValueError) a value out of range, unknown, or contradicting another
│       └── lpim.masks.MaskConventionError  a mask that does not follow its convention
├── lpim.testing.ProtocolError (TypeError)  an encoder returned what the protocol forbids
├── lpim.testing.PropertyError (AssertionError)  a property failed (`lpim` exits 1)
│   ├── lpim.testing.EncoderPropertyError
│   └── lpim.testing.LaneConsumerPropertyError
├── lpim.testing.IncompleteCheckError (AssertionError)  strict, and a row was not run
└── lpim.MaskHazardError (AssertionError)  the sanitizer found a mask hazard
```

A usage error names what was expected, what came, and the option to change as the user gave
it: a keyword (`min_points=9`), a flag (`--min-points 9`) or a `[tool.lpim]` key (with the
file). The same mistake reads the same through every door. Property failures are
`AssertionError`s, so test runners report them as failures, not errors.

Only the vendorable `lpim/encoder.py` raises plain `ValueError` / `TypeError`: a copy of it
must need nothing but torch.
"""

from lpim._errors import LpimError, UsageError, UsageTypeError, UsageValueError
from lpim.masks import MaskConventionError
from lpim.sanitizer import MaskHazardError
from lpim.testing import (
    EncoderPropertyError,
    IncompleteCheckError,
    LaneConsumerPropertyError,
    PropertyError,
    ProtocolError,
)

__all__ = [
    "EncoderPropertyError",
    "IncompleteCheckError",
    "LaneConsumerPropertyError",
    "LpimError",
    "MaskConventionError",
    "MaskHazardError",
    "PropertyError",
    "ProtocolError",
    "UsageError",
    "UsageTypeError",
    "UsageValueError",
]
