"""Hold any encoder to "masked batched output equals the per-lane unpadded computation".

- [`check_encoder`][lpim.testing.check_encoder] runs every property at every dtype with Hypothesis
    and returns a
  [`CheckReport`][lpim.testing.CheckReport], or raises
  [`EncoderPropertyError`][lpim.testing.EncoderPropertyError] with the shrunk example and a
  pasteable `.reproducer`.
- One `assert_*` per property ([`PROPERTIES`][lpim.testing.PROPERTIES]), for your own `@given`
    tests.
- [`check_lane_consumer`][lpim.testing.check_lane_consumer] and its asserts
    ([`CONSUMER_PROPERTIES`][lpim.testing.CONSUMER_PROPERTIES]) do the same for
  lane-set consumers, one step downstream: modules that read `lane_embedding [B, M, C]` and
  `lane_mask [B, M]` (True = real lane); failures raise
  [`LaneConsumerPropertyError`][lpim.testing.LaneConsumerPropertyError].
- Reliability: a misbehaving encoder is reported, never a crash of the checker. Every call gets
  copies of the batch (`inputs_unchanged`), may be timed (`deadline`), and must give the same
  output twice (`deterministic`); [`CHECKED_PROPERTIES`][lpim.testing.CHECKED_PROPERTIES] lists what
  `check_encoder` runs.

Modules: `protocol` (how an encoder is called), `properties` (the encoder asserts),
`consumer_properties` (the consumer asserts), `compare` (the one comparator under the tolerance
rule), `errors` (the error a failed property raises), `report` (rows, headline, table),
`options` (every option of the checks, declared once: keyword, flag, `[tool.lpim]` key),
`contract` (the data contract), `arguments` (what a check reads off its subject), `target`
(`MODULE:FACTORY` and the factory rule), `engine` (the one engine, two sides), `reproducer` (source
that re-raises a failure, either side), `driver` (the one loop every check runs through), `state`
(what a check leaves as it found it: RNGs, the user's modules, torch's settings), `check`
(encoders), `consumer` (lane-set consumers), `reference` (torch's stack from `PriorEncoder`'s
weights), `dispatch` (an op counter). The property registry ([`REGISTRY`][lpim.testing.REGISTRY],
with its two views `PROPERTIES` and `CONSUMER_PROPERTIES`) lives below, in `lpim._properties`,
so that the zoo reads it too; the tolerance rule lives in `lpim.tolerance`.
"""

from lpim._properties import (
    CONSUMER_PROPERTIES,
    GALLERY,
    PROPERTIES,
    REGISTRY,
    Cause,
    Padding,
    Property,
    Side,
    property_names,
)
from lpim.testing.check import CHECKED_PROPERTIES, check_encoder
from lpim.testing.consumer import check_lane_consumer
from lpim.testing.consumer_properties import (
    LaneConsumerPropertyError,
    assert_consumer_deterministic,
    assert_consumer_finite,
    assert_ignores_appended_lanes,
    assert_ignores_padded_lanes,
    assert_lane_order_invariant,
)
from lpim.testing.contract import DataContract
from lpim.testing.driver import IncompleteCheckError
from lpim.testing.engine import DEFAULT_DTYPES, DEFAULT_SETTINGS
from lpim.testing.errors import EncoderPropertyError, PropertyError
from lpim.testing.options import PRECISIONS, CheckOptions
from lpim.testing.properties import (
    assert_deterministic,
    assert_devices_agree,
    assert_empty_lanes_zero,
    assert_finite,
    assert_gradients_ignore_padding,
    assert_gradients_isolated,
    assert_ignores_nonfinite_padding,
    assert_ignores_padding,
    assert_lanes_independent,
    assert_matches_unpadded,
    lane_alone,
)
from lpim.testing.protocol import Adapted, EncoderOutput, ProtocolError, Subject
from lpim.testing.report import VERDICTS, CheckReport, PropertyResult

# Failures show as lpim.testing.EncoderPropertyError, the path users import them from.
for _error in (
    EncoderPropertyError,
    LaneConsumerPropertyError,
    PropertyError,
    IncompleteCheckError,
):
    _error.__module__ = __name__
del _error

__all__ = [
    "CHECKED_PROPERTIES",
    "CONSUMER_PROPERTIES",
    "DEFAULT_DTYPES",
    "DEFAULT_SETTINGS",
    "GALLERY",
    "PRECISIONS",
    "PROPERTIES",
    "REGISTRY",
    "VERDICTS",
    "Adapted",
    "Cause",
    "CheckOptions",
    "CheckReport",
    "DataContract",
    "EncoderOutput",
    "EncoderPropertyError",
    "IncompleteCheckError",
    "LaneConsumerPropertyError",
    "Padding",
    "Property",
    "PropertyError",
    "PropertyResult",
    "ProtocolError",
    "Side",
    "Subject",
    "assert_consumer_deterministic",
    "assert_consumer_finite",
    "assert_deterministic",
    "assert_devices_agree",
    "assert_empty_lanes_zero",
    "assert_finite",
    "assert_gradients_ignore_padding",
    "assert_gradients_isolated",
    "assert_ignores_appended_lanes",
    "assert_ignores_nonfinite_padding",
    "assert_ignores_padded_lanes",
    "assert_ignores_padding",
    "assert_lane_order_invariant",
    "assert_lanes_independent",
    "assert_matches_unpadded",
    "check_encoder",
    "check_lane_consumer",
    "lane_alone",
    "property_names",
]
