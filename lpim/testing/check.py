"""`check_encoder`: every property, at every dtype, driven by Hypothesis, summed up in a report."""

from __future__ import annotations

import time
import unittest
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from lpim.batch import LaneBatch
from lpim.strategies import lane_batches
from lpim.testing import properties as props
from lpim.testing.errors import PROPERTIES, EncoderPropertyError
from lpim.testing.protocol import Encoder, Subject
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
    "finite": "zeros",
    "matches_unpadded": "zeros",
    "ignores_padding": None,
    "lanes_independent": "zeros",
    "gradients_isolated": "zeros",
    "devices_agree": None,
}


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
        properties: a subset of :data:`~lpim.testing.PROPERTIES` (default all).
        batch_size: ``B`` of the drawn batches: an int or an inclusive ``(low, high)`` range.
        num_lanes: ``M`` of the drawn batches: an int or a range.
        num_points: ``N`` of the drawn batches: an int or a range.
        factory: ``"module:expression"`` that rebuilds the encoder, for the reproducer.
        progress: called as ``progress(property_name, dtype, None)`` when a property starts and
            ``progress(property_name, dtype, result)`` when it ends (a failure too, before the
            error is raised): a live display, such as ``lpim check``'s.

    Returns:
        A :class:`CheckReport` when every property holds.

    Raises:
        EncoderPropertyError: the first property that fails, with the shrunk example, a
            ``.reproducer`` and ``.report`` (the rows so far). An exception raised by the
            encoder on a valid batch is property ``runs``, with the original as ``__cause__``.
        ValueError: an unknown property or dtype, or ``point_dim`` cannot be read.
    """
    dtypes = _dtypes(dtype)
    target = torch.device(device or "cpu")
    names = _property_names(properties)
    dim = point_dim if point_dim is not None else _read_point_dim(encoder)
    base = settings if settings is not None else DEFAULT_SETTINGS
    # No explain phase: the error and its reproducer already say what varied, and explaining a
    # shrunk batch reruns the encoder hundreds of times (a failing check 10-50x slower).
    phases = tuple(phase for phase in base.phases if phase != Phase.explain)
    run_settings = Settings(base, report_multiple_bugs=False, deadline=None, phases=phases)
    report = CheckReport(_describe(encoder))

    for checked_dtype in dtypes:
        subject = Subject.prepare(encoder, checked_dtype, target)
        unsupported = _unsupported(subject, dim)
        for name in names:
            if unsupported:
                result = PropertyResult(
                    name, checked_dtype, "unsupported", 0, 0.0, 0.0, unsupported
                )
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
            try:
                result = _run_property(
                    name, subject, strategy, run_settings, report, encoder, factory
                )
            except EncoderPropertyError:
                last = report.results[-1] if report.results else None
                if (
                    progress is not None
                    and last is not None
                    and last.property_name == name
                    and last.dtype == checked_dtype
                ):
                    progress(name, checked_dtype, last)
                raise
            report.results.append(result)
            if progress is not None:
                progress(name, checked_dtype, result)
    return report


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

    def one_example(batch: LaneBatch) -> None:
        nonlocal examples, worst
        examples += 1
        worst = max(worst, assert_property(subject, batch))

    test = run_settings(given(strategy)(one_example))
    # Each property, dtype and encoder class gets its own entry in the example database, so a
    # failure found once is replayed first next time.
    key = f"lpim:{name}:{subject.dtype}:{_describe(encoder)}".encode()
    test._hypothesis_internal_add_digest = key  # type: ignore[attr-defined]
    started = time.perf_counter()
    try:
        test()
    except unittest.SkipTest as skip:
        return PropertyResult(name, subject.dtype, "skipped", examples, 0.0, 0.0, str(skip))
    except EncoderPropertyError as failure:
        failure.dtype = str(subject.dtype)
        failure.attach_reproducer(
            reproducer(
                failure.example,
                PROPERTIES[name].assert_name,
                failure.property_name,
                encoder,
                factory,
            )
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
    except HypothesisException as error:  # e.g. Flaky: the encoder is not deterministic
        raise EncoderPropertyError(
            "runs",
            f"Hypothesis could not check {name}: {type(error).__name__}: {error}",
            LaneBatch(torch.zeros(0, 0, 0, 1), torch.zeros(0, 0, 0, dtype=torch.bool)),
        ) from error
    return PropertyResult(
        name, subject.dtype, "pass", examples, time.perf_counter() - started, worst
    )


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
    return ""


def _dtypes(dtype: torch.dtype | Sequence[torch.dtype] | None) -> tuple[torch.dtype, ...]:
    chosen = (
        DEFAULT_DTYPES
        if dtype is None
        else (dtype,)
        if isinstance(dtype, torch.dtype)
        else tuple(dtype)
    )
    for d in chosen:
        if d not in DEFAULT_DTYPES:
            raise ValueError(f"dtype must be among {list(DEFAULT_DTYPES)}; got {d}")
    return chosen


def _property_names(chosen: Sequence[str] | None) -> list[str]:
    names = list(_ASSERTS) if chosen is None else list(chosen)
    unknown = [n for n in names if n not in _ASSERTS]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; expected some of {list(_ASSERTS)}")
    return names


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
