"""What lpim costs a pytest run and an `lpim` command before it does anything: imports and time.

Usage:
    python benchmarks/import_cost.py [--env LABEL=PYTHON ...] [--reps 5]

Each `--env` is a Python interpreter (a venv's `bin/python`), e.g. one with lpim installed and one
without (default: this interpreter, labelled `this`). For each, in a fresh temporary one-test
project, it runs, `--reps` times after one warm-up run:

- `pytest -q` on a test that never uses lpim (what lpim's plugin costs every project where it is
  installed: the `pytest11` entry point loads it in every run);
- `pytest -q` on a test that takes the `lpim_device` fixture (where lpim is installed: torch
  loads when lpim is used);
- `lpim --help`, `lpim check --help`, `lpim check --min-points 0` (an argument error) and
  `lpim conventions` (where lpim is installed; through the venv's `lpim` script).

Every run is under `python -X importtime` (pytest with `-s`: its output capture would swallow
what the tests import); the table has the median wall time, the import time
(the sum of the `self` column: every module imported, once), the modules imported, and whether
torch and Hypothesis were among them. Wall times include the interpreter's start and depend on
the machine and its load: compare rows of one run. Hypothesis' own pytest plugin imports
Hypothesis at the end of every run (its terminal summary), lpim or not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PLAIN_TEST = "def test_plain():\n    assert 1 + 1 == 2\n"
LPIM_TEST = "def test_device(lpim_device):\n    assert lpim_device.type == 'cpu'\n"


@dataclass
class Run:
    """One timed run: wall seconds, import seconds, modules imported (top-level names too)."""

    wall: float
    imports: float
    modules: list[str]
    status: int


def run_once(command: list[str], cwd: Path) -> Run:
    """Run `command` (starting with a Python interpreter) under `-X importtime`."""
    argv = [command[0], "-X", "importtime", *command[1:]]
    env = _clean_env()
    began = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    self_us = 0
    modules = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        fields = line.removeprefix("import time:").split("|")
        self_us += int(fields[0])
        modules.append(fields[2].strip())
    return Run(wall, self_us / 1e6, modules, result.returncode)


def measure(command: list[str], cwd: Path, reps: int) -> tuple[Run, float]:
    """The median run (by wall time) of `reps` after a warm-up, and the median wall time."""
    run_once(command, cwd)
    runs = sorted((run_once(command, cwd) for _ in range(reps)), key=lambda r: r.wall)
    return runs[len(runs) // 2], statistics.median(r.wall for r in runs)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}


def has_lpim(python: str, cwd: Path) -> bool:
    """Whether `python` has lpim installed (asked from `cwd`, not from a checkout)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('lpim') is None)"
    result = subprocess.run([python, "-c", probe], cwd=cwd, env=_clean_env(), check=False)
    return result.returncode == 0


def rows_for(label: str, python: str, reps: int) -> list[list[str]]:
    """The table's rows for one interpreter."""
    script = Path(python).parent / "lpim"
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        installed = has_lpim(python, project)
        (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = ''\n")
        cases: list[tuple[str, list[str], str]] = [
            (
                "pytest, one test not using lpim",
                [python, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_plain.py"],
                "",
            ),
        ]
        if installed:
            cases.append(
                (
                    "pytest, one test using lpim_device",
                    [python, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_lpim.py"],
                    "",
                )
            )
            for args in (
                ["--help"],
                ["check", "--help"],
                ["check", "--min-points", "0"],
                ["conventions"],
            ):
                cases.append((f"lpim {' '.join(args)}", [python, str(script), *args], ""))
        (project / "test_plain.py").write_text(PLAIN_TEST)
        (project / "test_lpim.py").write_text(LPIM_TEST)
        for what, command, _ in cases:
            run, wall = measure(command, project, reps)
            expected = 2 if "--min-points" in command else 0
            if run.status != expected:
                what += f" (exit {run.status}!)"
            tops = {m.split(".")[0] for m in run.modules}
            rows.append(
                [
                    label,
                    "yes" if installed else "no",
                    what,
                    f"{wall:.2f}",
                    f"{run.imports:.2f}",
                    str(len(run.modules)),
                    str(sum(m.split(".")[0] == "lpim" for m in run.modules)),
                    "yes" if "torch" in tops else "no",
                    "yes" if "hypothesis" in tops else "no",
                ]
            )
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--env",
        action="append",
        metavar="LABEL=PYTHON",
        help="an interpreter to measure (repeatable; default this one, as 'this')",
    )
    parser.add_argument("--reps", type=int, default=5, help="timed runs per row (default 5)")
    args = parser.parse_args()
    envs = [e.partition("=")[::2] for e in args.env or [f"this={sys.executable}"]]
    rows = [row for label, python in envs for row in rows_for(label, python, args.reps)]
    header = [
        "env",
        "lpim",
        "what runs",
        "wall s",
        "imports s",
        "modules",
        "lpim mods",
        "torch",
        "hypothesis",
    ]
    print(
        f"median of {args.reps} runs after a warm-up; {os.cpu_count()} CPUs; "
        f"python {sys.version.split()[0]}"
    )
    print(table(header, rows))


if __name__ == "__main__":
    main()
