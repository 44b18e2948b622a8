"""`check_encoder`: every property at every dtype, under the user's data contract.

The rows are run by the one engine (`lpim.testing._engine`) through the shared
`lpim.testing._driver.Driver`; this module wires what is particular to encoders: the options,
the data contract (which padded-slot contents each property draws, the asserts' keywords),
the precision mode (a dtype copy, `precision="cast"`, or `torch.autocast`,
`precision="autocast"`), the reproducer, and what empty lanes give. The encoder itself is
handed once to `lpim.testing._protocol.EncoderUnderCheck` (its width, device, copies, the
dtype probe) and reached only through it.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, HypothesisException

from lpim._property_registry import (
    EXERCISED_BY,
    PROPERTIES,
    Property,
    property_names,
    reproducing_property,
)
from lpim.batch import LaneBatch
from lpim.strategies import (
    GARBAGE_CONTRACTS,
    NONFINITE_GARBAGE_KINDS,
    OtherInputs,
)
from lpim.testing import _encoder_properties as props
from lpim.testing._contract import DataContract
from lpim.testing._driver import Case, Driver
from lpim.testing._engine import DATABASE_ENV, DEFAULT_DTYPES, DEFAULT_SETTINGS, run_check
from lpim.testing._options import PRECISIONS, CheckOptions, Given, options_of
from lpim.testing._property_errors import EncoderPropertyError, PropertyError
from lpim.testing._protocol import (
    DeadlineExceeded,
    Encoder,
    EncoderUnderCheck,
    Subject,
    probe_batch,
)
from lpim.testing._report import CheckReport, PropertyResult
from lpim.testing._reproducer import deadline_call, reproducer

__all__ = [
    "CHECKED_PROPERTIES",
    "DATABASE_ENV",
    "DEFAULT_DTYPES",
    "DEFAULT_SETTINGS",
    "PRECISIONS",
    "CheckReport",
    "EncoderSide",
    "PropertyResult",
    "check_encoder",
    "check_encoder_with",
]

CHECKED_PROPERTIES: tuple[str, ...] = property_names("encoder")
"""The properties `check_encoder` runs, in order (`properties=` picks among them).
`runs`, `inputs_unchanged` and `deadline` are checked on every call of the encoder."""


def check_encoder(
    encoder: Encoder,
    *,
    point_dim: int | None = None,
    output: int | str | None = None,
    point_mask_as: str | None = None,
    argument_names: tuple[str, str] | None = None,
    other_inputs: OtherInputs | None = None,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    device: str | torch.device | None = None,
    settings: Settings | None = None,
    properties: str | Sequence[str] | None = None,
    precision: str | None = None,
    layout: str | Sequence[str] | None = None,
    garbage: str | None = None,
    min_points: int | None = None,
    empty_lanes: bool | str | None = None,
    empty_samples: bool | None = None,
    batch_size: int | tuple[int, int] | None = None,
    num_lanes: int | tuple[int, int] | None = None,
    num_points: int | tuple[int, int] | None = None,
    strategy: st.SearchStrategy[LaneBatch] | None = None,
    strict: bool | None = None,
    threads: int | None = 1,
    factory: str | None = None,
    deadline: float | datetime.timedelta | None = None,
    progress: Callable[[str, torch.dtype, PropertyResult | None], None] | None = None,
) -> CheckReport:
    """Check every property at every dtype on `encoder`; return the report, or raise at
    the end with every failure.

    Every property x dtype row runs, even after a failure, so the report shows them all. The
    data-contract keywords (`layout` ... `strategy`; default: anything may happen) narrow
    the batches drawn to those the user's loader produces; the report's header names the
    contract checked, so a pass never claims more than was checked. Every keyword is an
    option of `lpim.testing._options` (the same option as `lpim check`'s flag and the
    `[tool.lpim]` key); None leaves its default, and every value is checked, alone and against
    the others, before anything of the encoder's runs.

    Args:
        encoder: anything following the encoder protocol (`lpim.testing._protocol`). A module
            is copied per dtype and put in eval mode; the caller's module is never modified.
        point_dim: `D`; when omitted, read from an `in_dim`, `point_dim`, `input_dim`,
            `in_channels` or `in_features` attribute, else from the input width of the
            encoder's first layer that a probe call confirms.
        output: which part of what the encoder returns is the lane embedding `[B, M, C]`: an
            index (a tuple or list, e.g. `0` for `(embedding, valid)`), a key (a dict) or an
            attribute (a NamedTuple, a dataclass, any object). Default: the output itself when
            it is a tensor, its `.lane_embedding` (with `.point_features`), else the one
            `[B, M, C]` tensor among its parts. One call before anything is drawn checks it.
        point_mask_as: how the encoder takes the mask: `"point_mask"` (default: bool, True =
            real), `"key_padding_mask"` (bool, True = padded slot), `"attention_mask"` (int,
            1 = real) or `"lengths"` (int `[B, M]`; needs `layout="right"`).
        argument_names: `(points_name, mask_name)` when the encoder takes its two arguments by
            keyword (`forward(polylines=..., polylines_mask=...)`). With `output`,
            `point_mask_as` or `argument_names`, the encoder is checked through
            `lpim.testing.Adapted`, which reproducers rebuild.
        other_inputs: `(batch_size, dtype, device) -> SearchStrategy` of the encoder's
            per-sample context: a tuple (passed after the mask) or a dict (keywords), every
            tensor `[B, ...]`, e.g. an agent embedding `[B, C]` used as the seed query. The
            encoder is called as `encoder(points, point_mask, *args, **kwargs)`, and every
            property that runs a lane alone gives it its own sample's rows
            (`lpim.LaneBatch.samples`). It is called once before the check: one that raises,
            or returns something other than a strategy, is a usage error.
        dtype: one dtype or several (`torch.float32` or `"float32"`); default float64,
            float32, bfloat16, float16.
        device: where to run (default CPU). `devices_agree` compares CPU with CUDA and is
            skipped, with the reason, where there is no CUDA.
        settings: Hypothesis settings (e.g. a profile's); default `DEFAULT_SETTINGS`. Their
            `database` keeps failing examples, one key per property, dtype and encoder, and
            replays them first next time (`database=None` keeps nothing). With
            `settings=None`, `$LPIM_HYPOTHESIS_DATABASE` names the directory when set.
            Their `deadline` is ignored: pass `deadline=`.
        properties: a subset of `CHECKED_PROPERTIES` (a name or a list; default all).
        precision: `"cast"` (default) or `"autocast"` (see `PRECISIONS`). The tolerance
            rule applies at the row's dtype either way.
        layout: the contract's padding layouts: `"right"`, `"left"`, `"contiguous"` (real
            points in one run, padding at either end or both), `"scattered"`, or a list
            (default all).
        garbage: what the contract lets padded slots hold: `"any"` (default: huge, inf, NaN
            too), `"finite"` (within the coordinates' range), `"any_finite"` (finite, any
            magnitude), `"zeros"` or `"repeat_last"`. NaN/inf sensitivity is
            property `ignores_nonfinite_padding`, excluded unless `"any"`.
        min_points: the fewest real points in a non-empty lane (default 1); at most the
            largest `num_points`.
        empty_lanes: whether empty lanes occur (default True); `"zero"` also requires them
            to give an all-zero `lane_embedding` (property `empty_lanes_zero`).
        empty_samples: whether samples without a real lane occur (default True).
        batch_size: `B`: an int or an inclusive `(low, high)` range (default (1, 3)).
        num_lanes: `M`: an int or a range (default (1, 6)).
        num_points: `N`: an int or a range (default (1, 8)).
        strategy: a Hypothesis strategy of `lpim.LaneBatch` to draw from instead (its point
            dimension is used; `garbage` still says what padded slots may hold; the other
            contract keywords may not be given with it).
        strict: raise `lpim.testing._driver.IncompleteCheckError` when nothing failed but a row
            was skipped or unsupported (for CI machines that must run everything).
        threads: torch's intra-op threads during the check (restored after); default 1,
            because tiny forwards gain nothing from more and lose much when a core is busy.
            None leaves torch's setting.
        factory: `"module:expression"` that rebuilds the encoder, for the reproducer.
        deadline: seconds (or a `timedelta`) one call of the encoder on one batch may take;
            a call over it is timed again and, if slow again, property `deadline` fails.
        progress: called as `progress(property_name, dtype, None)` when a row starts and
            `progress(property_name, dtype, result)` when it ends: a live display.

    Every call of the encoder gets copies of the batch and must leave them as they were
    (property `inputs_unchanged`). A nondeterministic encoder fails `deterministic`, run
    first on a fifth of `max_examples`. A crash on a valid batch is its own `runs` row;
    the property it interrupted runs again on the batches where the encoder runs. A dtype the
    encoder cannot run on one unpadded lane while it runs at float32 (two dtypes meet inside
    it, or an op has no kernel for the dtype) is `unsupported`, with a hint; a fill value
    that overflows the dtype stays a `runs` failure. The float64 copy used for the rule's
    drift term is best effort: without it the floors alone apply and the row says so.
    Torch's RNG is seeded with 0 before each row; afterwards, however the check ends, the
    global RNG states, the modes, parameters, buffers and gradients of the modules the encoder
    holds, and torch's threads, default dtype, grad mode and the warnings filters are as they
    were (`lpim.testing._state.user_state_kept`).

    Returns:
        A `CheckReport` when no property failed (`str()`: headline, contract, table, notes).

    Raises:
        EncoderPropertyError: the first failure in full (shrunk example, `.reproducer`),
            with `.failures` (every failure, each with its reproducer) and `.report`.
        lpim.testing._driver.IncompleteCheckError: `strict=True` and rows were not run.
        lpim.errors.UsageValueError: (a `ValueError`) an unknown property, dtype or
            precision, a value out of range, a contract that cannot be met or is too large to
            draw, `point_dim` that cannot be read or disagrees with the encoder's, a device
            torch does not know or that is not available, a malformed `factory`.
        lpim.errors.UsageTypeError: (a `TypeError`) `encoder` is not callable, `settings`
            is not a `hypothesis.settings`, or another argument has the wrong type.
    """
    __tracebackhide__ = True  # a failing check shows its message, not lpim's frames
    given = Given.keywords(locals(), skip=("encoder", "__tracebackhide__"))  # every one an option
    return check_encoder_with(encoder, options_of("encoder", given))


def check_encoder_with(encoder: Encoder, options: CheckOptions) -> CheckReport:
    """`check_encoder` with options already built (by the `lpim` command or a fixture).

    Raises:
        As `check_encoder`.
    """
    __tracebackhide__ = True
    return run_check(EncoderSide(), encoder, options)  # handed down once: it stays below


class EncoderSide:
    """The encoder's share of the engine (`lpim.testing._engine.CheckSide`): it wires the
    options, the data contract and the engine, running each property at a dtype copy
    (`precision="cast"`) or under `torch.autocast`, with the padded-slot contents each property
    draws, its reproducer and what empty lanes give. The encoder itself is reached only through
    `lpim.testing._protocol.EncoderUnderCheck` (`under`, built by the engine with `holder`,
    which is given the property code it needs: the reproducer and the dtype probe's
    experiment)."""

    role, call = "encoder", "encoder(points, point_mask)"
    under: EncoderUnderCheck

    def __init__(self) -> None:
        self.holder = functools.partial(
            EncoderUnderCheck,
            reproducer=reproducer,
            lanes_alone_trouble=props.lanes_alone_trouble,
        )
        self.empty_lanes_seen = ""

    def prepare(self, options: CheckOptions) -> None:
        self.options = options
        self.contract_ = DataContract.from_options(options)
        self.under.read()
        self.names = list(options.properties or CHECKED_PROPERTIES)

    def contract(self) -> str:
        return self.contract_.describe() + self.under.inputs_words()

    def rows(
        self, dtype: torch.dtype, settings: Settings, driver: Driver[LaneBatch]
    ) -> Iterator[Case[LaneBatch] | PropertyResult]:
        options, contract, under = self.options, self.contract_, self.under
        target, dim = under.device, under.point_dim
        autocast = options.precision == "autocast" and dtype in (torch.bfloat16, torch.float16)
        held_dtype = torch.float32 if autocast else dtype
        context = _autocast(target, dtype) if autocast else contextlib.nullcontext
        subject = under.at(held_dtype, dtype, driver)
        if subject is None:
            return
        with context():
            unsupported = under.unsupported(subject, dtype, autocast)
        # Nondeterminism shows on any batch: a fifth of the examples is plenty for `deterministic`
        # (a nondeterministic encoder that slips through makes a later property Flaky, which is
        # reported as `deterministic` too).
        twice = Settings(settings, max_examples=max(1, settings.max_examples // 5))
        for name in self.names:
            prop = PROPERTIES[name]
            excluded = _excluded(prop, contract)
            if prop.declared_by and options.properties is None and excluded:
                continue  # an opt-in property gets a row only when asked for or declared
            skipped = _skipped_here(name, target)
            if excluded or unsupported or skipped:
                verdict, note = (
                    ("excluded", excluded)
                    if excluded
                    else ("unsupported", unsupported)
                    if unsupported
                    else ("skipped", skipped)
                )
                yield PropertyResult(name, dtype, verdict, 0, 0.0, 0.0, note)
                continue
            check = getattr(props, prop.assert_name)
            check = functools.partial(check, **_assert_keywords(prop, contract))
            yield Case(
                property_name=name,
                dtype=dtype,
                strategy=under.batches(
                    contract.batches(
                        point_dim=dim,
                        dtype=held_dtype,
                        device=target,
                        garbage=_drawn_garbage(prop, contract),
                    )
                ),
                check=functools.partial(check, subject),
                settings=twice if name == "deterministic" else settings,
                database_key=f"lpim:{name}:{dtype}:{options.precision}:{under.database_key}",
                reproducer=functools.partial(_reproducer, name, under, subject, contract, autocast),
                context=context,
                translate=functools.partial(_translate, name, subject),
                pass_note=functools.partial(_reference_note, subject),
                exercised=_EXERCISED.get(prop.exercised_by),
                exercised_by=EXERCISED_BY.get(prop.exercised_by, ""),
                subject_features=under.features,
                dtypes_own=functools.partial(under.dtypes_own, subject, dtype, autocast, context),
            )
        if not self.empty_lanes_seen and contract.empty_lanes is not False and not unsupported:
            with context():
                self.empty_lanes_seen = props.empty_lane_values(
                    subject, under.with_empty_lanes(held_dtype)
                )

    def notes(self, report: CheckReport) -> None:
        if subject_notes := _reference_notes(report):
            report.notes.append(subject_notes)
        if self.empty_lanes_seen:
            report.notes.append(_empty_lane_note(self.empty_lanes_seen))


def _reference_note(subject: Subject) -> str:
    return subject.reference_note


def _autocast(device: torch.device, dtype: torch.dtype) -> Callable[[], Any]:
    return lambda: torch.autocast(device.type, dtype=dtype)


def _excluded(prop: Property, contract: DataContract) -> str:
    """Why `prop` is outside the data contract ('' if it is inside)."""
    kinds = GARBAGE_CONTRACTS[contract.garbage]
    if prop.padding == "nonfinite" and not set(kinds) & set(NONFINITE_GARBAGE_KINDS):
        return f"not in the data contract: garbage={contract.garbage!r} (no NaN/inf padding)"
    if prop.takes_garbage and len(kinds) == 1:
        return (
            f"not in the data contract: garbage={contract.garbage!r} fixes what padded slots hold"
        )
    given = getattr(contract, prop.declared_keyword, None)
    if not prop.is_declared(given):
        return prop.not_declared(given)
    return ""


def _drawn_garbage(prop: Property, contract: DataContract) -> list[str]:
    """What padded slots hold in the batches drawn for `prop` (see `lpim.testing.Padding`)."""
    kinds = list(GARBAGE_CONTRACTS[contract.garbage])
    if prop.padding == "contract":
        return kinds
    if prop.padding == "finite":
        return [k for k in kinds if k not in NONFINITE_GARBAGE_KINDS]
    if prop.padding == "nonfinite":
        return list(NONFINITE_GARBAGE_KINDS)
    return ["zeros" if "zeros" in kinds else kinds[0]]


def _translate(
    name: str, subject: Subject, error: BaseException, last: list[LaneBatch]
) -> EncoderPropertyError | None:
    """What escaped Hypothesis, as the failure to report (None: not the encoder's doing)."""
    if isinstance(error, DeadlineExceeded):  # not shrunk: timing is not a function of input
        return EncoderPropertyError("deadline", str(error), error.batch)
    if isinstance(error, Flaky):  # the same batch failed, then passed: nondeterminism
        return _nondeterminism(name, subject, last, error)
    if isinstance(error, HypothesisException):  # a health check or the like: blame no one
        return EncoderPropertyError(
            "runs",
            f"Hypothesis could not check {name}: {type(error).__name__}: {error}",
            last[0] if last else probe_batch(1, subject.dtype, subject.device),
        )
    return None


# What a batch must hold to exercise a property (`Property.exercised_by`; words in EXERCISED_BY).
_EXERCISED: dict[str, Callable[[LaneBatch], bool]] = {
    "padded_slot": lambda batch: bool((~batch.point_mask).any()),
    "two_lanes": lambda batch: batch.shape[0] * batch.shape[1] >= 2,
    "empty_lane": lambda batch: bool((~batch.lane_mask).any()),
}


# What the data contract passes to a property's assert, and the asserts' own defaults (a
# reproducer writes only the keywords that differ from them).
_ASSERT_DEFAULTS: dict[str, object] = {"garbage": "any", "empty_lanes": True, "empty_samples": True}


def _assert_keywords(prop: Property, contract: DataContract) -> dict[str, object]:
    """The data contract's keywords `prop`'s assert takes (`garbage`, `empty_lanes`, ...)."""
    given: dict[str, object] = {}
    if prop.takes_garbage:
        given["garbage"] = contract.garbage
    if "empty_lanes" in prop.contract_keywords:
        given["empty_lanes"] = contract.empty_lanes is not False
    if "empty_samples" in prop.contract_keywords:
        given["empty_samples"] = contract.empty_lanes is not False and contract.empty_samples
    return given


def _reproducer(
    name: str,
    under: EncoderUnderCheck,
    subject: Subject,
    contract: DataContract,
    autocast: bool,
    failure: PropertyError[LaneBatch],
) -> str:
    """Source that re-raises `failure`: the property's own assert (the row's for a crash)."""
    failed = failure.property_name
    prop = reproducing_property("encoder", name, failed)
    keywords = "".join(
        f", {keyword}={value!r}"
        for keyword, value in _assert_keywords(prop, contract).items()
        if value != _ASSERT_DEFAULTS[keyword]
    )
    assert_name = prop.assert_name
    call = deadline_call(subject.deadline) if failed == "deadline" and subject.deadline else None
    example = failure.example
    if not isinstance(example, LaneBatch):
        raise TypeError(f"an encoder failure's example is a LaneBatch; got {type(example)}")
    return under.reproducer(
        example,
        assert_name,
        failed,
        call=call,
        keywords=keywords,
        autocast=failure.dtype if autocast else None,
    )


def _empty_lane_note(seen: str) -> str:
    advice = {
        "exact zeros": "a consumer may read them as they are",
        "NaN or inf": "a consumer must mask them (select, never multiply)",
    }.get(seen, "a consumer must mask them (lane_mask) or they take part as real lanes")
    return f"empty lanes give {seen}: {advice}; empty_lanes='zero' makes zeros required"


def _reference_notes(report: CheckReport) -> str:
    """The first row note that says the float64 reference was missing, for the notes."""
    for result in report.results:
        if result.note.startswith("no float64 reference"):
            return result.note
    return ""


def _nondeterminism(
    name: str, subject: Subject, last: list[LaneBatch], error: HypothesisException
) -> EncoderPropertyError:
    """Property `deterministic` for a Flaky run: replay the last batch twice to show it."""
    batch = last[0] if last else None
    if batch is not None:
        for _ in range(3):
            try:
                props.assert_deterministic(subject, batch)
            except EncoderPropertyError as failure:
                return failure
    return EncoderPropertyError(
        "deterministic",
        f"Hypothesis saw {name} fail on a batch and then hold on the same batch "
        f"({type(error).__name__}): the encoder's output is not a function of its input. Is "
        "dropout active? Call .eval(); else the encoder draws random numbers or keeps state "
        "between calls",
        batch if batch is not None else probe_batch(1, subject.dtype, subject.device),
    )


def _skipped_here(name: str, target: torch.device) -> str:
    """Why property `name` cannot run on this machine ('' if it can), decided up front.

    Deciding it before Hypothesis runs keeps a skip a skip: raised inside a test, it is printed
    by Hypothesis as a failure to reproduce with `@seed`.
    """
    if name == "devices_agree" and not torch.cuda.is_available():
        return props.no_cuda_reason()
    return ""
