"""lpim's pytest plugin: Hypothesis profiles, a device option and fixture, a one-line check.

Installing lpim is enough: the plugin is registered under pytest's `pytest11` entry point.

- Profiles `lpim-dev`, `lpim-ci` and `lpim-thorough` ([`lpim.profiles`][lpim.profiles]) are
    registered
  when pytest starts; pick one with Hypothesis' own `--hypothesis-profile lpim-ci`.
- `--lpim-device DEVICE` (repeatable; `cpu`, `cuda`, `cuda:1` or `all` = CPU and every
  visible CUDA device; default `cpu`) chooses the devices of the `lpim_device` fixture.
- `lpim_device`: a `torch.device`, one test per chosen device. A CUDA device that is not
  there skips its test with the reason (no CUDA build, no GPU visible, or too few GPUs).
- `--lpim-sanitize` runs every test under `lpim.sanitize(on_finding="raise")`, and the
  `lpim_sanitize` fixture does it for one test: a mask hazard that reaches torch's attention
  fails the test with `lpim.MaskHazardError` naming the line and the fix.
- `lpim_check`: `lpim_check(encoder_or_factory, **kwargs)` runs
  `lpim.testing.check_encoder` on `lpim_device` with the loaded profile's settings and the
  data contract of `[tool.lpim]` in pyproject.toml, and returns the
  `lpim.testing.CheckReport`; a failed property fails the test with lpim's message first (the
  property, the shrunk example, the reproducer) and a short summary line naming the property.
- `lpim_check_consumer`: the same for lane-set consumers (`lpim.testing.check_lane_consumer`).

Example (`test_my_encoder.py`):

```python title="Listing: test_my_encoder.py (my_package is yours)"
from my_package.model import build_encoder

def test_my_encoder_masks_padding(lpim_check):
    lpim_check(build_encoder)
```

run with `pytest --hypothesis-profile lpim-ci --lpim-device all`.

The plugin costs nothing in a project that does not use it: loading it imports neither torch
nor Hypothesis nor the rest of lpim (`benchmarks/import_cost.py` measures it; the figure is on
the [performance page](../performance.md#start-up-cost)). Hypothesis loads when a test or
`--hypothesis-profile` asks for it, and lpim's profiles with it; torch and the checks when an
lpim option, fixture or marker is used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

from lpim.profiles import PROFILES, register_profiles

if TYPE_CHECKING:
    import torch
    from hypothesis import settings as Settings

    from lpim.sanitizer import SanitizeReport
    from lpim.testing import CheckReport
    from lpim.testing.options import Side

__all__ = [
    "DEVICE_OPTION",
    "PROFILES",
    "SANITIZE_OPTION",
    "lpim_check",
    "lpim_check_consumer",
    "lpim_device",
    "lpim_sanitize",
    "profile_settings",
    "pytest_addoption",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_runtest_call",
    "pytest_runtest_makereport",
    "resolve_devices",
]

DEVICE_OPTION = "--lpim-device"
"""The option that picks the `lpim_device` fixture's devices (repeatable; `all` for every one)."""

SANITIZE_OPTION = "--lpim-sanitize"
"""The option that runs every test under `lpim.sanitize(on_finding="raise")`."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--lpim-device` and `--lpim-sanitize` (group "lpim")."""
    group = parser.getgroup("lpim", "lpim: padding-mask checks for lane encoders")
    group.addoption(
        DEVICE_OPTION,
        action="append",
        dest="lpim_devices",
        metavar="DEVICE",
        help="device for the lpim_device fixture: cpu, cuda, cuda:N, or all (CPU and every "
        "visible CUDA device); repeatable; default cpu",
    )
    group.addoption(
        SANITIZE_OPTION,
        action="store_true",
        dest="lpim_sanitize",
        help="run every test under lpim.sanitize(on_finding='raise'): a mask hazard reaching "
        "torch's attention fails the test (lpim.MaskHazardError)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the `lpim_cuda` marker, and lpim's Hypothesis profiles where Hypothesis is in
    use (imported, or `--hypothesis-profile` given).

    First among the plugins: Hypothesis' own plugin loads the profile named by
    `--hypothesis-profile` in its `pytest_configure`, and must find ours there. Where nothing
    asks for Hypothesis, it is not imported (its `hypothesis` entry point registers lpim's
    profiles whenever it is, later).
    """
    if "hypothesis" in sys.modules or config.getoption("--hypothesis-profile", default=None):
        register_profiles()  # again, in case a conftest reset Hypothesis' profiles
    config.addinivalue_line(
        "markers", "lpim_cuda: the test was parametrized with a CUDA device by --lpim-device"
    )


def pytest_report_header(config: pytest.Config) -> str:
    """One header line: the devices `lpim_device` runs on and the Hypothesis profile (when
    Hypothesis is loaded: the header does not import it)."""
    devices = ", ".join(resolve_devices(config.getoption("lpim_devices")))
    if "hypothesis" not in sys.modules:
        return f"lpim: devices {devices}"
    return f"lpim: devices {devices}; hypothesis profile {_profile_name()}"


def resolve_devices(requested: list[str] | None) -> list[str]:
    """The device names `--lpim-device` values stand for, in order, without duplicates.

    `all` becomes `cpu` plus `cuda:0` .. `cuda:{n-1}` for the visible CUDA devices, or
    `cpu` and `cuda` where none is visible (so that the CUDA test is reported as skipped,
    with its reason, instead of vanishing).

    Raises:
        pytest.UsageError: a value that is not `cpu`, `cuda`, `cuda:N` or `all`.
    """
    names: list[str] = []
    for value in requested or ["cpu"]:
        value = value.strip().lower()
        if value == "all":
            expanded = ["cpu", *_visible_cuda_devices()]
        elif value == "cpu" or value == "cuda" or _is_cuda_index(value):
            expanded = [value]
        else:
            raise pytest.UsageError(
                f"{DEVICE_OPTION}: expected cpu, cuda, cuda:N or all; got {value!r}"
            )
        names += [name for name in expanded if name not in names]
    return names


def _is_cuda_index(value: str) -> bool:
    prefix, colon, index = value.partition(":")
    return prefix == "cuda" and colon == ":" and index.isdigit()


def _visible_cuda_devices() -> list[str]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cuda"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that takes `lpim_device` by the `--lpim-device` devices (a CUDA
    one marked `lpim_cuda`)."""
    if "lpim_device" not in metafunc.fixturenames:
        return
    names = resolve_devices(metafunc.config.getoption("lpim_devices"))
    metafunc.parametrize(
        "lpim_device",
        [
            pytest.param(name, marks=[pytest.mark.lpim_cuda] if name != "cpu" else [])
            for name in names
        ],
        ids=names,
        indirect=True,
    )


def _cuda_missing(name: str) -> str:
    """Why CUDA device `name` cannot be used here ('' if it can)."""
    import torch

    if torch.version.cuda is None:
        return (
            f"{name} requested by {DEVICE_OPTION}, but this torch ({torch.__version__}) is a "
            "CPU-only build"
        )
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return (
            f"{name} requested by {DEVICE_OPTION}, but torch.cuda.is_available() is False: "
            f"no GPU visible{hint}"
        )
    index = torch.device(name).index or 0
    if index >= torch.cuda.device_count():
        return (
            f"{name} requested by {DEVICE_OPTION}, but only {torch.cuda.device_count()} CUDA "
            "device(s) are visible"
        )
    return ""


@pytest.fixture(scope="session")
def lpim_device(request: pytest.FixtureRequest) -> torch.device:
    """The device to test on: one test per `--lpim-device` value (default `cpu`).

    A CUDA device that is not available skips the test with the reason. Session-scoped, so it
    can be used inside a Hypothesis `@given` test without tripping the
    `function_scoped_fixture` health check.
    """
    import torch

    name: str = getattr(request, "param", "cpu")
    if name != "cpu":
        missing = _cuda_missing(name)
        if missing:
            pytest.skip(missing)
    return torch.device(name)


def _profile_name() -> str:
    from hypothesis import settings as Settings

    current: Callable[[], str] | None = getattr(Settings, "get_current_profile_name", None)
    return current() if current is not None else "unknown"


def profile_settings() -> Settings:
    """The settings `lpim_check` runs with.

    The profile loaded with `--hypothesis-profile` (or `settings.load_profile`) when it is
    one you chose; when Hypothesis is on a profile it picked by itself (`default`, or `ci`,
    which it loads when it sees a CI environment variable), `lpim-dev` or, in CI, `lpim-ci`:
    Hypothesis' defaults of 100 examples, for every property at four dtypes, are slower than a
    unit test should be.
    """
    from hypothesis import settings as Settings

    register_profiles()  # idempotent; Hypothesis' entry point did it where lpim is installed
    name = _profile_name()
    if name == "default":
        return Settings.get_profile("lpim-dev")
    if name == "ci":
        return Settings.get_profile("lpim-ci")
    return Settings()


@pytest.fixture(scope="session")
def lpim_check(
    lpim_device: torch.device, pytestconfig: pytest.Config
) -> Callable[..., CheckReport]:
    """`lpim_check(encoder_or_factory, **kwargs)`: `lpim.testing.check_encoder`, here.

    `encoder_or_factory` is an encoder (anything following the encoder protocol) or what builds
    one: a class, or a function whose parameters all have defaults (the rule of
    `lpim.testing.target.built`, the same as `lpim check`'s). It runs on `lpim_device` with
    the loaded Hypothesis profile's settings (see `profile_settings`) and the options of the
    `[tool.lpim]` table in the project's `pyproject.toml` (`layout`, `garbage`, `min-points`,
    `dtype`, ... exactly as `lpim check` reads them); `kwargs` are `check_encoder`'s
    (`dtype=`, `point_dim=`, `properties=`, `layout=`, `settings=`, ...) and override those.
    Returns the report; a failed property raises `lpim.testing.EncoderPropertyError`, which
    fails the test with lpim's message first: the property, the shrunk example and the
    reproducer.
    """
    return _runner("encoder", lpim_device, pytestconfig)


@pytest.fixture(scope="session")
def lpim_check_consumer(
    lpim_device: torch.device, pytestconfig: pytest.Config
) -> Callable[..., CheckReport]:
    """`lpim_check_consumer(consumer_or_factory, **kwargs)`:
    `lpim.testing.check_lane_consumer`, here.

    As `lpim_check`, for what reads the lanes: `consumer(lane_embedding [B, M, C], lane_mask
    [B, M], *other_inputs)` with `lane_mask` True = real lane. `kwargs` go to
    `check_lane_consumer` (`other_inputs=` such as `lpim.strategies.bev_queries(...)` or
    `lpim.strategies.bev_maps(...)`, `order_invariant=`, `embed_dim=`, `dtype=`, ...), over
    the same `[tool.lpim]` options. A failed property raises
    `lpim.testing.LaneConsumerPropertyError`.
    """
    return _runner("consumer", lpim_device, pytestconfig)


def _runner(side: Side, device: torch.device, config: pytest.Config) -> Callable[..., CheckReport]:
    """What a check fixture returns: `run(subject_or_factory, **kwargs)` builds the subject,
    and runs the check with `[tool.lpim]`, then the device, the profile's settings and the
    factory path (for the reproducer), then `kwargs` (None leaves an option as it was)."""
    from pathlib import Path

    from lpim.testing.options import Given, options_of, pyproject_layers
    from lpim.testing.target import built, factory_path

    layers = pyproject_layers(Path(str(config.rootpath)))
    options_of(side, *layers)  # a table that is wrong fails the fixture, before the test runs

    def run(subject_or_factory: Any, **kwargs: Any) -> CheckReport:
        __tracebackhide__ = True  # the test's frame and lpim's message, not lpim's internals
        from lpim.testing.check import check_encoder_with
        from lpim.testing.consumer import check_lane_consumer_with

        subject = built(subject_or_factory, side)
        here = {"device": device, "settings": profile_settings()}
        if subject is not subject_or_factory:
            here["factory"] = factory_path(subject_or_factory)
        options = options_of(side, *layers, Given.keywords(here), Given.keywords(kwargs))
        check = check_encoder_with if side == "encoder" else check_lane_consumer_with
        return check(subject, options)

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Failures lpim raised read as lpim's message first.

    - A failed lpim property's short summary line names the property, the dtype and what was
      seen ("matches_unpadded at float32: lane (b=0, m=1) ..."), instead of the exception's
      dotted type cut at the terminal's width.
    - A sanitizer finding (`lpim.MaskHazardError`, under `--lpim-sanitize` or the
      `lpim_sanitize` fixture) ends its traceback at the user's line that made the attention
      call, with the finding under it, and its short summary line is the finding
      ("head_major_3d_mask at model.py:12 (nn.MultiheadAttention, 1 call): ..."): the frames
      of torch's module machinery and of lpim's hooks are hidden (`--full-trace` shows them).
    """
    excinfo = call.excinfo
    # lpim's errors are not loaded where no check ran: nothing of lpim's can have failed then
    sanitizer = sys.modules.get("lpim.sanitizer")
    finding = None
    if excinfo is not None and sanitizer is not None:
        if isinstance(excinfo.value, sanitizer.MaskHazardError):
            finding = excinfo.value.finding
            if not item.config.getoption("fulltrace", False):
                _end_at_users_call(excinfo)
    outcome = yield
    report = outcome.get_result()
    crash = getattr(report.longrepr, "reprcrash", None)
    if not report.failed or excinfo is None or crash is None:
        return
    if finding is not None:
        crash.message = str(finding)
        return
    errors = sys.modules.get("lpim.testing.errors")
    failure = excinfo.value
    if errors is not None and isinstance(failure, errors.PropertyError):
        dtype = failure.dtype.removeprefix("torch.")
        crash.message = f"{failure.property_name} at {dtype}: {failure.detail.splitlines()[0]}"


def _end_at_users_call(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """End the failure's traceback at the user's attention call: the innermost entries that
    are torch's or lpim's (the module call machinery, the sanitizer's hooks) are cut off the
    exception's own traceback (`tb_next` is writable), so every report style shows it so."""
    torch = sys.modules.get("torch")
    inside = [os.path.dirname(os.path.abspath(__file__)) + os.sep]
    if torch is not None and torch.__file__ is not None:
        inside.append(os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)
    chain: list[TracebackType] = []
    tb: TracebackType | None = excinfo.tb
    while tb is not None:
        chain.append(tb)
        tb = tb.tb_next
    keep = len(chain)
    while keep > 1 and os.path.abspath(chain[keep - 1].tb_frame.f_code.co_filename).startswith(
        tuple(inside)
    ):
        keep -= 1
    if keep < len(chain):
        chain[keep - 1].tb_next = None
        excinfo.traceback = type(excinfo.traceback)(excinfo.tb)


# -- the sanitizer -------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """With `--lpim-sanitize`, run the test body under `lpim.sanitize(on_finding="raise")`."""
    if not item.config.getoption("lpim_sanitize", default=False):
        yield
        return
    from lpim.sanitizer import sanitize

    with sanitize(on_finding="raise"):
        yield


@pytest.fixture
def lpim_sanitize() -> Iterator[SanitizeReport]:
    """This test runs under `lpim.sanitize(on_finding="raise")`; the fixture is its report.

    A mask hazard in any attention call the test makes (its own or its model's) raises
    `lpim.MaskHazardError` at that call, which fails the test; `report.calls` says how
    many attention calls were inspected, so a test can assert that its model was seen at all.
    """
    from lpim.sanitizer import sanitize

    with sanitize(on_finding="raise") as report:
        yield report
