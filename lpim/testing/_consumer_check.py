"""`check_lane_consumer`: every lane-consumer property, with Hypothesis, through the shared driver.

The properties, the consumer protocol and how the tolerance rule applies to consumers are in
[`lpim.testing._consumer_properties`][lpim.testing._consumer_properties]; this module draws lane
sets (with the consumer's other inputs), runs each property at each dtype and reports, exactly as
[`check_encoder`][lpim.testing.check_encoder] does for encoders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import torch
from hypothesis import settings as Settings
from hypothesis.errors import Flaky, HypothesisException

from lpim._property_registry import (
    CONSUMER_PROPERTIES,
    EXERCISED_BY,
    Property,
    property_names,
    reproducing_property,
)
from lpim.lane_set import LaneSet
from lpim.strategies import OtherInputs, lane_sets
from lpim.testing import _consumer_properties as consumer_properties
from lpim.testing._consumer_properties import (
    Consumer,
    nondeterminism_first,
    nondeterminism_from_flaky,
    run_consumer,
)
from lpim.testing._driver import Case, Driver
from lpim.testing._engine import run_check
from lpim.testing._options import CheckOptions, Given, options_of
from lpim.testing._property_errors import LaneConsumerPropertyError, PropertyError
from lpim.testing._protocol import ConsumerUnderCheck
from lpim.testing._report import CheckReport, PropertyResult
from lpim.testing._reproducer import reproducer

__all__ = ["ConsumerSide", "check_lane_consumer", "check_lane_consumer_with"]


def _garbage(prop: Property) -> str | None:
    """What padded lanes hold in the lane sets drawn for `prop`: zeros, or (None) every fill
    `lpim.strategies.lane_sets` knows, for the property that varies it."""
    return None if prop.padding == "contract" else "zeros"


def check_lane_consumer(
    consumer: Consumer,
    *,
    embed_dim: int | None = None,
    other_inputs: OtherInputs | None = None,
    order_invariant: bool | None = None,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    device: str | torch.device | None = None,
    settings: Settings | None = None,
    properties: str | Sequence[str] | None = None,
    batch_size: int | tuple[int, int] | None = None,
    num_lanes: int | tuple[int, int] | None = None,
    strict: bool | None = None,
    threads: int | None = 1,
    factory: str | None = None,
    progress: Callable[[str, torch.dtype, PropertyResult | None], None] | None = None,
) -> CheckReport:
    """Check every lane-consumer property on `consumer`; return the report, or raise at the
    end with every failure.

    Every property x dtype row runs, even after a failure, through the same engine as
    `lpim.testing.check_encoder` (same options, table, headline, `strict`). Every keyword is
    an option of `lpim.testing._options` (the same option as `lpim check-consumer`'s flag and
    the `[tool.lpim]` key); None leaves its default.

    Args:
        consumer: called as `consumer(lane_embedding [B, M, C], lane_mask [B, M], *args,
            **kwargs)` (`lane_mask` True = real lane); returns a tensor or a tuple / list /
            dict of tensors, every one of which is compared (module docstring). A module is
            copied per dtype and put in eval mode; the caller's module is never modified.
        embed_dim: `C`; read from `consumer.embed_dim` (or `d_model`, `lane_dim`) when
            omitted.
        other_inputs: `(batch_size, dtype, device) -> SearchStrategy` of the consumer's other
            inputs: a tuple (positional, after `lane_mask`) or a dict (keyword); e.g.
            `lpim.strategies.bev_queries(...)` or `lpim.strategies.bev_maps(...)`. None: it
            takes none. It is called once before the check: one that raises, or returns
            something other than a strategy, is a usage error.
        order_invariant: declare that the output must not depend on the order of the lane
            slots; `lane_order_invariant` is reported `excluded` otherwise.
        dtype: one dtype or several; default float64, float32, bfloat16, float16.
        device: where to run (default CPU).
        settings: Hypothesis settings (e.g. a profile's); default
            `lpim.testing.DEFAULT_SETTINGS` (with `$LPIM_HYPOTHESIS_DATABASE` as its
            database when set).
        properties: some of `deterministic`, `finite`, `ignores_appended_lanes`,
            `ignores_padded_lanes`, `lane_order_invariant` (default all; `runs` and
            `inputs_unchanged` are checked on every call of the consumer).
        batch_size: `B` of the drawn lane sets: an int or an inclusive `(low, high)` range
            (default (1, 3)).
        num_lanes: `M` of the drawn lane sets: an int or a range (default (1, 6)).
        strict: raise `lpim.testing._driver.IncompleteCheckError` when nothing failed but a row
            was skipped or unsupported.
        threads: torch's intra-op threads during the check (restored after; default 1).
        factory: `"module:expression"` that rebuilds the consumer, for the reproducer.
        progress: as `lpim.testing.check_encoder`'s.

    Returns:
        A `lpim.testing.CheckReport` (`str()` is the same table as `check_encoder`'s).

    Raises:
        LaneConsumerPropertyError: the first failure in full (shrunk example, `.reproducer`),
            with `.failures` (every failure) and `.report`.
        lpim.testing._driver.IncompleteCheckError: `strict=True` and rows were not run.
        lpim.errors.UsageValueError: (a `ValueError`) an unknown property or dtype, no
            property, `embed_dim` below 1 or that cannot be read, sizes out of range or too
            large to draw, a device torch does not know or that is not available, a
            malformed `factory`, `threads` below 1, an `other_inputs` that raises.
        lpim.errors.UsageTypeError: (a `TypeError`) `consumer`, `other_inputs` or `progress`
            is not callable, `other_inputs` gives no strategy, `settings` is not a
            `hypothesis.settings`, or another argument has the wrong type.
    """
    __tracebackhide__ = True  # a failing check shows its message, not lpim's frames
    given = Given.keywords(locals(), skip=("consumer", "__tracebackhide__"))  # every one an option
    return check_lane_consumer_with(consumer, options_of("consumer", given))


def check_lane_consumer_with(consumer: Consumer, options: CheckOptions) -> CheckReport:
    """`check_lane_consumer` with options already built (by the `lpim` command or a fixture).

    Raises:
        As `check_lane_consumer`.
    """
    __tracebackhide__ = True
    return run_check(ConsumerSide(), consumer, options)  # handed down once: it stays below


class ConsumerSide:
    """The consumer's share of the engine (`lpim.testing._engine.CheckSide`): it wires the
    options and the engine, drawing lane sets with the consumer's other inputs, with its
    reproducer. The consumer itself is reached only through
    `lpim.testing._protocol.ConsumerUnderCheck` (`under`, built by the engine with `holder`,
    which is given the property code it needs: the reproducer and how a consumer is run)."""

    role, call = "consumer", "consumer(lane_embedding, lane_mask, *args, **kwargs)"
    under: ConsumerUnderCheck

    def __init__(self) -> None:
        self.holder = functools.partial(ConsumerUnderCheck, reproducer=reproducer, run=run_consumer)

    def prepare(self, options: CheckOptions) -> None:
        self.options = options
        self.names = list(options.properties or property_names("consumer"))
        self.under.read()

    def contract(self) -> str:
        return ""

    def rows(
        self, dtype: torch.dtype, settings: Settings, driver: Driver[LaneSet]
    ) -> Iterator[Case[LaneSet] | PropertyResult]:
        options, under = self.options, self.under
        prepared = under.at(dtype)
        unsupported = under.unsupported(prepared, dtype)
        for name in self.names:
            prop = CONSUMER_PROPERTIES[name]
            if not prop.is_declared(options.order_invariant):
                note = prop.not_declared(options.order_invariant)
                yield PropertyResult(name, dtype, "excluded", 0, 0.0, 0.0, note)
                continue
            if unsupported:
                yield PropertyResult(name, dtype, "unsupported", 0, 0.0, 0.0, unsupported)
                continue
            assert_property = getattr(consumer_properties, prop.assert_name)
            yield Case(
                property_name=name,
                dtype=dtype,
                strategy=lane_sets(
                    batch_size=options.batch_size,
                    num_lanes=options.num_lanes,
                    embed_dim=under.embed_dim,
                    garbage=_garbage(prop),
                    dtype=dtype,
                    device=under.device,
                    other_inputs=options.other_inputs,
                ),
                check=functools.partial(nondeterminism_first(assert_property), prepared),
                settings=settings,
                database_key=f"lpim-consumer:{name}:{dtype}:{under.name}",
                reproducer=functools.partial(_reproducer, name, under),
                translate=functools.partial(_translate, name, prepared),
                exercised=_EXERCISED.get(prop.exercised_by),
                exercised_by=EXERCISED_BY.get(prop.exercised_by, ""),
                subject_features=under.features,
            )

    def notes(self, report: CheckReport) -> None:
        return None


# What a lane set must hold to exercise a property (`Property.exercised_by`).
_EXERCISED: dict[str, Callable[[LaneSet], bool]] = {
    "padded_lane": lambda lanes: bool((~lanes.lane_mask).any()),
}


def _reproducer(name: str, under: ConsumerUnderCheck, failure: PropertyError[LaneSet]) -> str:
    failed = failure.property_name
    assert_name = reproducing_property("consumer", name, failed).assert_name
    example = failure.example
    if not isinstance(example, LaneSet):
        raise TypeError(f"a consumer failure's example is a LaneSet; got {type(example)}")
    return under.reproducer(example, assert_name, failed)


def _translate(
    name: str, consumer: Consumer, error: BaseException, last: list[LaneSet]
) -> LaneConsumerPropertyError | None:
    """Flaky (the same lane set failed, then passed) as `deterministic`; Hypothesis' other
    errors (a health check, say) as `runs`."""
    if isinstance(error, Flaky):
        return nondeterminism_from_flaky(name, consumer, error, last)
    if not isinstance(error, HypothesisException):
        return None
    return LaneConsumerPropertyError(
        "runs",
        f"Hypothesis could not check {name}: {type(error).__name__}: {error}",
        last[0] if last else LaneSet(torch.zeros(0, 0, 1), torch.zeros(0, 0, dtype=torch.bool)),
    )
