"""lpim: padding masks for lane-prior (polyline) encoders, proved.

- [`PriorEncoder`][lpim.PriorEncoder]: the reference LPIM encoder (`lpim/encoder.py`,
  vendorable).
- [`LaneBatch`][lpim.LaneBatch]: a padded batch, `points [B, M, N, D]` + `point_mask [B, M, N]`
  (bool, True = real point).
- [`LaneSet`][lpim.LaneSet]: what a lane-set consumer reads, `lane_embedding [B, M, C]` +
  `lane_mask [B, M]` (bool, True = real lane) + its other inputs.
- [`lpim.masks`][lpim.masks]: every mask convention named, with converters, a validator and a
  diagnoser.
- `sanitize`: watch the masks that reach torch's attention at run time
  ([`lpim.sanitizer`][lpim.sanitizer]).

`import lpim` costs nothing: every name below is imported (with torch) the first time it is
read, so the pytest plugin and `lpim --help` load no torch in a project that never uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpim._lazy import lazy_exports as _lazy_exports
from lpim._version import __version__

if TYPE_CHECKING:  # what type checkers and the API docs read; at run time, `__getattr__`
    from lpim import masks
    from lpim.batch import LaneBatch
    from lpim.encoder import PriorEncoder, PriorEncoderLayer, PriorEncoderOutput
    from lpim.lane_set import LaneSet
    from lpim.sanitizer import MaskHazardError, MaskHazardWarning, sanitize

__all__ = [
    "LaneBatch",
    "LaneSet",
    "MaskHazardError",
    "MaskHazardWarning",
    "PriorEncoder",
    "PriorEncoderLayer",
    "PriorEncoderOutput",
    "__version__",
    "masks",
    "sanitize",
]

# name -> the module that defines it: imported (with torch) when the name is first read
_WHERE = {
    "LaneBatch": "lpim.batch",
    "LaneSet": "lpim.lane_set",
    "MaskHazardError": "lpim.sanitizer",
    "MaskHazardWarning": "lpim.sanitizer",
    "PriorEncoder": "lpim.encoder",
    "PriorEncoderLayer": "lpim.encoder",
    "PriorEncoderOutput": "lpim.encoder",
    "masks": "lpim.masks",
    "sanitize": "lpim.sanitizer",
}

__getattr__, __dir__ = _lazy_exports(__name__, _WHERE, __all__)
