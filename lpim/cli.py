"""The ``lpim`` command.

Subcommands:
    ``lpim check [MODULE:FACTORY]``  every property on an encoder (default: the reference encoder)
    ``lpim diagnose MASK.pt --point-mask POINT_MASK.pt``  name the convention or mistake of a mask
    ``lpim conventions``  the mask conventions table (name, shape, dtype, meaning, used by, call)
    ``lpim vendor DEST``  copy the reference encoder into your tree, checked to import on its own
    ``lpim sanitize SCRIPT.py [ARGS]``  run a script with the masks reaching attention checked

Exit status: 0 success, 1 a check failed, 2 a usage error (bad argument, file exists, ...).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import torch
from hypothesis import settings as Settings

import lpim
from lpim import encoder as reference_encoder
from lpim.masks import CONVENTIONS, diagnose
from lpim.profiles import PROFILES, register_profiles
from lpim.testing import (
    CHECKED_PROPERTIES,
    DEFAULT_SETTINGS,
    EncoderPropertyError,
    PropertyResult,
    check_encoder,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in how ``lpim`` was called: reported in one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lpim`` command with ``argv`` (default ``sys.argv[1:]``); return its exit status."""
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
        description="Exit status: 0 every property holds, 1 a property failed, 2 usage error.",
    )
    check.add_argument(
        "target",
        nargs="?",
        default=DEFAULT_TARGET,
        help="MODULE:FACTORY, where FACTORY (evaluated in MODULE) is an encoder or a callable "
        f"returning one (default {DEFAULT_TARGET})",
    )
    check.add_argument(
        "--dtype",
        action="append",
        choices=sorted(DTYPES),
        help="check this dtype (repeat for several; default all four)",
    )
    check.add_argument(
        "--property",
        action="append",
        dest="properties",
        choices=list(CHECKED_PROPERTIES),
        help="check only this property (repeatable)",
    )
    check.add_argument("--point-dim", type=int, help="coordinates per point, if not encoder.in_dim")
    check.add_argument(
        "--device", default="cpu", help="device to run on: cpu, cuda or cuda:N (default cpu)"
    )
    check.add_argument(
        "--profile",
        help=f"Hypothesis settings profile ({', '.join(PROFILES)}, or one you registered); "
        "default: lpim check's own (15 examples a property)",
    )
    check.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="Hypothesis examples per property (overrides the profile's)",
    )
    check.add_argument(
        "--reproducer-dir",
        type=Path,
        default=Path("lpim-reproducers"),
        help="where a failure's reproducer is written (default ./lpim-reproducers)",
    )
    _add_deadline_option(check)
    check.set_defaults(run=_check)

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
        "--query-tokens", type=int, default=0, help="tokens prepended to each lane (default 0)"
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
    vendor.add_argument("dest", type=Path, help="a directory, or the .py file to write")
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
DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def load_target(target: str) -> object:
    """Import ``MODULE:FACTORY`` and return the encoder it names (calling a factory or class).

    Raises:
        UsageError: a malformed target, an import error, or a factory that fails.
    """
    module_name, colon, expression = target.partition(":")
    if not colon or not module_name or not expression:
        raise UsageError(f"target must be MODULE:FACTORY (e.g. {DEFAULT_TARGET}); got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure is the user's to fix, in one line
        raise UsageError(
            f"cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    try:
        found = eval(expression, vars(module))  # an attribute path or a small expression
        if callable(found) and not isinstance(found, torch.nn.Module):
            found = found()
    except Exception as error:
        raise UsageError(
            f"cannot build the encoder from {target!r}: {type(error).__name__}: {error}"
        ) from error
    if not callable(found):
        raise UsageError(f"{target!r} gave a {type(found).__name__}, not a callable encoder")
    return found


def _check(args: argparse.Namespace) -> int:
    encoder = load_target(args.target)
    if isinstance(encoder, torch.nn.Module):
        encoder.eval()
    settings = _settings(args.profile, args.max_examples)
    device = _device(args.device)
    dtypes = [DTYPES[name] for name in args.dtype] if args.dtype else None
    live = _Progress(sys.stdout)
    try:
        report = check_encoder(
            encoder,  # type: ignore[arg-type]
            point_dim=args.point_dim,
            dtype=dtypes,
            device=device,
            settings=settings,
            properties=args.properties,
            factory=args.target,
            progress=live,
            deadline=_deadline(args),
        )
    except EncoderPropertyError as failure:
        path = _write_reproducer(failure, args.reproducer_dir)
        print()
        print(getattr(failure, "report", ""))
        print(f"\n{failure}")
        print(f"\nreproducer written to {path}")
        return EXIT_FAILED
    except ValueError as error:  # point_dim unknown, ...
        raise UsageError(str(error)) from error
    print()
    print(report)
    return EXIT_OK


def _settings(profile: str | None, max_examples: int | None) -> Settings:
    settings = DEFAULT_SETTINGS
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
    """``lpim check``'s live display: a line per property and dtype as it finishes.

    On a terminal the running property is shown on the line being written and replaced by its
    result; elsewhere (a log, CI) only finished lines are printed.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()

    def __call__(self, name: str, dtype: torch.dtype, result: PropertyResult | None) -> None:
        label = f"  {name:<20} {str(dtype).removeprefix('torch.'):<9}"
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
    """``--deadline`` checked: a positive finite number of seconds, or None."""
    seconds: float | None = args.deadline
    if seconds is not None and not (0 < seconds < float("inf")):
        raise UsageError(f"--deadline must be a positive number of seconds; got {seconds}")
    return seconds


def _write_reproducer(failure: EncoderPropertyError, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dtype = failure.dtype.removeprefix("torch.")
    path = directory / f"{failure.property_name}_{dtype}.py"
    path.write_text(failure.reproducer)
    return path


# -- lpim diagnose ------------------------------------------------------------------------------


def _diagnose(args: argparse.Namespace) -> int:
    mask = _load_tensor(args.mask, "MASK")
    point_mask = _load_tensor(args.point_mask, "--point-mask")
    if args.num_heads is not None and args.num_heads < 1:
        raise UsageError(f"--num-heads must be at least 1; got {args.num_heads}")
    if args.query_tokens < 0:
        raise UsageError(f"--query-tokens must be at least 0; got {args.query_tokens}")
    try:
        diagnosis = diagnose(
            mask, point_mask, num_heads=args.num_heads, query_tokens=args.query_tokens
        )
    except ValueError as error:  # point_mask itself malformed: a usage problem, said in one line
        raise UsageError(str(error).splitlines()[0]) from error
    print(diagnosis)
    return EXIT_OK if diagnosis.ok else EXIT_FAILED


def _load_tensor(path: Path, what: str) -> torch.Tensor:
    if not path.is_file():
        raise UsageError(f"{what}: no such file {str(path)!r}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, or pickled objects beyond tensors
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
    return loaded


# -- lpim conventions ----------------------------------------------------------------------------


def _conventions(args: argparse.Namespace) -> int:
    header = ["convention", "shape", "dtype", "True / value means", "used by", "lpim call"]
    rows = [
        [c.name, c.shape, c.dtype, c.meaning, c.used_by, c.converter] for c in CONVENTIONS.values()
    ]
    print(format_table(header, rows, markdown=args.format == "markdown"))
    if args.format == "text":
        print(
            "\nB samples, M lanes, N point slots, H heads; S = L = query_tokens + N tokens a lane."
            "\nlpim's point_mask: True = real point. MHA: True = ignore. SDPA: True = attend."
        )
    return EXIT_OK


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False
) -> str:
    """A plain-text (or Markdown) table with columns padded to their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)]
        return f"| {' | '.join(padded)} |" if markdown else "  ".join(padded).rstrip()

    rule = (
        f"|{'|'.join('-' * (width + 2) for width in widths)}|"
        if markdown
        else "  ".join("-" * width for width in widths)
    )
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


# -- lpim vendor ---------------------------------------------------------------------------------


def _vendor(args: argparse.Namespace) -> int:
    source_path = Path(reference_encoder.__file__)
    dest: Path = args.dest / "encoder.py" if args.dest.is_dir() else args.dest
    if dest.suffix != ".py":
        raise UsageError(f"DEST must be a directory or a .py file; got {str(args.dest)!r}")
    if not dest.parent.is_dir():
        raise UsageError(f"directory {str(dest.parent)!r} does not exist")
    if dest.exists() and not args.force:
        raise UsageError(f"{str(dest)!r} exists; pass --force to overwrite it")
    source = source_path.read_text()
    foreign = _non_torch_imports(source)
    if foreign:  # the file is meant to need torch alone; refuse to hand out one that does not
        print(f"lpim vendor: encoder.py imports {sorted(foreign)}: not vendorable", file=sys.stderr)
        return EXIT_FAILED
    header = (
        f"# Vendored from lpim {lpim.__version__} (lpim/encoder.py) by `lpim vendor`.\n"
        "# Needs only torch and the standard library.\n"
    )
    dest.write_text(header + source)
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
    """Top-level packages ``source`` imports beyond torch and the standard library."""
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
    """Import ``path`` in a fresh interpreter where lpim cannot be imported; '' if it works."""
    result = subprocess.run(
        [sys.executable, "-c", _SMOKE_TEST, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if result.returncode == 0 else result.stderr.strip()[-2000:]


# -- lpim sanitize -------------------------------------------------------------------------------


def _sanitize(args: argparse.Namespace) -> int:
    """Run a user's script under ``lpim.sanitize(on_finding="collect")``; print the findings."""
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
