"""The code under check, for a whole check: everything a check needs to know of it.

A check's door hands the code it is given down here once, as an `EncoderUnderCheck` or a
`ConsumerUnderCheck`, and keeps only that object: the checks (`lpim.testing._encoder_check`,
`lpim.testing._consumer_check`) wire the options, the data contract and the engine, and never
touch the code itself. What both sides share is `UnderCheck`. An object here knows:

- the code as it is called (an encoder through `Adapted` when the options say how it takes its
  inputs) and its name (reports, the example database);
- its widths: the point dimension `D` of an encoder (declared, else read off its layers and
  confirmed by a probe call), the embedding width `C` of a consumer;
- its device, its copies at a dtype (`Subject`s, one hang memory for all), the batches made
  outside the rows (with its other inputs);
- the first call that checks an encoder's output, and the dtype probe wired to it (the
  experiment itself is `lpim.testing._dtype_probe`).

How one copy at one dtype is called (copies of the inputs, the deadline, the float64 twin) is
[`Subject`][lpim.testing.Subject], in `lpim.testing._protocol`, below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, find
from hypothesis import settings as Settings
from hypothesis import strategies as st

from lpim._errors import UsageTypeError, UsageValueError
from lpim._property_registry import PROPERTIES
from lpim._validation import check_callable
from lpim.batch import LaneBatch
from lpim.lane_set import LaneSet
from lpim.strategies import OtherInputs, with_other_inputs
from lpim.testing import _encoder_properties as props
from lpim.testing._consumer_properties import Consumer, run_consumer
from lpim.testing._deadline import CallTimedOut, HangMemory, call_within, hard_stop
from lpim.testing._dispatch import calls_attention, count_dispatch
from lpim.testing._driver import Driver
from lpim.testing._dtype_probe import dtype_unsupported, runs_at_float32
from lpim.testing._options import CheckOptions, mask_channel
from lpim.testing._property_errors import EncoderPropertyError, PropertyError
from lpim.testing._protocol import (
    POINT_DIM_ATTRIBUTES,
    Adapted,
    DeadlineExceeded,
    Encoder,
    NoLaneEmbedding,
    Subject,
    foreign_device_tensors,
    holds_attention,
    reachable_modules,
)
from lpim.testing._report import PropertyResult
from lpim.testing._reproducer import reproducer

__all__ = [
    "ConsumerUnderCheck",
    "EncoderUnderCheck",
    "UnderCheck",
    "check_other_inputs",
    "declared_width",
    "probe_batch",
    "subject_name",
    "unknown_width",
]


def subject_name(encoder: object) -> str:
    """What is checked, as `module.Class` (a report's first line, the database key)."""
    cls = type(encoder)
    return f"{cls.__module__}.{cls.__qualname__}"


def declared_width(subject: object, attributes: Sequence[str]) -> int | None:
    """The width `subject` declares: its first attribute among `attributes` that is a positive
    int (`in_dim`, `embed_dim`, ...), or None."""
    for attribute in attributes:
        value = getattr(subject, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def unknown_width(
    check: str,
    subject: object,
    width: str,
    attributes: Sequence[str],
    keyword: str,
    tried: str = "",
) -> UsageValueError:
    """The error of a check that cannot tell `width` (e.g. "how many coordinates a point has")
    of `subject`: it names the attributes read and the keyword to pass instead."""
    return UsageValueError(
        f"{check} cannot tell {width} for {subject_name(subject)}: it has none of the "
        f"attributes {', '.join(attributes)}{tried}; pass {keyword}"
    )


def check_other_inputs(options: CheckOptions, device: torch.device) -> None:
    """Call `other_inputs` once, as the check will: what it gives must be a strategy (both
    checks: an encoder's per-sample context, a consumer's other inputs).

    Raises:
        UsageValueError: it raised (it is the user's function, called with the check's
            arguments: its failure is a usage error, not the code's).
        UsageTypeError: it gave something other than a Hypothesis strategy (e.g. the factory
            itself was passed: `bev_maps` rather than `bev_maps(16, 8, 8)`).
    """
    name = options.name("other_inputs")
    try:
        given = options.other_inputs(1, torch.float32, device)
    except Exception as error:
        raise UsageValueError(
            f"{name}: calling it as other_inputs(batch_size=1, dtype=torch.float32, "
            f"device={str(device)!r}) raised {type(error).__name__}: {error}"
        ) from error
    if not isinstance(given, st.SearchStrategy):
        hint = (
            " (is it the factory rather than what it builds, e.g. bev_maps rather than "
            "bev_maps(16, 8, 8)?)"
            if callable(given)
            else ""
        )
        raise UsageTypeError(
            f"{name} must be a function (batch_size, dtype, device) -> a Hypothesis strategy of "
            f"the code's other inputs; calling it gave a {type(given).__name__}{hint}"
        )


def _prepare_at(
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
    probe = _given_inputs(probe_batch(point_dim, held_dtype, device), options.other_inputs)
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


def probe_batch(point_dim: int, dtype: torch.dtype, device: torch.device) -> LaneBatch:
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
        the call did not run (the dtype probe's float32 side: `_encoder_unsupported`).

    Raises:
        UsageValueError: what came back, and the option that chooses.
    """
    try:
        subject = Subject.prepare(encoder, torch.float32, device)
        subject.deadline, subject.hangs = options.deadline, hangs
        with torch.no_grad(), count_dispatch() as count:
            subject(
                _given_inputs(probe_batch(point_dim, torch.float32, device), options.other_inputs)
            )
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


def _encoder_unsupported(
    subject: Subject,
    point_dim: int,
    dtype: torch.dtype,
    autocast: bool,
    options: CheckOptions,
    float32_runs: bool,
) -> str:
    """Why the encoder cannot run at `dtype` ('' if it can, or if its crash is not the
    dtype's), decided by experiment (`lpim.testing._dtype_probe`): one unpadded lane at the
    dtype, in the precision mode checked, against the same lane at plain float32, which
    `_check_output` already ran (`float32_runs`)."""

    def at_dtype() -> None:
        with torch.no_grad():
            try:
                probe = probe_batch(point_dim, subject.dtype, subject.device)
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


def _point_dim_of(options: CheckOptions, encoder: Encoder) -> int:
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


def _read_point_dim(encoder: Encoder, options: CheckOptions) -> int:
    """`D` from an attribute (`POINT_DIM_ATTRIBUTES`), else from the input width of the
    encoder's layers (`nn.Linear.in_features`, `nn.Conv1d.in_channels`, an RNN's
    `input_size`), in the order they appear, confirmed by a probe call that runs."""
    declared = declared_width(encoder, POINT_DIM_ATTRIBUTES)
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
        POINT_DIM_ATTRIBUTES,
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
            probe = probe_batch(point_dim, dtype or torch.float32, torch.device("cpu"))
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


def _consumer_unsupported(
    consumer: Consumer,
    prepared: Consumer,
    embed_dim: int,
    dtype: torch.dtype,
    device: torch.device,
    options: CheckOptions,
) -> str:
    """Why the consumer cannot run at `dtype` ('' if it can, or if its crash is not the
    dtype's), decided by experiment (`lpim.testing._dtype_probe`): one real lane, no padding,
    at the dtype and at plain float32. A consumer that needs other inputs crashes at float32
    too without them, so its dtype is left for the rows to try."""

    def lanes(at: torch.dtype) -> LaneSet:
        return LaneSet(
            torch.linspace(-1, 1, embed_dim).reshape(1, 1, embed_dim).to(device=device, dtype=at),
            torch.ones(1, 1, dtype=torch.bool, device=device),
        )

    def at_float32() -> None:
        run_consumer(Subject.prepare(consumer, torch.float32, device).encoder, lanes(torch.float32))

    return dtype_unsupported(
        lambda: run_consumer(prepared, lanes(dtype)),
        lambda: runs_at_float32(at_float32, device),
        dtype,
        device,
        mode="cast to it",
        alternative=f"check it at float32 ({options.how_to_pass('dtype', 'float32')}), which "
        "it runs",
    )


_EMBED_DIM_ATTRIBUTES = ("embed_dim", "d_model", "lane_dim")


def _read_embed_dim(consumer: Consumer, options: CheckOptions) -> int:
    """`C` from an attribute (`_EMBED_DIM_ATTRIBUTES`)."""
    declared = declared_width(consumer, _EMBED_DIM_ATTRIBUTES)
    if declared is None:
        raise unknown_width(
            "check_lane_consumer",
            consumer,
            "the lane embedding width C",
            _EMBED_DIM_ATTRIBUTES,
            options.how_to_pass("embed_dim", "C", placeholder=True),
        )
    return declared


class UnderCheck:
    """What both sides know of the code under check, for a whole check: the code as it is
    called (`code`), its name, the options, the device. Built by a check's side, which hands
    the code down here once and keeps only this object: every later use of the code goes
    through it.

    Args:
        code: the encoder or consumer as the user gave it.
        options: the check's options.
        role: what it is, for the error (`"encoder"`).
        call: how it is called, for the error (`"encoder(points, point_mask)"`).

    Raises:
        lpim.errors.UsageTypeError: `code` is not callable.
    """

    def __init__(self, code: Any, options: CheckOptions, role: str, call: str) -> None:
        self.name = subject_name(code)  # the user's class, even when called through `Adapted`
        check_callable(code, role, call)
        self.code, self.options = code, options
        self.device = torch.device(options.device)
        self.features: frozenset[str] | None = None

    def read(self) -> None:
        """Check what only the code's own check can (called inside the engine's saved state,
        since reading a width may call the code): its other inputs, when it takes any.

        Raises:
            UsageValueError: as `check_other_inputs`.
            UsageTypeError: as `check_other_inputs`.
        """
        if self.options.other_inputs is not None:
            check_other_inputs(self.options, self.device)

    def reproducer(
        self, example: LaneBatch | LaneSet, assert_name: str, failed: str, **how: Any
    ) -> str:
        """Source that rebuilds the code (`factory`, else its class) and re-raises `failed` on
        `example` (`how`: `lpim.testing._reproducer.reproducer`'s `call`, `keywords`,
        `autocast`)."""
        return reproducer(example, assert_name, failed, self.code, self.options.factory, **how)


class EncoderUnderCheck(UnderCheck):
    """One encoder for a whole check (`check_encoder`): as it is called, its point dimension,
    its device, its copies at each dtype (with one hang memory), the batches made outside the
    rows, its first output check and the dtype probe wired to it.

    Args:
        encoder: the encoder as the user gave it (seen through `Adapted` when the options say
            how it takes its inputs).
        options: the check's options.

    Raises:
        lpim.errors.UsageTypeError: `encoder` is not callable.
    """

    def __init__(self, encoder: Encoder, options: CheckOptions) -> None:
        super().__init__(encoder, options, "encoder", "encoder(points, point_mask)")
        if (
            options.output is not None
            or options.argument_names
            or options.point_mask_as != "point_mask"
        ):  # how it takes its inputs is said: it is called through the protocol's adapter
            self.code = Adapted(
                encoder, options.point_mask_as, options.argument_names, options.output
            )
        # One hang is enough: after it, every call of the encoder, at every dtype, raises at
        # once, so a hanging encoder ends the check within two hard stops.
        self.hangs = HangMemory()
        self.point_dim = 0

    def read(self) -> None:
        """Its point dimension (declared, else read and confirmed by a probe call), a validity
        channel within it, its other inputs, and one call that finds its lane embedding
        (`_check_output`: `features`).

        Raises:
            UsageValueError: a width, channel, other inputs or output the check cannot use.
        """
        self.point_dim = _point_dim_of(self.options, self.code)
        _check_channel(self.options, self.point_dim)
        super().read()
        self.features = _check_output(
            self.code, self.point_dim, self.device, self.options, self.hangs
        )

    @property
    def database_key(self) -> str:
        """What tells encoders apart in the example database (`_database_key`)."""
        return _database_key(self.code)

    def inputs_words(self) -> str:
        """How the encoder was given its inputs, for the report's header (`_inputs_words`)."""
        return _inputs_words(self.options)

    def at(
        self, held_dtype: torch.dtype, row_dtype: torch.dtype, driver: Driver[LaneBatch]
    ) -> Subject | None:
        """The encoder copied to `held_dtype` on the device, timed by the check's deadline and
        sharing its hang memory; None (a `runs` row failed on `driver`) when it cannot be
        (`_prepare_at`)."""
        subject = _prepare_at(
            self.code, held_dtype, row_dtype, self.device, self.point_dim, driver, self.options
        )
        if subject is not None:
            subject.deadline, subject.hangs = self.options.deadline, self.hangs
        return subject

    def unsupported(self, subject: Subject, dtype: torch.dtype, autocast: bool) -> str:
        """Why the encoder cannot run at `dtype` ('' if it can): `_encoder_unsupported`, against
        the float32 call `read` made."""
        return _encoder_unsupported(
            subject,
            self.point_dim,
            dtype,
            autocast,
            self.options,
            float32_runs=self.features is not None,
        )

    def dtypes_own(
        self,
        subject: Subject,
        dtype: torch.dtype,
        autocast: bool,
        context: Callable[[], Any],
        failure: PropertyError[LaneBatch],
    ) -> str:
        """Why `failure` is the dtype's and not the encoder's ('' when it is the encoder's):
        `_dtypes_own`."""
        return _dtypes_own(self.code, subject, dtype, autocast, context, self.options, failure)

    def batches(self, batches: st.SearchStrategy[LaneBatch]) -> st.SearchStrategy[LaneBatch]:
        """`batches`, each with the encoder's other inputs drawn for it (`_with_inputs`)."""
        return _with_inputs(batches, self.options.other_inputs)

    def with_empty_lanes(self, dtype: torch.dtype) -> LaneBatch:
        """The batch that shows what empty lanes give, at `dtype`, with its other inputs."""
        batch = _with_empty_lanes(self.point_dim, dtype, self.device)
        return _given_inputs(batch, self.options.other_inputs)


class ConsumerUnderCheck(UnderCheck):
    """One lane-set consumer for a whole check (`check_lane_consumer`): its embedding width,
    its device, its copies at each dtype and the dtype probe wired to it.

    Args:
        consumer: the consumer as the user gave it.
        options: the check's options.

    Raises:
        lpim.errors.UsageTypeError: `consumer` is not callable.
    """

    def __init__(self, consumer: Consumer, options: CheckOptions) -> None:
        call = "consumer(lane_embedding, lane_mask, *args, **kwargs)"
        super().__init__(consumer, options, "consumer", call)
        self.embed_dim = 0

    def read(self) -> None:
        """Its embedding width (`embed_dim`, else declared), its other inputs, and what it does
        (`features`: attention modules found in its module tree; running it would need its
        other inputs, so what it does is otherwise unknown).

        Raises:
            UsageValueError: a width or other inputs the check cannot use.
        """
        options = self.options
        self.embed_dim = (
            options.embed_dim
            if options.embed_dim is not None
            else _read_embed_dim(self.code, options)
        )
        super().read()
        self.features = frozenset({"attention"}) if holds_attention(self.code) else None

    def at(self, dtype: torch.dtype) -> Consumer:
        """A copy of the consumer in eval mode at `dtype` on the device (modules only)."""
        return Subject.prepare(self.code, dtype, self.device).encoder

    def unsupported(self, prepared: Consumer, dtype: torch.dtype) -> str:
        """Why the consumer cannot run at `dtype` ('' if it can): `_consumer_unsupported`."""
        return _consumer_unsupported(
            self.code, prepared, self.embed_dim, dtype, self.device, self.options
        )
