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
"""

from lpim import masks
from lpim._version import __version__
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
