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
import importlib
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch
from hypothesis import settings as Settings
from hypothesis.configuration import set_hypothesis_home_dir

import lpim
from lpim import encoder as reference_encoder
from lpim._errors import UsageError
from lpim._validation import check_dense
from lpim.batch import LAYOUTS
from lpim.masks import CONVENTIONS, diagnose
from lpim.profiles import PROFILES, register_profiles
from lpim.strategies import GARBAGE_CONTRACTS
from lpim.testing import (
    CHECKED_PROPERTIES,
    DEFAULT_SETTINGS,
    PRECISIONS,
    CheckReport,
    IncompleteCheckError,
    PropertyError,
    PropertyResult,
    check_encoder,
    check_lane_consumer,
    property_names,
)
from lpim.testing.contract import find_pyproject, read_pyproject
from lpim.testing.report import format_table

__all__ = [
    "DEFAULT_TARGET",
    "DTYPES",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "HYPOTHESIS_HOME",
    "REPRODUCER_DIR",
    "UsageError",
    "load_target",
    "main",
    "what_command",
]

EXIT_OK = 0
"""Exit status: success (no property failed; the mask follows a convention)."""
EXIT_FAILED = 1
"""Exit status: a property failed (or, with --strict, a row was not run); a mask mistake."""
EXIT_USAGE = 2
"""Exit status: a usage error (bad target, import error, bad option)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `lpim` command with `argv` (default `sys.argv[1:]`); return its exit status."""
    _keep_hypothesis_files_out_of_the_folder()
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
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        set_hypothesis_home_dir(HYPOTHESIS_HOME / "hypothesis")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpim",
        description="Padding masks for lane-prior (polyline) encoders, proved.",
    )
    parser.add_argument("--version", action="version", version=f"lpim {lpim.__version__}")
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
    _add_run_options(check, CHECKED_PROPERTIES)
    check.add_argument(
        "--point-dim", type=int, help="coordinates per point D (default: read from the encoder)"
    )
    check.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="bfloat16/float16 rows: 'cast' copies the module to the dtype (default), "
        "'autocast' keeps float32 weights and runs under torch.autocast, as mixed-precision "
        "training does",
    )
    contract = check.add_argument_group(
        "data contract", "what your loader's batches may hold (default: anything)"
    )
    contract.add_argument(
        "--layout",
        action="append",
        choices=list(LAYOUTS),
        help="a padding layout that occurs (repeatable; default all three)",
    )
    contract.add_argument(
        "--garbage",
        choices=list(GARBAGE_CONTRACTS),
        help="what padded slots hold: any (huge, inf, NaN too; default), finite (within the "
        "coordinates' range), zeros, repeat_last (each lane's last real point)",
    )
    contract.add_argument(
        "--min-points", type=int, help="fewest real points in a non-empty lane (default 1)"
    )
    contract.add_argument(
        "--empty-lanes",
        choices=["yes", "no", "zero"],
        help="do empty lanes occur (default yes); 'zero': yes, and they must give zeros",
    )
    contract.add_argument(
        "--empty-samples", choices=["yes", "no"], help="do samples without a lane occur"
    )
    _add_size_options(contract)
    contract.add_argument(
        "--num-points", type=_size, metavar="N|LO-HI", help="point slots per lane (default 1-8)"
    )
    _add_deadline_option(check)
    check.set_defaults(run=_check)

    consumer = commands.add_parser(
        "check-consumer",
        help="run every lane-consumer property on what reads the lanes (a BEV fusion, a pooler)",
        description="The lane-set checks of lpim.testing.check_lane_consumer. Exit status: 0 "
        "no property failed, 1 a property failed (or --strict and a row was not run), 2 usage "
        "error.",
    )
    consumer.add_argument(
        "target",
        help="MODULE:FACTORY giving the consumer, called as consumer(lane_embedding [B, M, C], "
        "lane_mask [B, M], *other_inputs)",
    )
    _add_run_options(consumer, property_names("consumer"))
    consumer.add_argument("--embed-dim", type=int, help="C (default: read from the consumer)")
    consumer.add_argument(
        "--other-inputs",
        metavar="MODULE:FUNCTION",
        help="FUNCTION(batch_size, dtype, device) -> a Hypothesis strategy of the consumer's "
        "other inputs (a tuple, or a dict of keywords); e.g. lpim.strategies:bev_maps(16, 8, 8)",
    )
    consumer.add_argument(
        "--order-invariant",
        action="store_true",
        help="declare that the output must not depend on the order of the lane slots",
    )
    _add_size_options(consumer)
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
        choices=list(CONVENTIONS),
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
    sanitize_.add_argument("script", type=Path, help="the Python script to run, e.g. one step")
    sanitize_.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    sanitize_.set_defaults(run=_sanitize)
    return parser


# -- lpim check ---------------------------------------------------------------------------------

# The reference encoder with its 8 heads and its structure, narrower and shallower than the
# realistic defaults so that a first check takes seconds: mask bugs do not depend on width.
# `lpim check lpim.encoder:PriorEncoder` checks the realistic configuration.
DEFAULT_TARGET = "lpim.encoder:PriorEncoder(d_model=64, dim_feedforward=128, num_layers=2)"
"""What `lpim check` checks without a target: the reference encoder, small and quick."""
DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
"""The `--dtype` names."""


def load_target(target: str, what: str = "encoder") -> object:
    """Import `MODULE:FACTORY` and return what it names (calling a factory or class).

    The current folder is importable, as with `python -m` and pytest, so that a user's
    `lane_encoder.py` next to them is found.

    Raises:
        UsageError: a malformed target, an import error (naming the folders searched and the
            fix), or a factory that fails.
    """
    module_name, colon, expression = target.partition(":")
    if not colon or not module_name or not expression:
        raise UsageError(f"target must be MODULE:FACTORY (e.g. {DEFAULT_TARGET}); got {target!r}")
    _current_folder_importable()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise UsageError(
                f"importing {module_name!r} failed: {type(error).__name__}: {error} (a module "
                f"{module_name!r} imports is missing: install it in this environment)"
            ) from error
        searched = [str(Path(p or ".").resolve()) for p in sys.path[:3]]
        raise UsageError(
            f"cannot import {module_name!r}: no module of that name in the current folder "
            f"({Path.cwd()}) or on sys.path (first: {', '.join(searched)}, ...). Run lpim "
            "from the folder that holds it, or add that folder to PYTHONPATH "
            f"(PYTHONPATH=path/to/folder lpim {what_command(what)} {target})"
        ) from error
    except Exception as error:  # any import-time failure is the user's to fix, in one line
        raise UsageError(
            f"cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    try:
        found = eval(expression, vars(module))  # an attribute path or a small expression
        if (
            callable(found)
            and not isinstance(found, torch.nn.Module)
            and _takes_no_arguments(found)
        ):
            found = found()  # a factory; a function with arguments is the thing itself
    except Exception as error:
        raise UsageError(
            f"cannot build the {what} from {target!r}: {type(error).__name__}: {error}"
        ) from error
    if not callable(found):
        raise UsageError(f"{target!r} gave a {type(found).__name__}, not a callable {what}")
    return found


def _takes_no_arguments(function: Callable[..., object]) -> bool:
    """True for a factory (a class or a function callable with no argument)."""
    if isinstance(function, type):
        return True
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin: call it, as before
        return True
    return not any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in parameters
    )


def what_command(what: str) -> str:
    """The subcommand that checks `what` (for messages)."""
    return "check-consumer" if what == "consumer" else "check"


def _current_folder_importable() -> None:
    """Put the current folder first on `sys.path`, as `python -m` does (console scripts
    start with the script's own folder there instead)."""
    here = str(Path.cwd())
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _add_size_options(group: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--batch-size`` and ``--num-lanes``, shared by check and check-consumer."""
    group.add_argument(
        "--batch-size", type=_size, metavar="B|LO-HI", help="samples per batch (default 1-3)"
    )
    group.add_argument(
        "--num-lanes", type=_size, metavar="M|LO-HI", help="lane slots per sample (default 1-6)"
    )


def _add_run_options(command: argparse.ArgumentParser, properties: Sequence[str]) -> None:
    """The options every check subcommand shares."""
    command.add_argument(
        "--dtype",
        action="append",
        choices=sorted(DTYPES),
        help="check this dtype (repeat for several; default all four)",
    )
    command.add_argument(
        "--property",
        action="append",
        dest="properties",
        choices=list(properties),
        help="check only this property (repeatable)",
    )
    command.add_argument(
        "--device", default="cpu", help="device to run on: cpu, cuda or cuda:N (default cpu)"
    )
    command.add_argument(
        "--profile",
        help=f"Hypothesis settings profile ({', '.join(PROFILES)}, or one you registered); "
        "default: lpim's own (15 examples a property, derandomized: the same verdict every "
        "run, no example database written)",
    )
    command.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="Hypothesis examples per property (overrides the profile's)",
    )
    command.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a row was skipped or unsupported, not only when one failed",
    )
    command.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads during the check (default 1: tiny forwards gain nothing "
        "from more, and lose much on a busy machine)",
    )
    command.add_argument(
        "--reproducer-dir",
        type=Path,
        default=Path(REPRODUCER_DIR),
        help=f"where failures' reproducers are written (default ./{REPRODUCER_DIR})",
    )


REPRODUCER_DIR = "lpim-reproducers"
"""Where `lpim check` writes reproducers, under the folder it runs in."""


def _size(text: str) -> int | tuple[int, int]:
    """`"8"` -> 8, `"1-50"` -> (1, 50): a size flag."""
    low, dash, high = text.partition("-")
    try:
        return (int(low), int(high)) if dash else int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected N or LO-HI (e.g. 8 or 1-50); got {text!r}"
        ) from None


def _contract_options(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The data contract and run options: `[tool.lpim]` of the nearest pyproject.toml, then
    the flags given; and where the table came from ('' when none)."""
    found = find_pyproject(Path.cwd())
    options: dict[str, Any] = {}
    if found is not None:
        try:
            options = read_pyproject(found)
        except ValueError as error:
            raise UsageError(str(error)) from error
        if "dtype" in options:
            names = [options["dtype"]] if isinstance(options["dtype"], str) else options["dtype"]
            unknown = [n for n in names if n not in DTYPES]
            if unknown:
                raise UsageError(f"{found}: [tool.lpim] dtype must be among {sorted(DTYPES)}")
            options["dtype"] = [DTYPES[n] for n in names]
    flags = {
        "layout": args.layout,
        "garbage": args.garbage,
        "min_points": args.min_points,
        "empty_lanes": {"yes": True, "no": False, "zero": "zero"}.get(args.empty_lanes or ""),
        "empty_samples": {"yes": True, "no": False}.get(args.empty_samples or ""),
        "batch_size": args.batch_size,
        "num_lanes": args.num_lanes,
        "num_points": args.num_points,
        "precision": args.precision,
        "point_dim": args.point_dim,
        "threads": args.threads,
        "dtype": [DTYPES[name] for name in args.dtype] if args.dtype else None,
    }
    options.update({key: value for key, value in flags.items() if value is not None})
    return options, str(found) if found is not None else ""


def _check(args: argparse.Namespace) -> int:
    encoder = load_target(args.target)
    if isinstance(encoder, torch.nn.Module):
        encoder.eval()
    options, source = _contract_options(args)
    if source:
        print(f"data contract and options from {source} [tool.lpim]; flags override them")
    return _run_check(
        check_encoder,
        encoder,
        args,
        dict(
            options,
            factory=args.target,
            deadline=_deadline(args),
        ),
    )


def _check_consumer(args: argparse.Namespace) -> int:
    consumer = load_target(args.target, "consumer")
    if isinstance(consumer, torch.nn.Module):
        consumer.eval()
    other_inputs = None
    if args.other_inputs is not None:
        try:
            other_inputs = load_target(args.other_inputs, "other-inputs function")
        except UsageError as error:  # name the flag: the target's own errors name the target
            raise UsageError(f"--other-inputs {args.other_inputs}: {error}") from error
    return _run_check(
        check_lane_consumer,
        consumer,
        args,
        {
            "embed_dim": args.embed_dim,
            "other_inputs": other_inputs,
            "order_invariant": args.order_invariant,
            "dtype": [DTYPES[name] for name in args.dtype] if args.dtype else None,
            "batch_size": args.batch_size or (1, 3),
            "num_lanes": args.num_lanes or (1, 6),
            "threads": 1 if args.threads is None else args.threads,
            "factory": args.target,
        },
    )


def _run_check(
    check: Callable[..., CheckReport],
    subject: object,
    args: argparse.Namespace,
    options: dict[str, Any],
) -> int:
    """Run `check` with the shared options, print the report and every failure's
    reproducer path; the exit status."""
    if options.get("threads", 1) is not None and options.get("threads", 1) < 1:
        raise UsageError(f"--threads must be at least 1; got {options['threads']}")
    live = _Progress(sys.stdout)
    try:
        report = check(
            subject,
            device=_device(args.device),
            settings=_settings(args.profile, args.max_examples),
            properties=args.properties,
            strict=args.strict,
            progress=live,
            **options,
        )
    except PropertyError as failure:
        paths = [_write_reproducer(f, args.reproducer_dir) for f in failure.failures]
        print()
        print(failure.report if failure.report is not None else "")
        print(f"\n{failure}")
        where = args.reproducer_dir.resolve()
        print(f"\n{len(paths)} reproducer(s) written to {where}/:")
        for path in paths:
            print(f"  python {path}")
        return EXIT_FAILED
    except IncompleteCheckError as incomplete:
        print()
        print(incomplete.report)
        print(f"\n{incomplete}")
        return EXIT_FAILED
    except (ValueError, TypeError) as error:  # point_dim unknown, a contract value, ...
        raise UsageError(_flag_names(str(error))) from error
    print()
    print(report)
    return EXIT_OK


# Python keywords of the checks, as the flags that set them.
_FLAGS = {
    "point_dim": "--point-dim",
    "embed_dim": "--embed-dim",
    "min_points": "--min-points",
    "empty_lanes": "--empty-lanes",
    "empty_samples": "--empty-samples",
    "batch_size": "--batch-size",
    "num_lanes": "--num-lanes",
    "num_points": "--num-points",
    "precision": "--precision",
    "garbage": "--garbage",
    "layout": "--layout",
    "threads": "--threads",
    "deadline": "--deadline",
}


def _flag_names(message: str) -> str:
    """`message` with the check's keywords named as this command's flags where it tells
    what to pass or what was wrong ("pass point_dim=D", "min_points must be ...")."""
    for keyword, flag in _FLAGS.items():
        message = re.sub(rf"\bpass {keyword}=(\w+)", rf"pass {flag} \1", message)
        message = re.sub(rf"^{keyword} must\b", f"{flag} must", message)
    return message


def _settings(profile: str | None, max_examples: int | None) -> Settings:
    """The Hypothesis settings of a check: a profile's, or lpim check's own (derandomized and
    without an example database, so the verdict is the same every run and nothing is written
    to the folder but reproducers)."""
    settings = Settings(DEFAULT_SETTINGS, derandomize=True, database=None)
    if profile is not None:
        register_profiles()
        try:
            settings = Settings.get_profile(profile)
        except Exception as error:  # Hypothesis raises InvalidArgument for an unknown name
            raise UsageError(
                f"unknown Hypothesis profile {profile!r}; lpim's are {', '.join(PROFILES)}"
            ) from error
    if max_examples is not None:
        if max_examples < 1:
            raise UsageError(f"--max-examples must be at least 1; got {max_examples}")
        settings = Settings(settings, max_examples=max_examples)
    return settings


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"--device: expected cpu, cuda or cuda:N; got {name!r}") from error
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: expected cpu, cuda or cuda:N; got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {name}: torch.cuda.is_available() is False (torch {torch.__version__}"
                f"{', a CPU-only build' if torch.version.cuda is None else ''})"
            )
        if (device.index or 0) >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
    return device


class _Progress:
    """A check's live display: a line per property and dtype as it finishes.

    On a terminal the running property is shown on the line being written and replaced by its
    result; elsewhere (a log, CI) only finished lines are printed.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()

    def __call__(self, name: str, dtype: torch.dtype, result: PropertyResult | None) -> None:
        label = f"  {name:<26} {str(dtype).removeprefix('torch.'):<9}"
        if result is None:
            if self.live:
                self.stream.write(f"{label} running...\r")
                self.stream.flush()
            return
        detail = f"error/allowed {result.max_error_ratio:.3g}" if result.verdict == "pass" else ""
        line = f"{label} {result.verdict:<11} {result.examples:>4} examples {result.seconds:6.2f}s"
        clear_rest = "\x1b[K" if self.live else ""  # wipe what "running..." left on the line
        self.stream.write(f"{line}  {detail or result.note[:60]}".rstrip() + clear_rest + "\n")
        self.stream.flush()


def _add_deadline_option(check: argparse.ArgumentParser) -> None:
    check.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="fail property 'deadline' when one call of the encoder on one batch takes longer "
        "(timed twice before it counts; default: no limit)",
    )


def _deadline(args: argparse.Namespace) -> float | None:
    """`--deadline` checked: a positive finite number of seconds, or None."""
    seconds: float | None = args.deadline
    if seconds is not None and not (0 < seconds < float("inf")):
        raise UsageError(f"--deadline must be a positive number of seconds; got {seconds}")
    return seconds


def _write_reproducer(failure: PropertyError[Any], directory: Path) -> Path:
    """Write `failure`'s reproducer, runnable from any folder: the folders the checked code
    was imported from go first on its `sys.path`."""
    directory.mkdir(parents=True, exist_ok=True)
    dtype = failure.dtype.removeprefix("torch.")
    path = directory / f"{failure.property_name}_{dtype}.py"
    folders = [str(Path.cwd())]
    header = (
        f"import sys\nsys.path[:0] = {folders!r}  # where `lpim check` imported your code from\n"
    )
    source = failure.reproducer
    first, _, rest = source.partition("\n")  # keep the "# lpim ... reproducer" line first
    path.write_text(f"{first}\n{header}{rest}")
    return path


# -- lpim diagnose ------------------------------------------------------------------------------


def _diagnose(args: argparse.Namespace) -> int:
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
        message = str(error).splitlines()[0]
        message = re.sub(r"\blower (query_tokens|num_heads)\b", _as_flag, message)
        raise UsageError(message) from error
    print(diagnosis)
    return EXIT_OK if diagnosis.ok else EXIT_FAILED


def _as_flag(match: re.Match[str]) -> str:
    """`lower query_tokens` -> `lower --query-tokens`: the flag the user sets."""
    return "lower --" + match.group(1).replace("_", "-")


def _load_tensor(path: Path, what: str) -> torch.Tensor:
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
    args.dest = Path(args.raw_dest)
    source_path = Path(reference_encoder.__file__)
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
            f"# Vendored from lpim {lpim.__version__} (lpim/encoder.py) by `lpim vendor`.\n"
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
    print(f"wrote {dest} (lpim {lpim.__version__}); it imports and runs with torch alone")
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
    """Run a user's script under `lpim.sanitize(on_finding="collect")`; print the findings."""
    import runpy
    import traceback

    script: Path = args.script
    if not script.is_file():
        raise UsageError(f"no such script: {script}")
    argv, path = list(sys.argv), list(sys.path)
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.resolve().parent))  # as `python SCRIPT.py` does
    status = EXIT_OK
    try:
        with lpim.sanitize(on_finding="collect") as report:
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
    sys.stdout.flush()
    print(report.table())
    return EXIT_FAILED if report.findings else status
