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
`CONSUMER_PROPERTIES`) lives below, in `lpim._property_registry`, so that the zoo reads it too; the
tolerance rule lives in `lpim.tolerance`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpim._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:  # what type checkers and the API docs read; at run time, `__getattr__`
    from lpim._property_registry import (
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
    from lpim.testing._consumer_check import check_lane_consumer
    from lpim.testing._consumer_properties import (
        assert_consumer_deterministic,
        assert_consumer_finite,
        assert_ignores_appended_lanes,
        assert_ignores_padded_lanes,
        assert_lane_order_invariant,
    )
    from lpim.testing._contract import DataContract
    from lpim.testing._driver import IncompleteCheckError
    from lpim.testing._encoder_check import CHECKED_PROPERTIES, check_encoder
    from lpim.testing._encoder_properties import (
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
    from lpim.testing._engine import DEFAULT_DTYPES, DEFAULT_SETTINGS
    from lpim.testing._options import PRECISIONS, CheckOptions
    from lpim.testing._property_errors import (
        EncoderPropertyError,
        LaneConsumerPropertyError,
        PropertyError,
    )
    from lpim.testing._protocol import Adapted, EncoderOutput, ProtocolError, Subject
    from lpim.testing._report import VERDICTS, CheckReport, PropertyResult

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
    "Adapted": "lpim.testing._protocol",
    "CHECKED_PROPERTIES": "lpim.testing._encoder_check",
    "CONSUMER_PROPERTIES": "lpim._property_registry",
    "Cause": "lpim._property_registry",
    "CheckOptions": "lpim.testing._options",
    "CheckReport": "lpim.testing._report",
    "DEFAULT_DTYPES": "lpim.testing._engine",
    "DEFAULT_SETTINGS": "lpim.testing._engine",
    "DataContract": "lpim.testing._contract",
    "EncoderOutput": "lpim.testing._protocol",
    "EncoderPropertyError": "lpim.testing._property_errors",
    "GALLERY": "lpim._property_registry",
    "IncompleteCheckError": "lpim.testing._driver",
    "LaneConsumerPropertyError": "lpim.testing._property_errors",
    "PRECISIONS": "lpim.testing._options",
    "PROPERTIES": "lpim._property_registry",
    "Padding": "lpim._property_registry",
    "Property": "lpim._property_registry",
    "PropertyError": "lpim.testing._property_errors",
    "PropertyResult": "lpim.testing._report",
    "ProtocolError": "lpim.testing._protocol",
    "REGISTRY": "lpim._property_registry",
    "Side": "lpim._property_registry",
    "Subject": "lpim.testing._protocol",
    "VERDICTS": "lpim.testing._report",
    "assert_consumer_deterministic": "lpim.testing._consumer_properties",
    "assert_consumer_finite": "lpim.testing._consumer_properties",
    "assert_deterministic": "lpim.testing._encoder_properties",
    "assert_devices_agree": "lpim.testing._encoder_properties",
    "assert_empty_lanes_zero": "lpim.testing._encoder_properties",
    "assert_finite": "lpim.testing._encoder_properties",
    "assert_gradients_ignore_padding": "lpim.testing._encoder_properties",
    "assert_gradients_isolated": "lpim.testing._encoder_properties",
    "assert_ignores_appended_lanes": "lpim.testing._consumer_properties",
    "assert_ignores_nonfinite_padding": "lpim.testing._encoder_properties",
    "assert_ignores_padded_lanes": "lpim.testing._consumer_properties",
    "assert_ignores_padding": "lpim.testing._encoder_properties",
    "assert_lane_order_invariant": "lpim.testing._consumer_properties",
    "assert_lanes_independent": "lpim.testing._encoder_properties",
    "assert_matches_unpadded": "lpim.testing._encoder_properties",
    "check_encoder": "lpim.testing._encoder_check",
    "check_lane_consumer": "lpim.testing._consumer_check",
    "lane_alone": "lpim.testing._encoder_properties",
    "property_names": "lpim._property_registry",
}

__getattr__, __dir__ = _lazy_exports(__name__, _WHERE, __all__)
