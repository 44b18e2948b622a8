"""`check_lane_consumer`: every lane-consumer property, with Hypothesis, through the shared driver.

The properties, the consumer protocol and how the tolerance rule applies to consumers are in
[`lpim.testing.consumer_properties`][lpim.testing.consumer_properties]; this module draws lane
sets (with the consumer's other inputs), runs each property at each dtype and reports, exactly as
[`check_encoder`][lpim.testing.check_encoder] does for encoders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from hypothesis import settings as Settings
from hypothesis.errors import Flaky, HypothesisException

from lpim._properties import CONSUMER_PROPERTIES, Property, property_names, reproducing_property
from lpim._validation import check_bool, check_callable, check_int, check_size
from lpim.lane_set import LaneSet
from lpim.strategies import OtherInputs, lane_sets
from lpim.testing import consumer_properties
from lpim.testing.arguments import (
    checked_device,
    checked_dtypes,
    checked_factory,
    checked_properties,
    checked_settings,
    declared_width,
    subject_name,
    unknown_width,
)
from lpim.testing.check import DEFAULT_SETTINGS
from lpim.testing.consumer_properties import (
    Consumer,
    LaneConsumerPropertyError,
    nondeterminism_first,
    nondeterminism_from_flaky,
    run_consumer,
)
from lpim.testing.driver import Case, Driver, check_settings, torch_threads
from lpim.testing.errors import PropertyError
from lpim.testing.protocol import Subject
from lpim.testing.report import CheckReport, PropertyResult
from lpim.testing.reproducer import reproducer
from lpim.testing.state import user_state_kept

__all__ = ["check_lane_consumer"]


# -- the check -------------------------------------------------------------------------------------


def _garbage(prop: Property) -> str | None:
    """What padded lanes hold in the lane sets drawn for `prop`: zeros, or (None) every fill
    `lpim.strategies.lane_sets` knows, for the property that varies it."""
    return None if prop.padding == "contract" else "zeros"


def check_lane_consumer(
    consumer: Consumer,
    *,
    embed_dim: int | None = None,
    other_inputs: OtherInputs | None = None,
    order_invariant: bool = False,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    device: str | torch.device | None = None,
    settings: Settings | None = None,
    properties: str | Sequence[str] | None = None,
    batch_size: int | tuple[int, int] = (1, 3),
    num_lanes: int | tuple[int, int] = (1, 6),
    strict: bool = False,
    threads: int | None = 1,
    factory: str | None = None,
    progress: Callable[[str, torch.dtype, PropertyResult | None], None] | None = None,
) -> CheckReport:
    """Check every lane-consumer property on `consumer`; return the report, or raise at the
    end with every failure.

    Every property x dtype row runs, even after a failure, through the same driver as
    `lpim.testing.check_encoder` (same table, same headline, same `strict`).

    Args:
        consumer: called as ``consumer(lane_embedding [B, M, C], lane_mask [B, M], *args,
            **kwargs)` (`lane_mask`` True = real lane); returns a tensor or a tuple / list /
            dict of tensors, every one of which is compared (module docstring). A module is
            copied per dtype and put in eval mode; the caller's module is never modified.
        embed_dim: `C`; read from `consumer.embed_dim` (or `d_model`, `lane_dim`) when
            omitted.
        other_inputs: `(batch_size, dtype, device) -> SearchStrategy` of the consumer's other
            inputs: a tuple (positional, after `lane_mask`) or a dict (keyword); e.g.
            `lpim.strategies.bev_queries` or `lpim.strategies.bev_maps`. None: it takes none.
        order_invariant: declare that the output must not depend on the order of the lane
            slots; `lane_order_invariant` is reported `excluded` otherwise.
        dtype: one dtype or several; default float64, float32, bfloat16, float16.
        device: where to run (default CPU).
        settings: Hypothesis settings (e.g. a profile's); default
            `lpim.testing.DEFAULT_SETTINGS`.
        properties: some of `deterministic`, `finite`, `ignores_appended_lanes`,
            `ignores_padded_lanes`, `lane_order_invariant` (default all; `runs` and
            `inputs_unchanged` are checked on every call of the consumer).
        batch_size: `B` of the drawn lane sets: an int or an inclusive `(low, high)` range.
        num_lanes: `M` of the drawn lane sets: an int or a range.
        strict: raise `lpim.testing.driver.IncompleteCheckError` when nothing failed but a row
            was skipped or unsupported.
        threads: torch's intra-op threads during the check (restored after; default 1).
        factory: `"module:expression"` that rebuilds the consumer, for the reproducer.
        progress: as `lpim.testing.check_encoder`'s.

    Returns:
        A `lpim.testing.CheckReport` (`str()` is the same table as `check_encoder`'s).

    Raises:
        LaneConsumerPropertyError: the first failure in full (shrunk example, `.reproducer`),
            with `.failures` (every failure) and `.report`.
        lpim.testing.driver.IncompleteCheckError: `strict=True` and rows were not run.
        ValueError: an unknown property or dtype, no property, `embed_dim` below 1 or that
            cannot be read, a `batch_size` / `num_lanes` below 0 or a reversed range, a
            device torch does not know, that is not available or is `meta`, a malformed
            `factory`, or `threads` below 1.
        TypeError: `consumer`, `other_inputs` or `progress` is not callable, `settings` is
            not a `hypothesis.settings`, `order_invariant` or `strict` is not a bool, or
            another argument has the wrong type (`embed_dim`, sizes or `threads` not ints,
            `properties` not a name or a list, `device` not a str or torch.device).
    """
    __tracebackhide__ = True  # a failing check shows its message, not lpim's frames
    where = "check_lane_consumer"
    check_callable(consumer, "consumer", "consumer(lane_embedding, lane_mask, *args, **kwargs)")
    dtypes = checked_dtypes(dtype)
    target = checked_device(device)
    names = checked_properties(properties, list(property_names("consumer")))
    if other_inputs is not None:
        check_callable(other_inputs, "other_inputs", "other_inputs(batch_size, dtype, device)")
    check_bool(order_invariant, "order_invariant")
    check_bool(strict, "strict")
    for size_name, size in (("batch_size", batch_size), ("num_lanes", num_lanes)):
        check_size(size, size_name, where)
    checked_factory(factory)
    if progress is not None:
        check_callable(progress, "progress", "progress(property_name, dtype, result)")
    run_settings = check_settings(checked_settings(settings, DEFAULT_SETTINGS))
    dim = (
        check_int(embed_dim, "embed_dim", where, minimum=1)
        if embed_dim is not None
        else _read_embed_dim(consumer)
    )
    report = CheckReport(subject_name(consumer))
    driver: Driver[LaneSet] = Driver(report, progress, strict)

    with user_state_kept(consumer, target), torch_threads(threads):
        for checked_dtype in dtypes:
            prepared = Subject.prepare(consumer, checked_dtype, target).encoder
            unsupported = _consumer_unsupported(prepared, dim, checked_dtype, target)
            for name in names:
                prop = CONSUMER_PROPERTIES[name]
                if not prop.is_declared(order_invariant):
                    note = prop.not_declared(order_invariant)
                    driver.row(PropertyResult(name, checked_dtype, "excluded", 0, 0.0, 0.0, note))
                    continue
                if unsupported:
                    driver.row(
                        PropertyResult(name, checked_dtype, "unsupported", 0, 0.0, 0.0, unsupported)
                    )
                    continue
                assert_property = getattr(consumer_properties, prop.assert_name)
                driver.run(
                    Case(
                        property_name=name,
                        dtype=checked_dtype,
                        strategy=lane_sets(
                            batch_size=batch_size,
                            num_lanes=num_lanes,
                            embed_dim=dim,
                            garbage=_garbage(prop),
                            dtype=checked_dtype,
                            device=target,
                            other_inputs=other_inputs,
                        ),
                        check=functools.partial(nondeterminism_first(assert_property), prepared),
                        settings=run_settings,
                        database_key=f"lpim-consumer:{name}:{checked_dtype}:{subject_name(consumer)}",
                        reproducer=functools.partial(_reproducer, name, consumer, factory),
                        translate=functools.partial(_translate, name, prepared),
                    )
                )
    return driver.finish()


def _reproducer(
    name: str, consumer: Consumer, factory: str | None, failure: PropertyError[LaneSet]
) -> str:
    failed = failure.property_name
    assert_name = reproducing_property("consumer", name, failed).assert_name
    example = failure.example
    if not isinstance(example, LaneSet):
        raise TypeError(f"a consumer failure's example is a LaneSet; got {type(example)}")
    return reproducer(example, assert_name, failed, consumer, factory)


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


def _consumer_unsupported(
    prepared: Consumer, embed_dim: int, dtype: torch.dtype, device: torch.device
) -> str:
    """Why the consumer cannot run at `dtype` ('' if it can): one real lane, no padding,
    and only an op with no kernel for the dtype counts."""
    lanes = LaneSet(
        torch.linspace(-1, 1, embed_dim).reshape(1, 1, embed_dim).to(device=device, dtype=dtype),
        torch.ones(1, 1, dtype=torch.bool, device=device),
    )
    try:
        run_consumer(prepared, lanes)
    except LaneConsumerPropertyError as failure:
        cause = failure.__cause__
        if isinstance(cause, NotImplementedError) or "not implemented for" in str(cause):
            return f"not implemented at {dtype}: {str(cause).splitlines()[0]}"[:200]
    except Exception:  # other inputs missing here: the properties will call it properly
        return ""
    return ""


_EMBED_DIM_ATTRIBUTES = ("embed_dim", "d_model", "lane_dim")


def _read_embed_dim(consumer: Consumer) -> int:
    """`C` from an attribute (`_EMBED_DIM_ATTRIBUTES`)."""
    declared = declared_width(consumer, _EMBED_DIM_ATTRIBUTES)
    if declared is None:
        raise unknown_width(
            "check_lane_consumer",
            consumer,
            "the lane embedding width C",
            _EMBED_DIM_ATTRIBUTES,
            "embed_dim=C",
        )
    return declared
