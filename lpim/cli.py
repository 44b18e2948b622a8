"""The `lpim` command.

Subcommands:
    `lpim check [MODULE:FACTORY]`  every property on an encoder (default: the reference encoder)
    `lpim diagnose MASK.pt --point-mask POINT_MASK.pt`  name the convention or mistake of a mask
    `lpim conventions`  the mask conventions table (name, shape, dtype, meaning, used by, call)
    `lpim vendor DEST`  copy the reference encoder into your tree, checked to import on its own
    `lpim sanitize SCRIPT.py [ARGS]`  run a script with the masks reaching attention checked

Exit status: 0 success, 1 a check failed, 2 a usage error (bad argument, file exists, ...).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

# What every subcommand needs imports no torch: `lpim --help`, argument errors and `lpim vendor`
# start at once. torch, the masks and the checks are imported by the subcommands that use them.
from lpim._errors import UsageError
from lpim._version import __version__
from lpim.testing.options import (
    CheckOptions,
    Side,
    add_flags,
    flags_given,
    options_of,
    pyproject_layers,
)
from lpim.testing.target import load_target

if TYPE_CHECKING:
    import torch

    from lpim.testing import PropertyError, PropertyResult
    from lpim.testing.report import CheckReport

__all__ = [
    "DEFAULT_TARGET",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "HYPOTHESIS_HOME",
    "JSON_SCHEMA",
    "UsageError",
    "load_target",
    "main",
]

EXIT_OK = 0
"""Exit status: success (no property failed; the mask follows a convention)."""
EXIT_FAILED = 1
"""Exit status: a property failed (or, with --strict, a row was not run); a mask mistake."""
EXIT_USAGE = 2
"""Exit status: a usage error (bad target, import error, bad option)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `lpim` command with `argv` (default `sys.argv[1:]`); return its exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on a bad option, 0 on --help
        return int(exit_.code or 0)
    try:
        status: int = args.run(args)
    except UsageError as error:
        print(f"lpim {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return status


HYPOTHESIS_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lpim"
"""Where the `lpim` command keeps Hypothesis' files (its example database when a profile
has one, its caches), unless `$HYPOTHESIS_STORAGE_DIRECTORY` says otherwise: never in the
folder the command runs in, which gets nothing but reproducers (`./lpim-reproducers`)."""


def _keep_hypothesis_files_out_of_the_folder() -> None:
    """Called by the subcommands that run Hypothesis (check, sanitize), before they do."""
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(HYPOTHESIS_HOME / "hypothesis")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpim",
        description="Padding masks for lane-prior (polyline) encoders, proved.",
    )
    parser.add_argument("--version", action="version", version=f"lpim {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="run every property on an encoder (default: lpim's reference PriorEncoder)",
        description="Every property at every dtype, under the data contract your loader keeps "
        "(flags, or a [tool.lpim] table in the nearest pyproject.toml; flags win). Exit "
        "status: 0 no property failed, 1 a property failed (or, with --strict, a row was "
        "skipped or unsupported), 2 usage error.",
    )
    check.add_argument(
        "target",
        nargs="?",
        default=DEFAULT_TARGET,
        help="MODULE:FACTORY, where FACTORY (evaluated in MODULE) is an encoder or a callable "
        "returning one; MODULE is imported from the current folder too, as with python -m "
        f"(default {DEFAULT_TARGET})",
    )
    add_flags(check, "encoder")
    check.set_defaults(run=_check)

    consumer = commands.add_parser(
        "check-consumer",
        help="run every lane-consumer property on what reads the lanes (a BEV fusion, a pooler)",
        description="The lane-set checks of lpim.testing.check_lane_consumer, with the same "
        "options as lpim check (flags, or [tool.lpim]). Exit status: 0 no property failed, 1 a "
        "property failed (or --strict and a row was not run), 2 usage error.",
    )
    consumer.add_argument(
        "target",
        help="MODULE:FACTORY giving the consumer, called as consumer(lane_embedding [B, M, C], "
        "lane_mask [B, M], *other_inputs)",
    )
    add_flags(consumer, "consumer")
    consumer.set_defaults(run=_check_consumer)

    diagnose_ = commands.add_parser(
        "diagnose",
        help="say which convention a saved mask follows, or which known mistake it is",
        description="Exit status: 0 the mask follows a convention and agrees with the points, "
        "1 it is a known mistake or unrecognised, 2 usage error.",
    )
    diagnose_.add_argument("mask", type=Path, help="a mask saved with torch.save")
    diagnose_.add_argument(
        "--point-mask",
        type=Path,
        required=True,
        help="the batch's point_mask [B, M, N] (bool, True = real point), saved with torch.save",
    )
    diagnose_.add_argument("--num-heads", type=int, help="attention heads (for 3D masks)")
    diagnose_.add_argument(
        "--query-tokens",
        type=int,
        default=None,
        help="tokens prepended to each lane (default: read from the mask's width against "
        "--point-mask's N)",
    )
    diagnose_.add_argument(
        "--intended",
        choices=_ConventionNames(),
        metavar="CONVENTION",
        help="the convention the mask was meant to follow (see lpim conventions): an inverted "
        "mask of it is named as such, and a correct mask of another convention is not OK",
    )
    diagnose_.set_defaults(run=_diagnose)

    conventions = commands.add_parser(
        "conventions", help="print every mask convention: shape, dtype, meaning, who uses it"
    )
    conventions.add_argument(
        "--format", choices=["text", "markdown"], default="text", help="table style"
    )
    conventions.set_defaults(run=_conventions)

    vendor = commands.add_parser(
        "vendor", help="write the reference encoder (encoder.py) into your tree"
    )
    vendor.add_argument(
        "raw_dest",
        metavar="DEST",
        help="a folder (made if missing) or the .py file to write (its folder made if missing)",
    )
    vendor.add_argument("--force", action="store_true", help="overwrite an existing file")
    vendor.set_defaults(run=_vendor)

    sanitize_ = commands.add_parser(
        "sanitize",
        help="run a Python script under lpim.sanitize and print the mask findings table",
        description="Run SCRIPT (as __main__, with sys.argv = [SCRIPT, *ARGS] and its folder on "
        "sys.path) with every attention call's masks checked. Exit status: 1 on any finding "
        "(or if the script raised), else the script's own exit status (0).",
    )
    sanitize_.add_argument(
        "--fail-on-no-attention",
        action="store_true",
        help="exit 1 when the script ran no attention call the sanitizer could check",
    )
    sanitize_.add_argument("script", type=Path, help="the Python script to run, e.g. one step")
    sanitize_.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    sanitize_.set_defaults(run=_sanitize)
    return parser


class _ConventionNames:
    """The names of `lpim.masks.CONVENTIONS`, for argparse's `choices`: read from the registry
    (which imports torch) only when a value is checked, so building the parser stays cheap."""

    def __contains__(self, name: object) -> bool:
        from lpim.masks import CONVENTIONS

        return name in CONVENTIONS

    def __iter__(self) -> Iterator[str]:
        from lpim.masks import CONVENTIONS

        return iter(CONVENTIONS)


# -- lpim check, lpim check-consumer -------------------------------------------------------------

# The reference encoder with its 8 heads and its structure, narrower and shallower than the
# realistic defaults so that a first check takes seconds: mask bugs do not depend on width.
# `lpim check lpim.encoder:PriorEncoder` checks the realistic configuration.
DEFAULT_TARGET = "lpim.encoder:PriorEncoder(d_model=64, dim_feedforward=128, num_layers=2)"
"""What `lpim check` checks without a target: the reference encoder, small and quick."""


def _check(args: argparse.Namespace) -> int:
    return _run_check("encoder", args)


def _check_consumer(args: argparse.Namespace) -> int:
    return _run_check("consumer", args)


def _run_check(side: Side, args: argparse.Namespace) -> int:
    """Build the options (`[tool.lpim]`, then the flags), load the target, run the check,
    print the report and every failure's reproducer path, write `--json`; the exit status."""
    startup = _Startup()
    layers = pyproject_layers(Path.cwd())
    options = options_of(side, *layers, flags_given(side, args))  # before any import
    _keep_hypothesis_files_out_of_the_folder()
    with startup.timing("torch"):
        import torch  # noqa: F401  (timed alone: the largest part of the start-up)
    with startup.timing("checks"):  # Hypothesis and lpim.testing
        from lpim.testing import IncompleteCheckError, PropertyError
        from lpim.testing.check import check_encoder_with
        from lpim.testing.consumer import check_lane_consumer_with
    with startup.timing("target"):
        subject = load_target(args.target, side)
    progress = _Progress(sys.stdout, show=sys.stdout.isatty() or options.show_progress)
    progress.startup = startup
    # checked by load_target; the progress display is the command's own callable
    options = dataclasses.replace(options, factory=args.target, progress=progress)
    if _is_module(subject):
        subject.eval()
    if options.pyproject:
        print(f"options from {options.pyproject} [tool.lpim]; flags override them")
    check = check_encoder_with if side == "encoder" else check_lane_consumer_with
    try:
        report = check(subject, options)
    except PropertyError as failure:
        if progress.show:
            print()
        if failure.report is not None:
            _print_report(failure.report, startup, options)
        print(f"\n{failure}")
        # after the report: a folder that cannot be used is a usage error (exit 2) that loses
        # nothing of the failure, already printed (and still written to --json)
        try:
            paths = _write_reproducer(failure.failures, Path(options.reproducer_dir))
        except UsageError:
            _write_json(
                EXIT_USAGE,
                options,
                side,
                args.target,
                failure.report,
                failure.failures,
                [],
                startup,
            )
            raise
        where = Path(options.reproducer_dir).resolve()
        if where.is_relative_to(Path.cwd().resolve()):  # as the user reads it: from here
            where = where.relative_to(Path.cwd().resolve())
        print(f"\n{len(paths)} reproducer(s) written to {where}/:")
        for command in _reproducer_commands(failure.failures, paths):
            print(f"  {command}")
        _write_json(
            EXIT_FAILED,
            options,
            side,
            args.target,
            failure.report,
            failure.failures,
            paths,
            startup,
        )
        return EXIT_FAILED
    except IncompleteCheckError as incomplete:
        if progress.show:
            print()
        _print_report(incomplete.report, startup, options)
        print(f"\n{incomplete}")
        _write_json(EXIT_FAILED, options, side, args.target, incomplete.report, [], [], startup)
        return EXIT_FAILED
    if progress.show:
        print()
    _print_report(report, startup, options)
    _write_json(EXIT_OK, options, side, args.target, report, [], [], startup)
    return EXIT_OK


def _print_report(report: CheckReport, startup: _Startup, options: CheckOptions) -> None:
    if options.verbose:
        print(startup)
    print(report)


def _is_module(thing: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(thing, torch.nn.Module)


def _seconds_since_the_process_started() -> float | None:
    """Seconds since this process started, from Linux's /proc (None elsewhere)."""
    try:
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        started_ticks = int(fields[19])  # field 22, starttime, in clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class _Startup:
    """How long `lpim check` took to start, for `--verbose`: the imports it made (timed where
    it makes them; what was imported before is free) and the time to the first property's
    result, counted from the process's start (Linux) or from the command's."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.before = _seconds_since_the_process_started()  # interpreter start-up, lpim.cli
        self.steps: list[tuple[str, float]] = []
        self.first_result: float | None = None  # seconds since `began`

    class _Timer:
        def __init__(self, startup: _Startup, what: str) -> None:
            self.startup, self.what = startup, what

        def __enter__(self) -> None:
            self.t0 = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            self.startup.steps.append((self.what, time.perf_counter() - self.t0))

    def timing(self, what: str) -> _Startup._Timer:
        """A context manager that records how long its body took, as step `what`."""
        return _Startup._Timer(self, what)

    def result_seen(self) -> None:
        """A property's result came in (the first one is kept)."""
        if self.first_result is None:
            self.first_result = time.perf_counter() - self.began

    def as_dict(self) -> dict[str, Any]:
        """The figures, in seconds (`before_command_seconds`: None where /proc is missing)."""
        return {
            "before_command_seconds": None if self.before is None else round(self.before, 4),
            **{f"{what}_seconds": round(seconds, 4) for what, seconds in self.steps},
            "first_result_seconds": None
            if self.first_result is None
            else round(self.first_result + (self.before or 0.0), 4),
        }

    def __str__(self) -> str:
        words = {"torch": "import torch", "checks": "import the checks", "target": "load target"}
        steps = ", ".join(f"{words.get(what, what)} {seconds:.2f}s" for what, seconds in self.steps)
        before = (
            f"python and lpim's command {self.before:.2f}s, " if self.before is not None else ""
        )
        first = (
            f"first property result {self.first_result + (self.before or 0.0):.2f}s after "
            + ("the process started" if self.before is not None else "the command started")
            if self.first_result is not None
            else "no property result"
        )
        return f"start-up: {before}{steps}; {first}"


class _Progress:
    """A check's live display: a line per property and dtype as it finishes.

    Shown on a terminal (the running property is written on the line and replaced by its
    result) or with `--progress` (finished lines only); otherwise silent, so a log gets each row
    once, in the report's table. Either way it tells `--verbose` when the first result came.
    """

    def __init__(self, stream: TextIO, show: bool) -> None:
        self.stream = stream
        self.show = show
        self.live = show and stream.isatty()
        self.startup: _Startup | None = None

    def __call__(self, name: str, dtype: Any, result: PropertyResult | None) -> None:
        if result is not None and self.startup is not None:
            self.startup.result_seen()
        if not self.show:
            return
        label = f"  {name:<26} {str(dtype).removeprefix('torch.'):<9}"
        if result is None:
            if self.live:
                self.stream.write(f"{label} running...\r")
                self.stream.flush()
            return
        detail = f"error/allowed {result.max_error_ratio:.3g}" if result.verdict == "pass" else ""
        line = f"{label} {result.verdict:<11} {result.examples:>4} examples {result.seconds:6.2f}s"
        clear_rest = "\x1b[K" if self.live else ""  # wipe what "running..." left on the line
        detail = detail or textwrap.shorten(result.note, 60, placeholder=" ...")
        self.stream.write(f"{line}  {detail}".rstrip() + clear_rest + "\n")
        self.stream.flush()


JSON_SCHEMA = "lpim-check-report/1"
"""The `schema` field of the file `lpim check --json FILE` writes (its layout: the command's
reference page). A change that removes or renames a field gets a new number."""


def _write_json(
    status: int,
    options: CheckOptions,
    side: Side,
    target: str,
    report: CheckReport | None,
    failures: Sequence[PropertyError[Any]],
    reproducers: Sequence[Path],
    startup: _Startup,
) -> None:
    """Write the report to `--json FILE` (nothing without the flag).

    Raises:
        UsageError: FILE cannot be written (naming it and the flag).
    """
    if options.json_report is None:
        return
    import hypothesis
    import torch

    rows = report.as_dict()["rows"] if report is not None else []
    document = {
        "schema": JSON_SCHEMA,
        "command": "check" if side == "encoder" else "check-consumer",
        "target": target,
        "exit_status": status,
        **(report.as_dict() if report is not None else {"rows": rows}),
        "options_from": options.pyproject or None,
        "failures": [
            {
                "property": failure.property_name,
                "dtype": str(failure.dtype).removeprefix("torch."),
                "message": failure.detail.splitlines()[0] if failure.detail else "",
                "reproducer": str(path.resolve()) if path is not None else None,
            }
            for failure, path in zip(
                failures,
                [*reproducers, *[None] * (len(failures) - len(reproducers))],
                strict=True,
            )
        ],
        "timings": {
            "check_seconds": round(report.seconds, 4) if report is not None else None,
            "command_seconds": round(time.perf_counter() - startup.began, 4),
            "startup": startup.as_dict(),
        },
        "versions": {
            "lpim": __version__,
            "torch": torch.__version__,
            "hypothesis": hypothesis.__version__,
            "python": sys.version.split()[0],
        },
    }
    path = Path(options.json_report)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    except OSError as error:
        raise UsageError(
            f"{options.name('json_report')}: cannot write {str(path)!r} ({error.strerror or error})"
        ) from None


def _write_reproducer(failures: list[PropertyError[Any]], directory: Path) -> list[Path]:
    """Write the failures' reproducers (`lpim.testing.reproducer.write_reproducers`: never
    over a file lpim did not write), runnable from any folder: when the checked code was
    imported from the current folder, that folder goes first on their `sys.path` (code from an
    installed package needs nothing). The paths, in the order of `failures`.

    Raises:
        UsageError: `--reproducer-dir` cannot be used (a file, read-only, not creatable).
    """
    from lpim.testing.reproducer import write_reproducers

    return write_reproducers(
        failures, directory, sys_path=_imported_from_cwd(), option="--reproducer-dir"
    )


def _imported_from_cwd() -> list[str]:
    """`[the current folder]` when a module loaded from it (the user's code, as `python -m`
    imports it) is in `sys.modules`; `[]` otherwise."""
    here = Path.cwd().resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if (
            isinstance(file, str)
            and os.path.isabs(file)
            and Path(file).resolve().is_relative_to(here)
        ):
            return [str(here)]
    return []


def _reproducer_commands(failures: list[PropertyError[Any]], paths: Sequence[Path]) -> list[str]:
    """One `python PATH` line per reproducer, saying when the usual name was taken."""
    from lpim.testing.reproducer import reproducer_filename

    commands = []
    for failure, path in zip(failures, paths, strict=True):
        usual = reproducer_filename(failure)
        kept = f"  ({usual} there is not lpim's, or was edited: kept)" if path.name != usual else ""
        commands.append(f"python {path}{kept}")
    return commands


# -- lpim diagnose ------------------------------------------------------------------------------


def _diagnose(args: argparse.Namespace) -> int:
    from lpim.masks import diagnose

    mask = _load_tensor(args.mask, "MASK")
    point_mask = _load_tensor(args.point_mask, "--point-mask")
    if args.num_heads is not None and args.num_heads < 1:
        raise UsageError(f"--num-heads must be at least 1; got {args.num_heads}")
    if args.query_tokens is not None and args.query_tokens < 0:
        raise UsageError(f"--query-tokens must be at least 0; got {args.query_tokens}")
    try:
        diagnosis = diagnose(
            mask,
            point_mask,
            num_heads=args.num_heads,
            query_tokens=args.query_tokens,
            intended=args.intended,
        )
    except (ValueError, UsageError) as error:  # malformed point_mask, sizes: said in one line
        raise UsageError(str(error).splitlines()[0]) from error
    print(diagnosis)
    return EXIT_OK if diagnosis.ok else EXIT_FAILED


def _load_tensor(path: Path, what: str) -> torch.Tensor:
    import torch

    from lpim._validation import check_dense

    if path.is_dir():
        raise UsageError(
            f"{what}: {str(path)!r} is a folder; expected a file saved with torch.save"
        )
    if not path.is_file():
        raise UsageError(f"{what}: no such file {str(path)!r}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unreadable, not a torch file, or pickled objects beyond tensors
        first_line = next((line for line in str(error).splitlines() if line.strip()), "")
        raise UsageError(
            f"{what}: cannot read {str(path)!r} with torch.load(weights_only=True): "
            f"{type(error).__name__}: {first_line}"
        ) from error
    if not isinstance(loaded, torch.Tensor):
        raise UsageError(
            f"{what}: {str(path)!r} holds a {type(loaded).__name__}, expected one tensor "
            "saved with torch.save(tensor, path)"
        )
    check_dense(loaded, f"{what} ({str(path)!r})")
    return loaded


# -- lpim conventions ----------------------------------------------------------------------------


def _conventions(args: argparse.Namespace) -> int:
    # The registry is read from lpim.masks, whose converters import torch.
    from lpim.masks import CONVENTIONS
    from lpim.testing.report import format_table

    if args.format == "markdown":
        header = ["convention", "shape", "dtype", "True / value means", "used by", "lpim call"]
        rows = [
            [c.name, c.shape, c.dtype, c.meaning, c.used_by, c.converter]
            for c in CONVENTIONS.values()
        ]
        print(format_table(header, rows, markdown=True))
        return EXIT_OK
    # One block per convention: six columns side by side would be 240 characters wide.
    width = max(len(c.name) for c in CONVENTIONS.values())
    for c in CONVENTIONS.values():
        print(f"{c.name:<{width}}  {c.shape}  {c.dtype}")
        for label, value in (("means", c.meaning), ("used by", c.used_by), ("lpim", c.converter)):
            print(f"{'':<{width}}  {label + ':':<9}{value}")
    print(
        "\nB samples, M lanes, N point slots, H heads; S = L = query_tokens + N tokens a lane."
        "\nlpim's point_mask: True = real point. MHA: True = ignore. SDPA: True = attend."
    )
    return EXIT_OK


# -- lpim vendor ---------------------------------------------------------------------------------


def _vendor(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    args.dest = Path(args.raw_dest)
    spec = find_spec("lpim.encoder")  # found, not imported: the copy is checked in a subprocess
    assert spec is not None and spec.origin is not None
    source_path = Path(spec.origin)
    given = str(args.raw_dest)
    dest: Path = args.dest
    try:  # every look at DEST may fail: a name too long, a null byte, a read-only folder
        # A folder (existing, or named with a trailing slash) gets encoder.py; a .py path is
        # the file.
        as_folder = args.dest.is_dir() or given.endswith(("/", "\\")) or args.dest.suffix == ""
        dest = args.dest / "encoder.py" if as_folder else args.dest
        if dest.suffix != ".py":
            raise UsageError(
                f"DEST must be a folder (existing, or ending in '/') or a .py file; got {given!r}"
            )
        if dest.is_dir():
            raise UsageError(f"DEST: {str(dest)!r} is a folder; expected a .py file to write")
        blocking = next((p for p in dest.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise UsageError(f"DEST: {str(blocking)!r} is a file, not a folder")
        if dest.exists() and not args.force:
            raise UsageError(f"{str(dest)!r} exists; pass --force to overwrite it")
        source = source_path.read_text()
        foreign = _non_torch_imports(source)
        if foreign:  # the file is meant to need torch alone; refuse to hand out one that does not
            print(
                f"lpim vendor: encoder.py imports {sorted(foreign)}: not vendorable",
                file=sys.stderr,
            )
            return EXIT_FAILED
        header = (
            f"# Vendored from lpim {__version__} (lpim/encoder.py) by `lpim vendor`.\n"
            "# Needs only torch and the standard library.\n"
        )
        dest.parent.mkdir(parents=True, exist_ok=True)  # folders that do not exist yet are made
        dest.write_text(header + source)
    except (OSError, ValueError) as error:  # read-only, no permission, a name the OS refuses
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise UsageError(
            f"DEST: cannot write {str(dest)!r} ({reason}); expected a path in a folder you can "
            "write to"
        ) from error
    problem = _imports_on_its_own(dest)
    if problem:
        print(
            f"lpim vendor: wrote {dest}, but it does not work on its own:\n{problem}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"wrote {dest} (lpim {__version__}); it imports and runs with torch alone")
    return EXIT_OK


def _non_torch_imports(source: str) -> set[str]:
    """Top-level packages `source` imports beyond torch and the standard library."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {name for name in found if name != "torch" and name not in sys.stdlib_module_names}


_SMOKE_TEST = """
import importlib.util, sys
sys.modules["lpim"] = None  # any import of lpim now fails: the copy must stand alone
spec = importlib.util.spec_from_file_location("vendored_encoder", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import torch
encoder = module.PriorEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32).eval()
out = encoder(torch.randn(2, 3, 4, 2), torch.rand(2, 3, 4) > 0.5)
assert out.lane_embedding.shape == (2, 3, 16) and bool(out.lane_embedding.isfinite().all())
"""


def _imports_on_its_own(path: Path) -> str:
    """Import `path` in a fresh interpreter where lpim cannot be imported; '' if it works."""
    result = subprocess.run(
        [sys.executable, "-c", _SMOKE_TEST, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if result.returncode == 0 else result.stderr.strip()[-2000:]


# -- lpim sanitize -------------------------------------------------------------------------------


def _sanitize(args: argparse.Namespace) -> int:
    """Run a user's script under `lpim.sanitize(on_finding="collect")`; print the findings.

    Whatever the script does (raises, exits, leaves a torch function mode entered), the table
    is printed; modes the script left entered are exited, with a line on stderr naming them.
    """
    import runpy
    import traceback

    import torch

    from lpim.sanitizer import sanitize

    _keep_hypothesis_files_out_of_the_folder()
    script: Path = args.script
    if not script.is_file():
        raise UsageError(f"no such script: {script}")
    argv, path = list(sys.argv), list(sys.path)
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.resolve().parent))  # as `python SCRIPT.py` does
    status = EXIT_OK
    depth = torch._C._len_torch_function_stack()
    try:
        with sanitize(on_finding="collect") as report:
            try:
                runpy.run_path(str(script), run_name="__main__")
            except SystemExit as exit_:
                code = exit_.code
                status = code if isinstance(code, int) else (0 if code is None else EXIT_FAILED)
            except Exception:
                traceback.print_exc()
                status = EXIT_FAILED
    finally:
        sys.argv, sys.path[:] = argv, path
        left = _exit_modes_above(depth)
    if left:
        print(
            f"lpim sanitize: the script left {len(left)} torch function mode(s) entered "
            f"({', '.join(left)}); lpim exited them after the run",
            file=sys.stderr,
        )
    sys.stdout.flush()
    print(report.table())
    if report.findings or (args.fail_on_no_attention and not report.calls):
        return EXIT_FAILED
    return status


def _exit_modes_above(depth: int) -> list[str]:
    """Pop the torch function modes above `depth` (a script's, left entered); their names."""
    import torch

    names: list[str] = []
    while torch._C._len_torch_function_stack() > depth:
        names.append(type(torch._C._pop_torch_function_stack()).__name__)
    return names[::-1]
