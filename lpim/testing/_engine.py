"""The one engine behind both checks: options in, rows out, every failure raised at the end.

[`check_encoder`][lpim.testing.check_encoder] and
[`check_lane_consumer`][lpim.testing.check_lane_consumer] are thin doors: they turn their keywords
into [`CheckOptions`][lpim.testing.CheckOptions] and call `run_check` with their side.
What differs between an encoder and a consumer (preparing the subject at a dtype, the
unsupported-dtype probe, which rows run and on what examples, the reproducer, the error) is a
`CheckSide`; everything else exists here once: the settings and the example database, strict,
progress, threads, the deadline, the user's state saved and restored, the rows and the headline
(through the shared `lpim.testing._driver.Driver`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from hypothesis import HealthCheck, Verbosity
from hypothesis import settings as Settings
from hypothesis.database import DirectoryBasedExampleDatabase

from lpim._errors import UsageValueError
from lpim._validation import check_callable
from lpim.testing._driver import Case, Driver, check_settings, torch_threads
from lpim.testing._options import DTYPE_NAMES, CheckOptions
from lpim.testing._property_errors import ExampleT
from lpim.testing._protocol import UnderCheck
from lpim.testing._report import CheckReport, PropertyResult
from lpim.testing._state import user_state_kept

__all__ = [
    "DATABASE_ENV",
    "DEFAULT_DTYPES",
    "DEFAULT_SETTINGS",
    "CheckSide",
    "dtypes_of",
    "run_check",
    "settings_of",
]

DEFAULT_DTYPES = tuple(getattr(torch, name) for name in DTYPE_NAMES)
"""The dtypes checked by default (`lpim.testing._options.DTYPE_NAMES`, as `torch.dtype`s): mixed
precision is where fill values such as -1e9 overflow."""

DEFAULT_SETTINGS = Settings(
    max_examples=15,
    deadline=None,  # torch's first calls are slow; lpim-ci and friends set their own
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    report_multiple_bugs=False,
    verbosity=Verbosity.quiet,
)
"""Used when a check is given no settings: small and quick, for editing."""

DATABASE_ENV = "LPIM_HYPOTHESIS_DATABASE"
"""With no settings given, a directory named by this environment variable holds the example
database of every check (else: Hypothesis' default for the Python doors, none for the `lpim`
command)."""


class CheckSide(Protocol[ExampleT]):
    """What one side of the checks (encoders, consumers) adds to the engine.

    The engine checks the code is callable (as `role`, called as `call`), saves the user's
    state, then builds the side's `under` once, with `holder` (the code goes down to
    `lpim.testing._protocol` and never comes back to the side's module); then calls `prepare`
    once, before any row; then `contract`; then `rows` for each dtype; then `notes`.
    """

    under: Any
    """The code under check (`lpim.testing._protocol.UnderCheck`), set by the engine."""

    @property
    def role(self) -> str:
        """What the code is, for the error when it is not callable (`"encoder"`)."""

    @property
    def call(self) -> str:
        """How it is called, for that error (`"encoder(points, point_mask)"`)."""

    @property
    def holder(self) -> Callable[..., UnderCheck]:
        """What builds `under`: `holder(code, options, held)`, `held` the modules the code
        holds (`lpim.testing._state.user_state_kept`)."""

    def prepare(self, options: CheckOptions) -> None:
        """Read what the subject declares (its width, ...) and check what only this side can:
        raise a usage error before anything is run."""

    def contract(self) -> str:
        """The data contract, in words, for the report's header ('' for none)."""

    def rows(
        self, dtype: torch.dtype, settings: Settings, driver: Driver[ExampleT]
    ) -> Iterator[Case[ExampleT] | PropertyResult]:
        """The rows of `dtype`: a `Case` to run, or a row that needs no run (excluded,
        unsupported, skipped). A subject that cannot even be prepared at `dtype` records its
        failure on `driver` and yields nothing."""

    def notes(self, report: CheckReport) -> None:
        """Add what the whole check learnt to `report.notes` (empty lanes' values, ...)."""


def dtypes_of(options: CheckOptions) -> tuple[torch.dtype, ...]:
    """The dtypes `options` name, as `torch.dtype`s, in the order they are checked."""
    return tuple(getattr(torch, name) for name in options.dtype or DTYPE_NAMES)


def settings_of(options: CheckOptions) -> Settings:
    """The Hypothesis settings every row starts from: `settings=`, else `--profile`'s, else
    `DEFAULT_SETTINGS`, with `$LPIM_HYPOTHESIS_DATABASE` as the database when set (for the
    `lpim` command, without it: derandomized and no database, so its verdict is the same every
    run and nothing is written); `--max-examples` last.

    Raises:
        UsageValueError: an unknown profile, naming the option.
    """
    if options.settings is not None:
        base: Settings = options.settings
    elif options.profile is not None:
        from lpim.profiles import PROFILES, register_profiles

        register_profiles()
        try:
            base = Settings.get_profile(options.profile)
        except Exception:  # Hypothesis raises InvalidArgument for an unknown name
            raise UsageValueError(
                f"{options.name('profile')}: unknown Hypothesis profile; lpim's are "
                f"{', '.join(PROFILES)} (or one you registered)"
            ) from None
    else:
        directory = os.environ.get(DATABASE_ENV)
        if directory:  # asked for by name: kept by every door (derandomizing would drop it)
            base = Settings(DEFAULT_SETTINGS, database=DirectoryBasedExampleDatabase(directory))
        elif options.door == "flag":  # the command: the same verdict every run, nothing written
            base = Settings(DEFAULT_SETTINGS, derandomize=True, database=None)
        else:
            base = DEFAULT_SETTINGS
    if options.max_examples is not None:
        base = Settings(base, max_examples=options.max_examples)
    return check_settings(base)


def run_check(side: CheckSide[ExampleT], subject: object, options: CheckOptions) -> CheckReport:
    """Run every row of `side` on `subject` under `options`; return the report, or raise
    every failure.

    `subject` comes here from the side's door and goes down once: checked callable
    (`lpim._validation`), its state saved (`lpim.testing._state`), then held by the side's
    `under` (`lpim.testing._protocol`), which alone calls it.

    Nothing of the user's runs before their state is saved, and however the check ends (a
    pass, a failure, an exception, an interrupt) it is restored: the global RNG states, the
    modes, parameters, buffers and gradients of the modules `subject` holds, torch's threads,
    default dtype and grad mode, the warnings filters (`lpim.testing._state.user_state_kept`).

    Raises:
        PropertyError: the first failure in full, with `.failures` and `.report`.
        lpim.testing._driver.IncompleteCheckError: `strict` and a row was not run.
        UsageError: what `side.prepare` or the settings refuse.
        lpim.errors.UsageTypeError: `subject` is not callable.
    """
    __tracebackhide__ = True  # a failing check shows its message, not lpim's frames
    check_callable(subject, side.role, side.call)
    settings = settings_of(options)
    device = torch.device(options.device)
    with user_state_kept(subject, device) as held, torch_threads(options.threads):
        side.under = under = side.holder(subject, options, held)
        driver: Driver[ExampleT] = Driver(CheckReport(under.name), options.progress, options.strict)
        side.prepare(options)  # may call the subject (its width): inside, so it is undone
        driver.report.contract = side.contract()
        for dtype in dtypes_of(options):
            for row in side.rows(dtype, settings, driver):
                if isinstance(row, PropertyResult):
                    driver.row(row)
                else:
                    driver.run(row)
        side.notes(driver.report)
    return driver.finish()
