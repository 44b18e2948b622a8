"""`check_encoder`: every property, at every dtype, driven by Hypothesis, summed up in a report."""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import time
import unittest
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky, HypothesisException, InvalidArgument

from lpim.batch import LaneBatch
from lpim.strategies import _ints, lane_batches
from lpim.testing import properties as props
from lpim.testing.errors import PROPERTIES, EncoderPropertyError
from lpim.testing.protocol import (
    DeadlineExceeded,
    Encoder,
    Subject,
    foreign_device_tensors,
)
from lpim.testing.reproducer import reproducer

DEFAULT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
"""The dtypes checked by default: mixed precision is where fill values such as -1e9 overflow."""

DEFAULT_SETTINGS = Settings(
    max_examples=15,
    deadline=None,  # torch's first calls are slow; lpim-ci and friends set their own
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    report_multiple_bugs=False,
    verbosity=Verbosity.quiet,
)
"""Used when ``check_encoder(settings=None)``: small and quick, for editing."""

_ASSERTS: dict[str, Callable[[Subject, LaneBatch], float]] = {
    "deterministic": props.assert_deterministic,
    "finite": props.assert_finite,
    "matches_unpadded": props.assert_matches_unpadded,
    "ignores_padding": props.assert_ignores_padding,
    "lanes_independent": props.assert_lanes_independent,
    "gradients_isolated": props.assert_gradients_isolated,
    "devices_agree": props.assert_devices_agree,
}
# What padded slots hold in the batches each property draws: only ignores_padding varies it, so
# that a garbage leak is named as such and not as a mismatch or a NaN.
_GARBAGE: dict[str, str | None] = {
    "deterministic": None,
    "finite": "zeros",
    "matches_unpadded": "zeros",
    "ignores_padding": None,
    "lanes_independent": "zeros",
    "gradients_isolated": "zeros",
    "devices_agree": None,
}

CHECKED_PROPERTIES: tuple[str, ...] = tuple(_ASSERTS)
"""The properties :func:`check_encoder` runs, in order (``properties=`` picks among them).
``runs``, ``inputs_unchanged`` and ``deadline`` are checked on every call of the encoder."""

DATABASE_ENV = "LPIM_HYPOTHESIS_DATABASE"
"""With ``settings=None``, a directory named by this environment variable holds the example
database (else Hypothesis' default, ``.hypothesis/examples`` under the working directory)."""


@dataclass(frozen=True)
class PropertyResult:
    """One property at one dtype.

    Attributes:
        property_name: a key of :data:`~lpim.testing.PROPERTIES`.
        dtype: the dtype checked.
        verdict: ``"pass"``, ``"FAIL"``, ``"skipped"`` or ``"unsupported"`` (the encoder cannot
            run this dtype at all; not a pass).
        examples: batches tried.
        seconds: wall time.
        max_error_ratio: largest error seen as a fraction of the allowed one (<= 1 passes).
        note: why skipped or unsupported, or the failure's first line.
    """

    property_name: str
    dtype: torch.dtype
    verdict: str
    examples: int
    seconds: float
    max_error_ratio: float
    note: str = ""


@dataclass
class CheckReport:
    """What :func:`check_encoder` found; ``str()`` is a table.

    Attributes:
        encoder: a short name for the encoder checked.
        results: one :class:`PropertyResult` per property and dtype, in the order run.
    """

    encoder: str
    results: list[PropertyResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no property failed (skipped and unsupported rows are not failures)."""
        return all(r.verdict != "FAIL" for r in self.results)

    @property
    def seconds(self) -> float:
        """Total wall time."""
        return sum(r.seconds for r in self.results)

    def __str__(self) -> str:
        from lpim.cli import format_table

        rows = [
            [
                r.property_name,
                str(r.dtype).removeprefix("torch."),
                str(r.examples),
                f"{r.seconds:.2f}s",
                f"{r.max_error_ratio:.3g}" if r.verdict == "pass" else "-",
                r.verdict,
                r.note,
            ]
            for r in self.results
        ]
        header = ["property", "dtype", "examples", "time", "error/allowed", "verdict", "note"]
        summary = "all properties hold" if self.passed else "a property FAILED"
        return (
            f"lpim check of {self.encoder}: {summary} ({self.seconds:.1f}s)\n"
            f"{format_table(header, rows)}"
        )


def check_encoder(
    encoder: Encoder,
    *,
    point_dim: int | None = None,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    device: str | torch.device | None = None,
    settings: Settings | None = None,
    properties: Sequence[str] | None = None,
    batch_size: int | tuple[int, int] = (1, 3),
    num_lanes: int | tuple[int, int] = (1, 6),
    num_points: int | tuple[int, int] = (1, 8),
    factory: str | None = None,
    deadline: float | datetime.timedelta | None = None,
    progress: Callable[[str, torch.dtype, PropertyResult | None], None] | None = None,
) -> CheckReport:
    """Check every property on ``encoder`` and return a report; raise on the first failure.

    Args:
        encoder: anything following the encoder protocol (``lpim.testing.protocol``). A module
            is copied per dtype and put in eval mode; the caller's module is never modified.
        point_dim: ``D``; read from ``encoder.in_dim`` (or ``point_dim``, ``input_dim``) when
            omitted.
        dtype: one dtype or several; default float64, float32, bfloat16, float16.
        device: where to run (default CPU). ``devices_agree`` compares CPU with CUDA and is
            skipped, with the reason, where there is no CUDA.
        settings: Hypothesis settings (e.g. a profile's); default :data:`DEFAULT_SETTINGS`.
            Their ``database`` is where failing examples are kept and replayed first next time,
            one key per property, dtype and encoder (``database=None`` keeps nothing; the
            ``lpim-ci`` profile has none). With ``settings=None`` the directory named by
            ``$LPIM_HYPOTHESIS_DATABASE`` is used when set, else Hypothesis' default
            ``.hypothesis/examples`` under the working directory. Their ``deadline`` is
            ignored: pass ``deadline=`` (Hypothesis' own would turn torch's slow first call on
            a new shape into a flaky failure).
        properties: a subset of :data:`CHECKED_PROPERTIES` (a name or a list; default all).
        batch_size: ``B`` of the drawn batches: an int or an inclusive ``(low, high)`` range.
        num_lanes: ``M`` of the drawn batches: an int or a range.
        num_points: ``N`` of the drawn batches: an int or a range.
        factory: ``"module:expression"`` that rebuilds the encoder, for the reproducer.
        deadline: seconds (or a ``timedelta``) one call of the encoder on one batch may take;
            a call over it is timed again on the same batch and, if slow again, property
            ``deadline`` fails with both times. Default None: no limit.
        progress: called as ``progress(property_name, dtype, None)`` when a property starts and
            ``progress(property_name, dtype, result)`` when it ends, a failure too (before the
            error is raised): a live display, such as ``lpim check``'s.

    Every call of the encoder gets copies of the batch and must leave them as they were
    (property ``inputs_unchanged``). A nondeterministic encoder (the same batch twice gives
    different outputs) fails property ``deterministic``, run first on a fifth of
    ``max_examples`` (at least one), with a hint to call
    ``.eval()`` when dropout is the likely cause. The global RNG states (``torch``, Python's
    ``random``, NumPy's) are restored when the check returns or raises, and torch's is seeded
    with 0 before each property, so that two runs see the same random numbers.

    Returns:
        A :class:`CheckReport` when every property holds.

    Raises:
        EncoderPropertyError: the first property that fails, with the shrunk example, a
            ``.reproducer`` and ``.report`` (the rows so far). An exception raised by the
            encoder on a valid batch is property ``runs``, with the original as ``__cause__``;
            so is an output of the wrong type, shape, dtype or device, and an encoder whose
            tensors sit on another device than ``device``.
        ValueError: an unknown property or dtype, an empty list of either, ``point_dim`` that
            cannot be read or disagrees with the encoder's, a device torch does not know, that
            is not available or is ``meta``, bad sizes, a malformed ``factory`` or a
            non-positive ``deadline``.
        TypeError: ``encoder`` is not callable, ``settings`` is not a ``hypothesis.settings``,
            or an argument has the wrong type.
    """
    if not callable(encoder):
        raise TypeError(
            "check_encoder expects a callable encoder(points, point_mask); got "
            f"{type(encoder).__name__}"
        )
    dtypes = _dtypes(dtype)
    target = _device(device)
    names = _property_names(properties)
    dim = _point_dim(point_dim, encoder)
    _check_sizes(batch_size=batch_size, num_lanes=num_lanes, num_points=num_points)
    _check_factory(factory)
    limit = _deadline_seconds(deadline)
    base = _base_settings(settings)
    # The explain phase replays the failing example ~100 times to annotate Hypothesis' own
    # report, which lpim replaces with its own: skipping it makes every failure seconds faster.
    phases = [phase for phase in base.phases if phase != Phase.explain]
    run_settings = Settings(base, report_multiple_bugs=False, deadline=None, phases=phases)
    # Nondeterminism shows on any batch: a fifth of the examples is plenty for `deterministic`
    # (a nondeterministic encoder that slips through makes a later property Flaky, which is
    # reported as `deterministic` too).
    twice = Settings(run_settings, max_examples=max(1, run_settings.max_examples // 5))
    report = CheckReport(_describe(encoder))

    with _global_rng_restored(target):
        for checked_dtype in dtypes:
            subject = _prepare(encoder, checked_dtype, target, dim, report, factory)
            subject.deadline = limit
            unsupported = _unsupported(subject, dim)
            for name in names:
                skip = unsupported or _skipped_here(name, target)
                if skip:
                    verdict = "unsupported" if unsupported else "skipped"
                    result = PropertyResult(name, checked_dtype, verdict, 0, 0.0, 0.0, skip)
                    report.results.append(result)
                    if progress is not None:
                        progress(name, checked_dtype, result)
                    continue
                if progress is not None:
                    progress(name, checked_dtype, None)
                strategy = lane_batches(
                    batch_size=batch_size,
                    num_lanes=num_lanes,
                    num_points=num_points,
                    point_dim=dim,
                    garbage=_GARBAGE[name],
                    dtype=checked_dtype,
                    device=target,
                )
                torch.manual_seed(0)  # the same random numbers for every run of this check
                try:
                    result = _run_property(
                        name,
                        subject,
                        strategy,
                        twice if name == "deterministic" else run_settings,
                        report,
                        encoder,
                        factory,
                    )
                except EncoderPropertyError:
                    failed = report.results[-1] if report.results else None
                    if progress is not None and failed is not None and failed.verdict == "FAIL":
                        progress(name, checked_dtype, failed)
                    raise
                report.results.append(result)
                if progress is not None:
                    progress(name, checked_dtype, result)
    return report


@contextlib.contextmanager
def _global_rng_restored(device: torch.device) -> Iterator[None]:
    """Restore torch's (CPU and, when checking there, CUDA), Python's and NumPy's global RNG
    states afterwards, whatever the encoder or its copies draw."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    devices: list[int] = []
    if device.type == "cuda":  # the CPU state is always forked; CUDA's only where checked
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _probe(point_dim: int, dtype: torch.dtype, device: torch.device) -> LaneBatch:
    """One unpadded lane of three points: the batch reported when no drawn batch is to blame."""
    return LaneBatch(
        torch.linspace(-1, 1, 3 * point_dim).reshape(1, 1, 3, point_dim).to(dtype),
        torch.ones(1, 1, 3, dtype=torch.bool),
    ).to(device=device)


def _prepare(
    encoder: Encoder,
    dtype: torch.dtype,
    device: torch.device,
    point_dim: int,
    report: CheckReport,
    factory: str | None,
) -> Subject:
    """The encoder, copied to ``dtype`` on ``device``; property ``runs`` fails if it cannot
    be, or if it still holds tensors elsewhere (a module wrapped in a function, a plain tensor
    attribute that ``.to()`` does not move)."""
    problem, cause = "", None
    try:
        subject = Subject.prepare(encoder, dtype, device)
    except Exception as error:
        problem = (
            f"the encoder cannot be copied and moved to {dtype} on {device} "
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
    failure = EncoderPropertyError("runs", problem, _probe(point_dim, dtype, device))
    failure.dtype = str(dtype)
    failure.attach_reproducer(
        reproducer(failure.example, "assert_finite", "runs", encoder, factory)
    )
    report.results.append(
        PropertyResult("runs", dtype, "FAIL", 0, 0.0, 0.0, f"runs: {problem}"[:120])
    )
    failure.report = report  # type: ignore[attr-defined]
    raise failure from cause


def _run_property(
    name: str,
    subject: Subject,
    strategy: st.SearchStrategy[LaneBatch],
    run_settings: Settings,
    report: CheckReport,
    encoder: Encoder,
    factory: str | None,
) -> PropertyResult:
    assert_property = _ASSERTS[name]
    examples, worst = 0, 0.0
    last: list[LaneBatch] = []

    def one_example(batch: LaneBatch) -> None:
        nonlocal examples, worst
        examples += 1
        last[:] = [batch]
        worst = max(worst, assert_property(subject, batch))

    test = run_settings(given(strategy)(one_example))
    # Each property, dtype and encoder gets its own entry in the example database, so a
    # failure found once is replayed first next time.
    key = f"lpim:{name}:{subject.dtype}:{_database_key(encoder)}".encode()
    test._hypothesis_internal_add_digest = key  # type: ignore[attr-defined]
    started = time.perf_counter()
    call: str | None = None
    try:
        try:
            test()
        except DeadlineExceeded as slow:  # not shrunk: timing is not a function of the batch
            call = _deadline_call(slow.deadline)
            raise EncoderPropertyError("deadline", str(slow), slow.batch) from None
        except Flaky as error:  # the same batch failed, then passed: nondeterminism
            raise _nondeterminism(name, subject, last, error) from error
    except unittest.SkipTest as skip:
        return PropertyResult(name, subject.dtype, "skipped", examples, 0.0, 0.0, str(skip))
    except EncoderPropertyError as failure:
        failure.dtype = str(subject.dtype)
        assert_name = PROPERTIES[name].assert_name
        if failure.property_name == "deterministic":
            assert_name = PROPERTIES["deterministic"].assert_name
        failure.attach_reproducer(
            reproducer(failure.example, assert_name, failure.property_name, encoder, factory, call)
        )
        report.results.append(
            PropertyResult(
                name,
                subject.dtype,
                "FAIL",
                examples,
                time.perf_counter() - started,
                worst,
                f"{failure.property_name}: {failure.detail}"[:120],
            )
        )
        failure.report = report  # type: ignore[attr-defined]
        raise
    except HypothesisException as error:  # a health check or the like: name it, blame no one
        broken = EncoderPropertyError(
            "runs",
            f"Hypothesis could not check {name}: {type(error).__name__}: {error}",
            last[0] if last else _probe(1, subject.dtype, subject.device),
        )
        report.results.append(
            PropertyResult(name, subject.dtype, "FAIL", examples, 0.0, worst, str(error)[:120])
        )
        broken.report = report  # type: ignore[attr-defined]
        raise broken from error
    return PropertyResult(
        name, subject.dtype, "pass", examples, time.perf_counter() - started, worst
    )


def _nondeterminism(
    name: str, subject: Subject, last: list[LaneBatch], error: HypothesisException
) -> EncoderPropertyError:
    """Property ``deterministic`` for a Flaky run: replay the last batch twice to show it."""
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


def _deadline_call(deadline: float) -> str:
    """Reproducer lines that time the encoder twice and raise like the check did."""
    return "\n".join(
        [
            "import time",
            "",
            "times = []",
            "for _ in range(2):  # the first call on a new shape is often slow: time it twice",
            "    started = time.perf_counter()",
            "    encoder(points.clone(), point_mask.clone())",
            "    times.append(time.perf_counter() - started)",
            f"if min(times) > {deadline!r}:",
            "    raise EncoderPropertyError(",
            '        "deadline",',
            f'        f"one call took {{times[0]:.3g}} s, then {{times[1]:.3g}} s; the deadline '
            f'is {deadline!r} s",',
            "        LaneBatch(points, point_mask),",
            "    )",
        ]
    )


def _skipped_here(name: str, target: torch.device) -> str:
    """Why property ``name`` cannot run on this machine ('' if it can), decided up front.

    Deciding it before Hypothesis runs keeps a skip a skip: raised inside a test, it is printed
    by Hypothesis as a failure to reproduce with ``@seed``.
    """
    if name == "devices_agree" and not torch.cuda.is_available():
        return props.no_cuda_reason()
    return ""


def _unsupported(subject: Subject, point_dim: int) -> str:
    """Why the encoder cannot run this dtype at all ('' if it can): one unpadded lane.

    Only "not implemented for this dtype" counts; any other exception is a bug for the
    properties to report.
    """
    probe = LaneBatch(
        torch.linspace(-1, 1, 3 * point_dim).reshape(1, 1, 3, point_dim).to(subject.dtype),
        torch.ones(1, 1, 3, dtype=torch.bool),
    ).to(device=subject.device)
    try:
        with torch.no_grad():
            subject(probe)
    except NotImplementedError as error:
        return f"{type(error).__name__}: {error}"[:200]
    except RuntimeError as error:
        if "not implemented for" in str(error):
            return f"not implemented at {subject.dtype}: {str(error).splitlines()[0]}"[:200]
    except Exception:  # a bug, not an unsupported dtype: the properties will report it
        return ""
    except DeadlineExceeded:  # slow, not unsupported: the properties will report it
        return ""
    return ""


def _dtypes(dtype: torch.dtype | Sequence[torch.dtype] | None) -> tuple[torch.dtype, ...]:
    if dtype is not None and not isinstance(dtype, torch.dtype | Sequence):
        raise TypeError(f"dtype must be a torch.dtype or a list of them; got {dtype!r}")
    if isinstance(dtype, str):
        raise ValueError(
            f"dtype must be among {list(DEFAULT_DTYPES)} (torch.dtype objects); got the string "
            f"{dtype!r}"
        )
    chosen = (
        DEFAULT_DTYPES
        if dtype is None
        else (dtype,)
        if isinstance(dtype, torch.dtype)
        else tuple(dtype)
    )
    if not chosen:
        raise ValueError(f"dtype must name at least one of {DEFAULT_DTYPES}; got an empty list")
    for d in chosen:
        if d not in DEFAULT_DTYPES:
            raise ValueError(f"dtype must be among {list(DEFAULT_DTYPES)}; got {d!r}")
    return chosen


def _property_names(chosen: str | Sequence[str] | None) -> list[str]:
    names = list(_ASSERTS) if chosen is None else [chosen] if isinstance(chosen, str) else chosen
    if not isinstance(names, Sequence):
        raise TypeError(f"properties must be a name or a list of names; got {chosen!r}")
    names = list(names)
    if not names:
        raise ValueError(f"properties must name at least one of {list(_ASSERTS)}; got none")
    unknown = [n for n in names if n not in _ASSERTS]
    if unknown:
        raise ValueError(f"unknown properties: got {unknown}; expected some of {list(_ASSERTS)}")
    return names


def _device(device: str | torch.device | None) -> torch.device:
    """The device to check on: one torch knows, that is available and holds data."""
    if device is not None and (
        isinstance(device, bool) or not isinstance(device, str | torch.device)
    ):
        raise TypeError(f"device must be a str or torch.device; got {device!r}")
    try:
        target = torch.device(device or "cpu")
    except RuntimeError as error:
        raise ValueError(
            f"device must be one torch knows (cpu, cuda, ...); got {device!r} ({error})"
        ) from None
    if target.type == "meta":
        raise ValueError(
            "device must hold data (the checks compare values); expected cpu or cuda, got meta"
        )
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device must be available; got {str(target)!r}, but torch.cuda.is_available() is "
            f"False (torch {torch.__version__})"
        )
    return target


def _point_dim(point_dim: int | None, encoder: Encoder) -> int:
    if point_dim is None:
        return _read_point_dim(encoder)
    if isinstance(point_dim, bool) or not isinstance(point_dim, int):
        raise TypeError(f"point_dim must be an int >= 1; got {point_dim!r}")
    if point_dim < 1:
        raise ValueError(f"point_dim must be >= 1 (coordinates per point); got {point_dim}")
    declared = getattr(encoder, "in_dim", None)
    if isinstance(declared, int) and not isinstance(declared, bool) and declared != point_dim:
        raise ValueError(
            f"point_dim must match the encoder's in_dim = {declared}; got point_dim = "
            f"{point_dim} (leave it out to use the encoder's)"
        )
    return point_dim


def _check_sizes(**sizes: object) -> None:
    for name, value in sizes.items():
        try:
            _ints(value, name, low=0)
        except InvalidArgument as error:
            raise ValueError(str(error)) from None


def _check_factory(factory: object) -> None:
    if factory is None:
        return
    if not isinstance(factory, str):
        raise TypeError(f"factory must be a 'module:expression' string; got {factory!r}")
    module, colon, expression = factory.partition(":")
    if not (module and colon and expression):
        raise ValueError(
            f"factory must be 'module:expression' (e.g. 'lpim.encoder:PriorEncoder'); got "
            f"{factory!r}"
        )


def _deadline_seconds(deadline: object) -> float | None:
    if deadline is None:
        return None
    if isinstance(deadline, datetime.timedelta):
        deadline = deadline.total_seconds()
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise TypeError(f"deadline must be seconds (a number) or a timedelta; got {deadline!r}")
    if not (deadline > 0 and deadline != float("inf")):
        raise ValueError(f"deadline must be a positive finite number of seconds; got {deadline}")
    return float(deadline)


def _base_settings(settings: object) -> Settings:
    if settings is None:
        directory = os.environ.get(DATABASE_ENV)
        if directory:
            return Settings(DEFAULT_SETTINGS, database=DirectoryBasedExampleDatabase(directory))
        return DEFAULT_SETTINGS
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a hypothesis.settings; got {settings!r}")
    return settings


def _database_key(encoder: object) -> str:
    """What tells encoders apart in the example database: a module's class, else the
    callable's own qualified name (every plain function shares one class)."""
    if isinstance(encoder, torch.nn.Module):
        return _describe(encoder)
    target = getattr(encoder, "func", encoder)  # functools.partial
    name = getattr(target, "__qualname__", None)
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if name and module else _describe(encoder)


def _read_point_dim(encoder: Encoder) -> int:
    for attribute in ("in_dim", "point_dim", "input_dim"):
        value = getattr(encoder, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    raise ValueError(
        f"check_encoder cannot tell how many coordinates a point has for {_describe(encoder)}: "
        "it has no in_dim, point_dim or input_dim attribute; pass point_dim=D"
    )


def _describe(encoder: object) -> str:
    cls = type(encoder)
    return f"{cls.__module__}.{cls.__qualname__}"
