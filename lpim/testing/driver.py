"""The one loop behind every check: each property at each dtype, run with Hypothesis.

`check_encoder` and `check_lane_consumer` describe their rows as `Case`s; the `Driver` runs
them all (a failure does not stop the check), turns what happened into report rows, attaches
reproducers, and raises at the end with every failure. It also sets what a whole check must fix:
torch's thread count, Hypothesis' example database key. What a check must leave as it found it
(RNG states, the user's modules, torch's global settings) is `lpim.testing.state`'s.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic

import torch
from hypothesis import HealthCheck, Phase, given, reject
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from lpim._errors import LpimError
from lpim.testing.errors import ExampleT, PropertyError
from lpim.testing.report import CheckReport, PropertyResult

__all__ = [
    "Case",
    "Driver",
    "IncompleteCheckError",
    "check_settings",
    "torch_threads",
]


# Failures that belong to every property (the code crashed, wrote into its inputs): they get a
# row of their own, and the property they interrupted is run again on the examples where the
# code runs, so that its own verdict is not hidden behind the crash.
_CROSS_CUTTING = ("runs", "inputs_unchanged")


class IncompleteCheckError(LpimError, AssertionError):
    """`strict=True`: no property failed, but some rows were skipped or unsupported.

    Attributes:
        report: the check's report.
    """

    __module__ = "lpim.testing"  # where users import it from

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        undone = [
            f"{r.property_name} at {str(r.dtype).removeprefix('torch.')} ({r.verdict}: {r.note})"
            for r in report.results
            if r.verdict in ("skipped", "unsupported")
        ]
        super().__init__(
            f"strict check of {report.encoder}: {report.headline}; rows not run: "
            + "; ".join(undone)
            + " (strict=False / no --strict accepts them)"
        )


@dataclass
class Case(Generic[ExampleT]):
    """One row to run: a property at a dtype.

    Attributes:
        property_name: the row's property.
        dtype: the row's dtype (the autocast dtype under `precision="autocast"`).
        strategy: the examples to draw.
        check: one example -> the error ratio; raises the check's `PropertyError` subclass.
        settings: Hypothesis settings for this row.
        database_key: the example database's key for this row (property, dtype, subject).
        reproducer: a failure -> pasteable source that re-raises it.
        context: entered around every call of `check` (e.g. `torch.autocast`).
        translate: an exception that escaped Hypothesis (not a property failure) and the
            last example tried -> the failure to report, or None to let it propagate.
        pass_note: what a pass rests on, read after the row ran (e.g. no float64 reference).
        exercised: whether an example can exercise the property (holds a padded slot, two
            lanes, ...); None: every example does. A row with no such example is `excluded`.
        exercised_by: what `exercised` looks for, in words (`"a padded slot"`).
        subject_features: what the code under check was seen to do (`{"attention"}`), for
            the causes a failure lists; None when unknown.
        dtypes_own: a failure (shrunk) -> why it is the row's dtype's and not the code's
            ('' when it is the code's), decided by experiment (`lpim.testing.dtype_probe`):
            then the row is `unsupported` with that reason, never a failure.
    """

    property_name: str
    dtype: torch.dtype
    strategy: st.SearchStrategy[ExampleT]
    check: Callable[[ExampleT], float]
    settings: Settings
    database_key: str
    reproducer: Callable[[PropertyError[ExampleT]], str]
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    translate: Callable[[BaseException, list[ExampleT]], PropertyError[ExampleT] | None] = (
        lambda error, last: None
    )
    pass_note: Callable[[], str] = lambda: ""
    exercised: Callable[[ExampleT], bool] | None = None
    exercised_by: str = ""
    subject_features: frozenset[str] | None = None
    dtypes_own: Callable[[PropertyError[ExampleT]], str] = lambda failure: ""


@dataclass
class _Outcome(Generic[ExampleT]):
    examples: int
    seconds: float
    worst: float
    failure: PropertyError[ExampleT] | None = None
    unsatisfied: bool = False
    exercised: int = 0


@dataclass
class Driver(Generic[ExampleT]):
    """Runs `Case`s into a report; `finish` returns it or raises every failure.

    Attributes:
        report: the report rows go into.
        progress: `progress(property_name, dtype, None)` when a row starts and
            `progress(property_name, dtype, result)` when it ends.
        strict: make `finish` raise `IncompleteCheckError` when a row was skipped or
            unsupported (and nothing failed).
    """

    report: CheckReport
    progress: Callable[[str, torch.dtype, PropertyResult | None], None] | None = None
    strict: bool = False
    failures: list[PropertyError[ExampleT]] = field(default_factory=list)

    def row(self, result: PropertyResult) -> None:
        """Add a row that needed no run (skipped, unsupported, excluded, a failed set-up)."""
        self.report.results.append(result)
        if self.progress is not None:
            self.progress(result.property_name, result.dtype, result)

    def fail(self, failure: PropertyError[ExampleT], result: PropertyResult) -> None:
        """Record a failure found outside a case (e.g. the code cannot be prepared)."""
        failure.dtype = str(result.dtype)
        self.failures.append(failure)
        self.row(result)

    def has_row(self, property_name: str, dtype: torch.dtype) -> bool:
        """True when the report has a row for `property_name` at `dtype`."""
        return any(
            r.property_name == property_name and r.dtype == dtype for r in self.report.results
        )

    def run(self, case: Case[ExampleT]) -> None:
        """Run `case` with Hypothesis and add its row (and a cross-cutting failure's row)."""
        name, dtype = case.property_name, case.dtype
        if self.progress is not None:
            self.progress(name, dtype, None)
        torch.manual_seed(0)  # the same random numbers for every run of this check
        outcome = self._hypothesis(case, case.check)
        failure = outcome.failure
        if failure is None:
            self.row(self._passed(case, outcome))
            return
        if reason := case.dtypes_own(failure):
            self.row(
                PropertyResult(
                    name,
                    dtype,
                    "unsupported",
                    outcome.examples,
                    outcome.seconds,
                    outcome.worst,
                    reason,
                )
            )
            return
        if failure.property_name == name:
            self._record(case, failure)
            self.row(self._failed(name, dtype, outcome, failure))
            return
        # A failure of another property interrupted this one: that property gets its row,
        # and this one runs again on the examples where the code does not trip it.
        if not self.has_row(failure.property_name, dtype):  # one row (and reproducer) a dtype
            self._record(case, failure)
            self.row(self._failed(failure.property_name, dtype, outcome, failure))
        if failure.property_name not in _CROSS_CUTTING:
            self.row(
                PropertyResult(
                    name,
                    dtype,
                    "skipped",
                    outcome.examples,
                    outcome.seconds,
                    outcome.worst,
                    f"not decided: {failure.property_name} failed first (its row)",
                )
            )
            return
        torch.manual_seed(0)
        rejecting = _Rejecting(case.check, failure.property_name, 4 * case.settings.max_examples)
        retry = self._hypothesis(case, rejecting)
        retry.examples -= rejecting.rejected
        if retry.unsatisfied:
            self.row(
                PropertyResult(
                    name,
                    dtype,
                    "skipped",
                    retry.examples,
                    retry.seconds,
                    retry.worst,
                    f"not decided: {failure.property_name} failed on {rejecting.rejected} of "
                    f"the {rejecting.rejected + retry.examples} examples drawn",
                )
            )
        elif retry.failure is not None:
            self._record(case, retry.failure)
            self.row(self._failed(name, dtype, retry, retry.failure))
        elif (vacuous := self._vacuous(case, retry)) is not None:
            self.row(vacuous)
        else:
            self.row(
                PropertyResult(
                    name,
                    dtype,
                    "pass",
                    retry.examples,
                    retry.seconds,
                    retry.worst,
                    f"on the {retry.examples} examples without a {failure.property_name} "
                    f"failure ({rejecting.rejected} had one)",
                )
            )

    def finish(self) -> CheckReport:
        """The report when nothing failed (and, if strict, nothing was left undone).

        Raises:
            PropertyError: the first failure in full, with `.failures` (every failure, each
                with its reproducer) and `.report`.
            IncompleteCheckError: `strict=True` and a row was skipped or unsupported.
        """
        __tracebackhide__ = True  # pytest shows lpim's message, not the frames that found it
        if self.failures:
            first = self.failures[0]
            for failure in self.failures:
                failure.report = self.report
            first.failures = list(self.failures)
            first.refresh()
            # Without the traceback of where Hypothesis first raised it (dozens of lpim and
            # Hypothesis frames); the cause, for a crash, keeps the encoder's own traceback.
            raise first.with_traceback(None)
        if self.strict and not self.report.complete:
            raise IncompleteCheckError(self.report)
        return self.report

    def _record(self, case: Case[ExampleT], failure: PropertyError[ExampleT]) -> None:
        failure.dtype = str(case.dtype)
        failure.subject_features = case.subject_features
        failure.attach_reproducer(case.reproducer(failure))
        self.failures.append(failure)

    @staticmethod
    def _vacuous(case: Case[ExampleT], outcome: _Outcome[ExampleT]) -> PropertyResult | None:
        """The row of a run none of whose examples could exercise the property (None: some
        did): `excluded`, with the reason, never a pass."""
        if case.exercised is None or outcome.exercised:
            return None
        return PropertyResult(
            case.property_name,
            case.dtype,
            "excluded",
            outcome.examples,
            outcome.seconds,
            outcome.worst,
            f"not exercised: none of the {outcome.examples} examples drawn had "
            f"{case.exercised_by} (does the data contract allow one?)",
        )

    def _passed(self, case: Case[ExampleT], outcome: _Outcome[ExampleT]) -> PropertyResult:
        if (vacuous := self._vacuous(case, outcome)) is not None and not outcome.unsatisfied:
            return vacuous
        if outcome.unsatisfied:
            return PropertyResult(
                case.property_name,
                case.dtype,
                "skipped",
                outcome.examples,
                outcome.seconds,
                outcome.worst,
                "not decided: no example inside the data contract could be drawn",
            )
        return PropertyResult(
            case.property_name,
            case.dtype,
            "pass",
            outcome.examples,
            outcome.seconds,
            outcome.worst,
            case.pass_note(),
        )

    @staticmethod
    def _failed(
        name: str,
        dtype: torch.dtype,
        outcome: _Outcome[ExampleT],
        failure: PropertyError[ExampleT],
    ) -> PropertyResult:
        return PropertyResult(
            name,
            dtype,
            "FAIL",
            outcome.examples,
            outcome.seconds,
            failure.largest_ratio,
            f"{failure.property_name}: {(failure.detail.splitlines() or [''])[0]}",
        )

    def _hypothesis(
        self, case: Case[ExampleT], check: Callable[[ExampleT], float]
    ) -> _Outcome[ExampleT]:
        examples, worst, largest, exercised = 0, 0.0, 0.0, 0
        last: list[ExampleT] = []

        def one_example(example: ExampleT) -> None:
            nonlocal examples, worst, largest, exercised
            examples += 1
            last[:] = [example]
            if case.exercised is not None and case.exercised(example):
                exercised += 1
            try:
                with case.context():
                    ratio = check(example)
            except PropertyError as failure:
                largest = max(largest, failure.error_ratio)
                raise
            worst = max(worst, ratio)
            largest = max(largest, ratio)

        test = case.settings(given(case.strategy)(one_example))
        _set_database_key(test, case.database_key)
        started = time.perf_counter()
        outcome: _Outcome[ExampleT] = _Outcome(0, 0.0, 0.0)
        try:
            test()
        except PropertyError as failure:
            failure.largest_ratio = max(largest, failure.error_ratio)
            outcome.failure = failure
        except (Unsatisfiable, _GiveUp):
            outcome.unsatisfied = True
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as error:
            translated = case.translate(error, last)
            if translated is None:
                raise
            translated.largest_ratio = max(largest, translated.error_ratio)
            outcome.failure = translated
        outcome.examples = examples
        outcome.exercised = exercised
        outcome.seconds = time.perf_counter() - started
        outcome.worst = worst
        return outcome


class _GiveUp(BaseException):
    """Too many examples rejected: stop the run (a BaseException, so Hypothesis neither shrinks
    nor replays it)."""


class _Rejecting(Generic[ExampleT]):
    """`check`, with failures of `property_name` rejected (the example does not count), at
    most `budget` of them (four per example wanted: a crash on one batch in five still
    leaves enough; code that fails on nearly every batch would otherwise be called ten times
    per example Hypothesis wants)."""

    def __init__(self, check: Callable[[ExampleT], float], property_name: str, budget: int) -> None:
        self.check, self.property_name, self.budget = check, property_name, budget
        self.rejected = 0

    def __call__(self, example: ExampleT) -> float:
        try:
            return self.check(example)
        except PropertyError as failure:
            if failure.property_name != self.property_name:
                raise
            self.rejected += 1
            if self.rejected > self.budget:
                raise _GiveUp from None
            reject()
            raise  # unreachable: reject() raises


def check_settings(base: Settings) -> Settings:
    """The settings every row runs with, from the user's `base`.

    No explain phase: it replays the failing example ~100 times to annotate Hypothesis' own
    report, which lpim replaces with its own (it multiplied a failing check's time by 50). No
    deadline: torch's first call on a new shape is slow (`deadline=` of the check times calls
    itself). One bug reported per row: the next row has its own. Rejecting examples is the
    retry's way of stepping around a crash, not a slow strategy.
    """
    phases = [phase for phase in base.phases if phase != Phase.explain]
    return Settings(
        base,
        report_multiple_bugs=False,
        deadline=None,
        phases=phases,
        suppress_health_check=[
            *base.suppress_health_check,
            HealthCheck.filter_too_much,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


def _set_database_key(test: Any, key: str) -> None:
    """Give `test` its own entry in the example database.

    Hypothesis keys the database by the test function's source, which is the driver's one
    closure for every row: without this, a failure found for one property, dtype and encoder
    would be replayed for all. Hypothesis has no public way to set the key; this private
    attribute is the one its own `@given` inner tests use, so it is set in this one place.
    """
    test._hypothesis_internal_add_digest = key.encode()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` intra-op threads (None: leave torch's setting), restored after.

    Checks run thousands of tiny forwards: more threads gain nothing there, and torch's pool
    collapses when another process takes a core (measured on a 2-core machine: 3.8 s idle,
    8.7 s with one busy core, a minute under load; 3.9 s idle with one thread).
    """
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int >= 1 or None; got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1 (or None for torch's default); got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
