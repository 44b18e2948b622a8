"""Imports point down the floors of lpim, never up and never sideways into a private name.

The floors, from the bottom (DESIGN.md, "Layout"; issue 14): the vendorable `encoder` (torch and
the standard library only), then `batch`, `lane_set`, `tolerance`, `masks`, then `strategies`,
then `testing` with `zoo` beside it (neither imports the other; the zoo imports no Hypothesis),
then `sanitize`, the package root, and `cli` and `pytest_plugin` on top. The test reads every
module's imports with `ast` (function-local ones included: hiding an import in a function does
not change which way it points) and names the file and line of each arrow that breaks a rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lpim"

# Each floor lists the module prefixes on it; a module is on the floor of its longest prefix.
# Two prefixes on one floor are beside each other: neither may import the other.
FLOORS: list[tuple[str, ...]] = [
    ("lpim.encoder",),
    ("lpim._errors", "lpim._lazy"),  # the error family; lazy re-exports: import nothing
    ("lpim._version", "lpim._validation"),
    ("lpim.batch",),
    ("lpim.lane_set",),
    ("lpim.tolerance",),
    ("lpim.masks",),
    ("lpim.strategies",),
    ("lpim._properties",),  # the property registry: read by testing and by the zoo
    ("lpim.profiles",),
    ("lpim.testing", "lpim.zoo"),
    ("lpim.sanitize", "lpim._sanitize"),
    ("lpim",),  # the package root re-exports the floors below it
    ("lpim.cli", "lpim.pytest_plugin", "lpim.errors"),  # errors: the family gathered, one page
    ("lpim.__main__",),  # `python -m lpim` runs the CLI
]

# Arrows allowed to break a rule: none. Each entry is (file, imported name); the test fails on
# any arrow not listed here, and on an entry that no longer occurs (so a fixed one cannot return).
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Arrow:
    """One import: `source` (a file) imports `target` (a dotted module, or module.name)."""

    file: str
    line: int
    importer: str
    module: str  # the module imported from (a submodule when the name is one)
    name: str | None  # the name imported from it, if any
    deferred: bool  # inside a function: runs when called, not at import time

    @property
    def target(self) -> str:
        return f"{self.module}.{self.name}" if self.name else self.module

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    """Whether `dotted` names a module or package of this repository."""
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def arrows(path: Path, source: str | None = None) -> list[Arrow]:
    """Every import in `path` (or in `source`, read as if it were `path`), resolved."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    file = str(path.relative_to(ROOT))
    found: list[Arrow] = []

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # annotations only: nothing is imported when the code runs
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Arrow(file, child.lineno, importer, alias.name, None, inner))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    if is_module(sub):
                        found.append(Arrow(file, child.lineno, importer, sub, None, inner))
                    else:
                        found.append(Arrow(file, child.lineno, importer, base, alias.name, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def floor_of(module: str) -> tuple[int, str]:
    """`(floor number, prefix)` of an lpim module; fails for a module on no floor."""
    best: tuple[int, str] | None = None
    for number, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (number, prefix)
    assert best is not None, f"{module} is on no floor: add it to FLOORS in {__file__}"
    return best


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def broken_rules(arrow: Arrow) -> list[str]:
    """The rules `arrow` breaks, in words (empty if none)."""
    problems: list[str] = []
    top = arrow.module.split(".")[0]
    inside = arrow.importer == "lpim" or arrow.importer.startswith("lpim.")
    if arrow.importer == "lpim.encoder" and top not in sys.stdlib_module_names | {"torch"}:
        problems.append("lpim/encoder.py is vendorable: it imports torch and the standard library")
    if arrow.importer.startswith("lpim.zoo") and top == "hypothesis":
        problems.append("the zoo imports no Hypothesis")
    if top != "lpim":
        return problems
    if arrow.importer.startswith("lpim.zoo"):
        if arrow.module.startswith("lpim.testing"):
            problems.append("the zoo imports nothing from lpim.testing (it sits beside it)")
        if arrow.module.startswith("lpim.strategies") and not arrow.deferred:
            problems.append("the zoo loads lpim.strategies (Hypothesis) only when a check calls it")
    if arrow.module == "lpim.cli" and arrow.name != "main" and arrow.importer != "lpim.cli":
        # the CLI is run (its `main`), never used as a library: what others need lives lower
        problems.append("lpim.cli is the top floor: nothing imports from it but its main")
    # a private module is for its own package
    parts = arrow.module.split(".")
    for i, part in enumerate(parts):
        if is_private(part):
            owner = ".".join(parts[:i])
            if not (arrow.importer == owner or arrow.importer.startswith(owner + ".")):
                problems.append(f"{'.'.join(parts[: i + 1])} is private to {owner}")
            break
    # a private name is for its own module
    if arrow.name is not None and is_private(arrow.name) and arrow.module != arrow.importer:
        problems.append(f"{arrow.name} is private to {arrow.module}")
    if inside:
        here, here_prefix = floor_of(arrow.importer)
        there, there_prefix = floor_of(arrow.module)
        if there > here:
            problems.append(f"points up: {there_prefix} is above {here_prefix}")
        elif there == here and there_prefix != here_prefix:
            problems.append(f"points sideways: {there_prefix} is beside {here_prefix}")
    return problems


def source_files() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    for folder in ("benchmarks", "examples", "scripts"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def violations(files: list[Path] | None = None) -> list[tuple[Arrow, str]]:
    return [
        (arrow, problem)
        for path in files or source_files()
        for arrow in arrows(path)
        for problem in broken_rules(arrow)
    ]


def test_every_lpim_module_is_on_a_floor() -> None:
    for path in PACKAGE.rglob("*.py"):
        floor_of(module_name(path))


def test_imports_point_down_the_floors() -> None:
    found = violations()
    new = [f"{arrow}: {problem}" for arrow, problem in found if key(arrow) not in KNOWN_VIOLATIONS]
    assert not new, "imports that break the layering:\n" + "\n".join(new)


def test_known_violations_still_occur() -> None:
    """An entry fixed by the lead is removed from KNOWN_VIOLATIONS, so it cannot come back."""
    occurring = {key(arrow) for arrow, _ in violations()}
    assert KNOWN_VIOLATIONS <= occurring, KNOWN_VIOLATIONS - occurring


def key(arrow: Arrow) -> tuple[str, str]:
    return (arrow.file, arrow.target)


def test_the_checker_sees_an_upward_import_a_hidden_one_and_a_private_name() -> None:
    """The rules themselves, on source read as a module of lpim.masks (nothing is written)."""
    source = (
        "from lpim.testing import check_encoder\n"
        "def later():\n"
        "    from lpim.cli import main\n"
        "from lpim.strategies import _ints\n"
        "from lpim.masks._convert import keep_tokens\n"
    )
    probe = arrows(PACKAGE / "masks" / "_probe.py", source)
    problems = {(a.line, p) for a in probe for p in broken_rules(a)}
    assert (1, "points up: lpim.testing is above lpim.masks") in problems
    assert (3, "points up: lpim.cli is above lpim.masks") in problems
    assert (4, "_ints is private to lpim.strategies") in problems
    assert not [p for line, p in problems if line == 5]  # its own package's private module
    outside = arrows(PACKAGE / "zoo" / "probe.py", source)
    assert any(p.endswith("is private to lpim.masks") for a in outside for p in broken_rules(a))


def test_import_lpim_zoo_loads_neither_hypothesis_nor_strategies() -> None:
    code = (
        "import sys, lpim.zoo, lpim.zoo.consumers\n"
        "assert 'hypothesis' not in sys.modules, 'hypothesis'\n"
        "assert 'lpim.strategies' not in sys.modules, 'lpim.strategies'\n"
        "assert 'lpim.testing' not in sys.modules, 'lpim.testing'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("module", ["lpim", "lpim.masks", "lpim.batch", "lpim.tolerance"])
def test_the_core_loads_no_hypothesis(module: str) -> None:
    code = f"import sys, {module}\nassert 'hypothesis' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
