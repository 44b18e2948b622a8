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
`contract` (the data contract), `under_check` (what a check knows of the code it checks: its
name, widths, device, copies, probes), `target` (`MODULE:FACTORY` and the factory rule), `engine`
(the one engine, two sides), `reproducer` (source that re-raises a failure, either side), `driver`
(the one loop every check runs through), `state` (what a check leaves as it found it: RNGs, the
user's modules, torch's settings), `check` (encoders), `consumer` (lane-set consumers),
`reference` (torch's stack from `PriorEncoder`'s weights), `dispatch` (an op counter). The
property registry ([`REGISTRY`][lpim.testing.REGISTRY], with its two views `PROPERTIES` and
`CONSUMER_PROPERTIES`) lives below, in `lpim._properties`, so that the zoo reads it too; the
tolerance rule lives in `lpim.tolerance`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpim._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:  # what type checkers and the API docs read; at run time, `__getattr__`
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

# name -> the module that defines it: imported (with torch) when the name is first read
_WHERE = {
    "Adapted": "lpim.testing.protocol",
    "CHECKED_PROPERTIES": "lpim.testing.check",
    "CONSUMER_PROPERTIES": "lpim._properties",
    "Cause": "lpim._properties",
    "CheckOptions": "lpim.testing.options",
    "CheckReport": "lpim.testing.report",
    "DEFAULT_DTYPES": "lpim.testing.engine",
    "DEFAULT_SETTINGS": "lpim.testing.engine",
    "DataContract": "lpim.testing.contract",
    "EncoderOutput": "lpim.testing.protocol",
    "EncoderPropertyError": "lpim.testing.errors",
    "GALLERY": "lpim._properties",
    "IncompleteCheckError": "lpim.testing.driver",
    "LaneConsumerPropertyError": "lpim.testing.consumer_properties",
    "PRECISIONS": "lpim.testing.options",
    "PROPERTIES": "lpim._properties",
    "Padding": "lpim._properties",
    "Property": "lpim._properties",
    "PropertyError": "lpim.testing.errors",
    "PropertyResult": "lpim.testing.report",
    "ProtocolError": "lpim.testing.protocol",
    "REGISTRY": "lpim._properties",
    "Side": "lpim._properties",
    "Subject": "lpim.testing.protocol",
    "VERDICTS": "lpim.testing.report",
    "assert_consumer_deterministic": "lpim.testing.consumer_properties",
    "assert_consumer_finite": "lpim.testing.consumer_properties",
    "assert_deterministic": "lpim.testing.properties",
    "assert_devices_agree": "lpim.testing.properties",
    "assert_empty_lanes_zero": "lpim.testing.properties",
    "assert_finite": "lpim.testing.properties",
    "assert_gradients_ignore_padding": "lpim.testing.properties",
    "assert_gradients_isolated": "lpim.testing.properties",
    "assert_ignores_appended_lanes": "lpim.testing.consumer_properties",
    "assert_ignores_nonfinite_padding": "lpim.testing.properties",
    "assert_ignores_padded_lanes": "lpim.testing.consumer_properties",
    "assert_ignores_padding": "lpim.testing.properties",
    "assert_lane_order_invariant": "lpim.testing.consumer_properties",
    "assert_lanes_independent": "lpim.testing.properties",
    "assert_matches_unpadded": "lpim.testing.properties",
    "check_encoder": "lpim.testing.check",
    "check_lane_consumer": "lpim.testing.consumer",
    "lane_alone": "lpim.testing.properties",
    "property_names": "lpim._properties",
}

__getattr__, __dir__ = _lazy_exports(__name__, _WHERE, __all__)
