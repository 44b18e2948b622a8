"""`check_encoder`: every property at every dtype, under the user's data contract.

The rows are run by the shared `lpim.testing.driver.Driver`; this module knows what is
particular to encoders: copying a module to a dtype (`precision="cast"`) or running it under
`torch.autocast` (`precision="autocast"`), telling a dtype the encoder cannot run
(`unsupported`) from a bug, which padded-slot contents each property draws, the
reproducer, and what empty lanes give.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, find
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, HypothesisException

from lpim._errors import UsageValueError
from lpim._properties import (
    EXERCISED_BY,
    PROPERTIES,
    Property,
    property_names,
    reproducing_property,
)
from lpim._validation import check_callable
from lpim.batch import LaneBatch
from lpim.strategies import (
    GARBAGE_CONTRACTS,
    NONFINITE_GARBAGE_KINDS,
    OtherInputs,
    with_other_inputs,
)
from lpim.testing import properties as props
from lpim.testing.arguments import (
    check_other_inputs,
    declared_width,
    subject_name,
    unknown_width,
)
from lpim.testing.contract import DataContract
from lpim.testing.deadline import CallTimedOut, HangMemory, call_within, hard_stop
from lpim.testing.dispatch import calls_attention, count_dispatch
from lpim.testing.driver import Case, Driver
from lpim.testing.dtype_probe import dtype_unsupported
from lpim.testing.engine import DATABASE_ENV, DEFAULT_DTYPES, DEFAULT_SETTINGS, run_check
from lpim.testing.errors import EncoderPropertyError, PropertyError
from lpim.testing.options import PRECISIONS, CheckOptions, Given, mask_channel, options_of
from lpim.testing.protocol import (
    Adapted,
    DeadlineExceeded,
    Encoder,
    NoLaneEmbedding,
    Subject,
    foreign_device_tensors,
    holds_attention,
    reachable_modules,
)
from lpim.testing.report import CheckReport, PropertyResult
from lpim.testing.reproducer import deadline_call, reproducer

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
    option of `lpim.testing.options` (the same option as `lpim check`'s flag and the
    `[tool.lpim]` key); None leaves its default, and every value is checked, alone and against
    the others, before anything of the encoder's runs.

    Args:
        encoder: anything following the encoder protocol (`lpim.testing.protocol`). A module
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
        strict: raise `lpim.testing.driver.IncompleteCheckError` when nothing failed but a row
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
    were (`lpim.testing.state.user_state_kept`).

    Returns:
        A `CheckReport` when no property failed (`str()`: headline, contract, table, notes).

    Raises:
        EncoderPropertyError: the first failure in full (shrunk example, `.reproducer`),
            with `.failures` (every failure, each with its reproducer) and `.report`.
        lpim.testing.driver.IncompleteCheckError: `strict=True` and rows were not run.
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
    check_callable(encoder, "encoder", "encoder(points, point_mask)")
    name = subject_name(encoder)
    if (
        options.output is not None
        or options.argument_names
        or options.point_mask_as != "point_mask"
    ):
        encoder = Adapted(encoder, options.point_mask_as, options.argument_names, options.output)
    return run_check(EncoderSide(encoder), encoder, name, options)


class EncoderSide:
    """The encoder's share of the engine (`lpim.testing.engine.CheckSide`): copying the module
    to a dtype (`precision="cast"`) or running it under `torch.autocast`, telling a dtype
    the encoder cannot run (`unsupported`) from a bug, which padded-slot contents each property
    draws, the reproducer, and what empty lanes give."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.empty_lanes_seen = ""
        # One hang is enough: after it, every call of the encoder, at every dtype, raises at
        # once, so a hanging encoder ends the check within two hard stops.
        self.hangs = HangMemory()

    def prepare(self, options: CheckOptions) -> None:
        self.options = options
        self.contract_ = DataContract.from_options(options)
        self.point_dim = _point_dim(options, self.encoder)
        _check_channel(options, self.point_dim)
        self.device = torch.device(options.device)
        if options.other_inputs is not None:
            check_other_inputs(options, self.device)
        self.features = _check_output(
            self.encoder, self.point_dim, self.device, options, self.hangs
        )
        self.names = list(options.properties or CHECKED_PROPERTIES)

    def contract(self) -> str:
        return self.contract_.describe() + _inputs_words(self.options)

    def rows(
        self, dtype: torch.dtype, settings: Settings, driver: Driver[LaneBatch]
    ) -> Iterator[Case[LaneBatch] | PropertyResult]:
        options, contract, target, dim = self.options, self.contract_, self.device, self.point_dim
        autocast = options.precision == "autocast" and dtype in (torch.bfloat16, torch.float16)
        held_dtype = torch.float32 if autocast else dtype
        context = _autocast(target, dtype) if autocast else contextlib.nullcontext
        subject = _prepare(self.encoder, held_dtype, dtype, target, dim, driver, options)
        if subject is None:
            return
        subject.deadline, subject.hangs = options.deadline, self.hangs
        with context():
            unsupported = _unsupported(
                subject, dim, dtype, autocast, options, float32_runs=self.features is not None
            )
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
                strategy=_with_inputs(
                    contract.batches(
                        point_dim=dim,
                        dtype=held_dtype,
                        device=target,
                        garbage=_drawn_garbage(prop, contract),
                    ),
                    options.other_inputs,
                ),
                check=functools.partial(check, subject),
                settings=twice if name == "deterministic" else settings,
                database_key=f"lpim:{name}:{dtype}:{options.precision}:"
                f"{_database_key(self.encoder)}",
                reproducer=functools.partial(
                    _reproducer, name, self.encoder, options.factory, subject, contract, autocast
                ),
                context=context,
                translate=functools.partial(_translate, name, subject),
                pass_note=functools.partial(_reference_note, subject),
                exercised=_EXERCISED.get(prop.exercised_by),
                exercised_by=EXERCISED_BY.get(prop.exercised_by, ""),
                subject_features=self.features,
                dtypes_own=functools.partial(
                    _dtypes_own, self.encoder, subject, dtype, autocast, context, options
                ),
            )
        if not self.empty_lanes_seen and contract.empty_lanes is not False and not unsupported:
            with context():
                self.empty_lanes_seen = props.empty_lane_values(
                    subject,
                    _given_inputs(_with_empty_lanes(dim, held_dtype, target), options.other_inputs),
                )

    def notes(self, report: CheckReport) -> None:
        if subject_notes := _reference_notes(report):
            report.notes.append(subject_notes)
        if self.empty_lanes_seen:
            report.notes.append(_empty_lane_note(self.empty_lanes_seen))


def _inputs_words(options: CheckOptions) -> str:
    """How the encoder was given its inputs, for the report's header ('' for lpim's own
    `encoder(points, point_mask)`): a pass claims no more than the call that was checked."""
    said = []
    if options.point_mask_as != "point_mask":
        said.append(f"the mask as {options.point_mask_as}")
    if options.other_inputs is not None:
        function = options.other_inputs
        name = getattr(function, "__qualname__", None) or type(function).__name__
        module = getattr(function, "__module__", None)
        said.append(f"other inputs from {module}.{name}" if module else f"other inputs from {name}")
    return f"; the encoder given {' and '.join(said)}" if said else ""


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
            last[0] if last else _probe(1, subject.dtype, subject.device),
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
    encoder: Encoder,
    factory: str | None,
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
    return reproducer(
        example,
        assert_name,
        failed,
        encoder,
        factory,
        call,
        keywords=keywords,
        autocast=failure.dtype if autocast else None,
    )


def _prepare(
    encoder: Encoder,
    held_dtype: torch.dtype,
    row_dtype: torch.dtype,
    device: torch.device,
    point_dim: int,
    driver: Driver[LaneBatch],
    options: CheckOptions,
) -> Subject | None:
    """The encoder, copied to `held_dtype` on `device`; a `runs` row fails (and None is
    returned) if it cannot be, or if it still holds tensors elsewhere (a module wrapped in a
    function, a plain tensor attribute that `.to()` does not move)."""
    problem, cause = "", None
    try:
        subject = Subject.prepare(encoder, held_dtype, device)
    except Exception as error:
        problem = (
            f"the encoder cannot be copied and moved to {held_dtype} on {device} "
            f"(copy.deepcopy(encoder).to(device, dtype) raised {type(error).__name__}: {error})"
        )
        cause = error
    else:
        foreign = foreign_device_tensors(subject.encoder, device)
        if not foreign:
            return subject
        problem = (
            f"the encoder holds tensors on another device than the one checked ({device}): "
            f"{'; '.join(foreign)}. Move it there first (encoder.to({str(device)!r}); a "
            "plain tensor attribute should be a registered buffer), or check on its device "
            "(device=...)"
        )
    probe = _given_inputs(_probe(point_dim, held_dtype, device), options.other_inputs)
    failure = EncoderPropertyError("runs", problem, probe)
    failure.__cause__ = cause
    failure.attach_reproducer(
        reproducer(failure.example, "assert_finite", "runs", encoder, options.factory)
    )
    driver.fail(
        failure,
        PropertyResult(
            "runs", row_dtype, "FAIL", 0, 0.0, 0.0, f"runs: {(problem.splitlines() or [''])[0]}"
        ),
    )
    return None


def _probe(point_dim: int, dtype: torch.dtype, device: torch.device) -> LaneBatch:
    """One unpadded lane of three points: the batch reported when no drawn batch is to blame."""
    return LaneBatch(
        torch.linspace(-1, 1, 3 * point_dim).reshape(1, 1, 3, point_dim).to(dtype),
        torch.ones(1, 1, 3, dtype=torch.bool),
    ).to(device=device)


def _with_inputs(
    batches: st.SearchStrategy[LaneBatch], other_inputs: OtherInputs | None
) -> st.SearchStrategy[LaneBatch]:
    """The batches, each with the encoder's other inputs drawn for it (when it takes any)."""
    return batches if other_inputs is None else with_other_inputs(batches, other_inputs)


def _given_inputs(batch: LaneBatch, other_inputs: OtherInputs | None) -> LaneBatch:
    """`batch` with the encoder's other inputs for its `B` samples (as it is without any):
    the simplest that `other_inputs` draws (Hypothesis' `find`, so the same every run), for
    the probes made outside the rows."""
    if other_inputs is None:
        return batch
    dtype, device = batch.points.dtype, batch.points.device
    quiet = Settings(
        database=None,
        max_examples=20,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )
    simplest = find(with_other_inputs(st.just(batch), other_inputs), lambda _: True, settings=quiet)
    return simplest.to(device=device, dtype=dtype)


def _with_empty_lanes(point_dim: int, dtype: torch.dtype, device: torch.device) -> LaneBatch:
    """Two samples of three lanes, four of whose are empty: what empty lanes give."""
    point_mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    point_mask[0, 0, :3] = True
    point_mask[1, 2, :2] = True
    points = torch.linspace(-1, 1, 2 * 3 * 4 * point_dim).reshape(2, 3, 4, point_dim)
    return LaneBatch(torch.where(point_mask[..., None], points, 0.0), point_mask).to(
        device=device, dtype=dtype
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


def _check_output(
    encoder: Encoder,
    point_dim: int,
    device: torch.device,
    options: CheckOptions,
    hangs: HangMemory,
) -> frozenset[str] | None:
    """One call on one real lane at float32, before anything is drawn: an output in which no
    lane embedding can be found (or not the part `output` names) is a usage error, said in
    under a second, never after rows of examples. Any other crash is left to the rows.

    Returns:
        What the encoder was seen to do, for the causes a failure lists: `{"attention"}` when
        it calls attention (an attention op ran, or it holds an attention module); None when
        the call did not run (the dtype probe's float32 side: `_unsupported`).

    Raises:
        UsageValueError: what came back, and the option that chooses.
    """
    try:
        subject = Subject.prepare(encoder, torch.float32, device)
        subject.deadline, subject.hangs = options.deadline, hangs
        with torch.no_grad(), count_dispatch() as count:
            subject(_given_inputs(_probe(point_dim, torch.float32, device), options.other_inputs))
    except NoLaneEmbedding as error:
        chooses = options.how_to_pass("output", "INDEX|NAME", placeholder=True)
        raise UsageValueError(
            f"{error}; say which part is the lane embedding [B, M, C] with {chooses}"
            + (f" (given: {options.name('output')})" if options.given("output") else "")
        ) from None
    except (Exception, DeadlineExceeded):
        return None  # a crash or a slow call: the rows report it, with their examples
    attends = calls_attention(count) or holds_attention(encoder)
    return frozenset({"attention"}) if attends else frozenset()


def _unsupported(
    subject: Subject,
    point_dim: int,
    dtype: torch.dtype,
    autocast: bool,
    options: CheckOptions,
    float32_runs: bool,
) -> str:
    """Why the encoder cannot run at `dtype` ('' if it can, or if its crash is not the
    dtype's), decided by experiment (`lpim.testing.dtype_probe`): one unpadded lane at the
    dtype, in the precision mode checked, against the same lane at plain float32, which
    `_check_output` already ran (`float32_runs`)."""

    def at_dtype() -> None:
        with torch.no_grad():
            try:
                probe = _probe(point_dim, subject.dtype, subject.device)
                subject(_given_inputs(probe, options.other_inputs))
            except DeadlineExceeded:
                pass  # slow, not unsupported: the rows report `deadline`

    low = dtype in (torch.bfloat16, torch.float16)
    alternative = (
        f"try {options.how_to_pass('precision', 'autocast')} or "
        f"{options.how_to_pass('dtype', 'float32')}"
        if low and not autocast
        else f"check it at float32 ({options.how_to_pass('dtype', 'float32')}), which it runs"
    )
    return dtype_unsupported(
        at_dtype,
        lambda: float32_runs,
        dtype,
        subject.device,
        mode="under autocast" if autocast else "cast to it",
        alternative=alternative,
    )


def _dtypes_own(
    encoder: Encoder,
    subject: Subject,
    dtype: torch.dtype,
    autocast: bool,
    context: Callable[[], Any],
    options: CheckOptions,
    failure: PropertyError[LaneBatch],
) -> str:
    """Why `failure` is the dtype's and not the encoder's ('' when it is the encoder's),
    by experiment, whatever torch's message says: the example's real lanes, alone and
    unpadded, show a crash or a NaN / inf value or gradient at `dtype` in the mode checked
    (inside `context`: autocast, when checked), and none at plain float32 (a float32 copy,
    autocast off). No padding takes part, so a fill value that overflows the dtype stays a
    failure (and a crash on such a fill is never counted). The reliability properties
    (deterministic, inputs_unchanged, deadline) are never the dtype's."""
    if dtype == torch.float32 or PROPERTIES[failure.property_name].reliability:
        return ""
    example = failure.example
    if not isinstance(example, LaneBatch):
        return ""
    try:
        with context():
            seen = props.lanes_alone_trouble(subject, example)
        if not seen:
            return ""
        plain = Subject.prepare(encoder, torch.float32, subject.device)
        plain.deadline, plain.hangs = subject.deadline, subject.hangs
        with torch.autocast(subject.device.type, enabled=False):
            at_float32 = props.lanes_alone_trouble(plain, example.to(dtype=torch.float32))
    except (Exception, DeadlineExceeded):
        return ""  # the experiment itself did not run: the failure stands
    if at_float32:
        return ""  # float32 shows it too: not the dtype's
    name = str(dtype).removeprefix("torch.")
    mode = "under autocast" if autocast else "cast to it"
    instance = ": LayerNorm's eps=1e-12 is 0 in float16" if dtype == torch.float16 else ""
    return (
        f"{name} numerics, not a mask bug: {failure.property_name} failed, and {seen} at "
        f"{name} ({mode}) while the same lanes give none at plain float32; the dtype's range or "
        f"precision (an eps or a value the dtype cannot hold{instance}); check it at float32 "
        f"({options.how_to_pass('dtype', 'float32')})"
        + (f" or try {options.how_to_pass('precision', 'autocast')}" if not autocast else "")
    )


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
        batch if batch is not None else _probe(1, subject.dtype, subject.device),
    )


def _skipped_here(name: str, target: torch.device) -> str:
    """Why property `name` cannot run on this machine ('' if it can), decided up front.

    Deciding it before Hypothesis runs keeps a skip a skip: raised inside a test, it is printed
    by Hypothesis as a failure to reproduce with `@seed`.
    """
    if name == "devices_agree" and not torch.cuda.is_available():
        return props.no_cuda_reason()
    return ""


def _point_dim(options: CheckOptions, encoder: Encoder) -> int:
    """`D`: `point_dim` as given (checked against the encoder's `in_dim`), else read."""
    if options.point_dim is None:
        return _read_point_dim(encoder, options)
    declared = getattr(encoder, "in_dim", None)
    declares = isinstance(declared, int) and not isinstance(declared, bool)
    if declares and declared != options.point_dim:
        raise UsageValueError(
            f"{options.option_name('point_dim')} must match the encoder's in_dim = {declared}; "
            f"got {options.name('point_dim')} (leave it out to use the encoder's)"
        )
    return options.point_dim


def _check_channel(options: CheckOptions, point_dim: int) -> None:
    """A validity channel's index must fall among the encoder's `D + 1` channels."""
    channel = mask_channel(options.point_mask_as)
    if channel is None:
        return
    width = point_dim + 1
    if not -width <= channel[1] < width:
        raise UsageValueError(
            f"{options.name('point_mask_as')}: channel {channel[1]} is outside the encoder's "
            f"{width} channels ({point_dim} coordinates and the validity channel); use an index "
            f"from -{width} to {width - 1}"
        )


def _database_key(encoder: object) -> str:
    """What tells encoders apart in the example database: a module's class, else the
    callable's own qualified name (every plain function shares one class)."""
    if isinstance(encoder, Adapted):
        return _database_key(encoder.inner)
    if isinstance(encoder, torch.nn.Module):
        return subject_name(encoder)
    target = getattr(encoder, "func", encoder)  # functools.partial
    name = getattr(target, "__qualname__", None)
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if name and module else subject_name(encoder)


_POINT_DIM_ATTRIBUTES = ("in_dim", "point_dim", "input_dim", "in_channels", "in_features")


def _read_point_dim(encoder: Encoder, options: CheckOptions) -> int:
    """`D` from an attribute (`_POINT_DIM_ATTRIBUTES`), else from the input width of the
    encoder's layers (`nn.Linear.in_features`, `nn.Conv1d.in_channels`, an RNN's
    `input_size`), in the order they appear, confirmed by a probe call that runs."""
    declared = declared_width(encoder, _POINT_DIM_ATTRIBUTES)
    if declared is not None:
        return declared
    candidates: list[int] = []
    extra = encoder.extra_channels if isinstance(encoder, Adapted) else 0  # a validity channel
    for _, module in reachable_modules(encoder):
        for layer in module.modules():
            width = (
                getattr(layer, "in_features", None)
                if isinstance(layer, torch.nn.Linear)
                else getattr(layer, "in_channels", None)
                if isinstance(layer, torch.nn.Conv1d)
                else getattr(layer, "input_size", None)
                if isinstance(layer, torch.nn.RNNBase)
                else None
            )
            if isinstance(width, int) and width > extra and width - extra not in candidates:
                candidates.append(width - extra)
    for width in candidates:
        if _runs_with(encoder, width, options):
            return width
    tried = f" (the widths of its layers, {candidates}, did not run)" if candidates else ""
    raise unknown_width(
        "check_encoder",
        encoder,
        "how many coordinates a point has",
        _POINT_DIM_ATTRIBUTES,
        options.how_to_pass("point_dim", "D", placeholder=True),
        tried,
    )


def _runs_with(encoder: Encoder, point_dim: int, options: CheckOptions) -> bool:
    """True when `encoder` runs on one lane of 3 points of `point_dim` coordinates (within
    the hard stop of `deadline`, when there is one)."""
    module = encoder if isinstance(encoder, torch.nn.Module) else None
    try:
        if module is not None:
            module.eval()  # the caller's module: the engine's user_state_kept puts modes back
        with torch.no_grad():
            first = next(iter(_parameters_and_buffers(encoder)), None)
            dtype = first.dtype if first is not None and first.is_floating_point() else None
            probe = _probe(point_dim, dtype or torch.float32, torch.device("cpu"))
            if first is not None:
                probe = probe.to(device=first.device)
            probe = _given_inputs(probe, options.other_inputs)
            if options.deadline is None:
                probe.call(encoder)
            else:
                call_within(hard_stop(options.deadline), probe.call, encoder)
    except (Exception, CallTimedOut):
        return False
    return True


def _parameters_and_buffers(encoder: Encoder) -> Iterator[torch.Tensor]:
    for _, module in reachable_modules(encoder):
        yield from module.parameters()
        yield from module.buffers()
