"""Imports point down the floors of lpim, never up, never sideways into a private name, and
never in a circle.

The floors, from the bottom (`FLOORS` below; `DEVELOPERS.md` draws them): the vendorable `encoder`
(torch and the standard library only); the private base (`_errors`, `_lazy`, `_version`,
`_validation`, `_mistakes`); `batch`, `lane_set`, `tolerance`, `masks`; `strategies`; the property
registry `_properties`; `profiles`; `testing` with `zoo` beside it (neither imports the other;
the zoo imports no Hypothesis); `sanitizer`; the package root; `cli`, `pytest_plugin` and
`errors` on top, and `__main__`. The test reads every module's imports with `ast` (function-local
ones included: hiding an import in a function does not change which way it points) and names the
file and line of each arrow that breaks a rule. A module on no floor fails the test: a new
module is placed here, by whoever adds it, not by a catch-all.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lpim"

# Each floor lists the modules and packages on it, every one of lpim's by name: a module is on
# the floor that names it or names its package (`lpim.masks` holds `lpim.masks._convert`); the
# package root `lpim` names itself only. Two names on one floor are beside each other: neither
# may import the other.
FLOORS: list[tuple[str, ...]] = [
    ("lpim.encoder",),  # vendorable: imports torch and the standard library only
    ("lpim._errors", "lpim._lazy"),  # the error family; lazy re-exports: import nothing
    ("lpim._version", "lpim._validation", "lpim._mistakes"),  # _mistakes: masks and sanitizer
    ("lpim.batch",),
    ("lpim.lane_set",),
    ("lpim.tolerance",),
    ("lpim.masks",),
    ("lpim.strategies",),
    ("lpim._property_registry",),  # the property registry: read by testing and by the zoo
    ("lpim.profiles",),
    ("lpim.testing", "lpim.zoo"),
    ("lpim.sanitizer",),
    ("lpim",),  # the package root re-exports the floors below it
    ("lpim.cli", "lpim.pytest_plugin", "lpim.errors"),  # errors: the family gathered, one page
    ("lpim.__main__",),  # `python -m lpim` runs the CLI
]


# The packages whose internals (private modules) the doors may reach: `lpim.cli` and
# `lpim.pytest_plugin` are thin doors onto the checks' and the sanitizer's one engine (its
# options, targets, reproducers), and `benchmarks/` times those internals. Examples never do: a
# user copies them.
ENGINES = {"lpim.testing", "lpim.sanitizer"}
DOORS = {"lpim.cli", "lpim.pytest_plugin"}


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


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str, root: Path = ROOT) -> bool:
    """Whether `dotted` names a module or package of the repository at `root`."""
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def arrows(
    path: Path, source: str | None = None, root: Path = ROOT, type_checking: bool = False
) -> list[Arrow]:
    """Every import in `path` (or in `source`, read as if it were `path`), resolved; those under
    `if TYPE_CHECKING:` only when `type_checking` (they run for type checkers, not at import)."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    importer = module_name(path, root)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    file = str(path.relative_to(root))
    found: list[Arrow] = []

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.If) and _is_type_checking(child.test) and not type_checking:
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
                    if is_module(sub, root):
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


def placed(module: str) -> tuple[int, str] | None:
    """`(floor number, name on that floor)` of an lpim module, or None for a module no floor
    names. The root `lpim` places only itself: a new `lpim.something` is on no floor."""
    for number, names in enumerate(FLOORS):
        for name in names:
            if module == name or (name != "lpim" and module.startswith(name + ".")):
                return number, name
    return None


def floor_of(module: str) -> tuple[int, str]:
    """`(floor number, name on that floor)` of an lpim module; fails for a module on no floor."""
    found = placed(module)
    assert found is not None, f"{module} is on no floor: add it to FLOORS in {__file__}"
    return found


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
    # a private module is for its own package, and for the doors onto that package's engine
    parts = arrow.module.split(".")
    for i, part in enumerate(parts):
        if is_private(part):
            owner = ".".join(parts[:i])
            inside_owner = arrow.importer == owner or arrow.importer.startswith(owner + ".")
            door = owner in ENGINES and (
                arrow.importer in DOORS or arrow.importer.startswith("benchmarks.")
            )
            if not (inside_owner or door):
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


def unplaced(package: Path = PACKAGE) -> list[str]:
    """The modules under `package` that no floor names."""
    root = package.parent
    return [m for m in map(lambda p: module_name(p, root), package.rglob("*.py")) if not placed(m)]


def stale_floors(package: Path = PACKAGE) -> list[str]:
    """The names on `FLOORS` that are no module or package under `package`."""
    root = package.parent
    return [name for names in FLOORS for name in names if not is_module(name, root)]


def import_cycles(package: Path = PACKAGE) -> list[list[Arrow]]:
    """Every import circle among the modules under `package`, as the arrows that close it.

    Every import counts, at module level, in a function or under `if TYPE_CHECKING:`: a circle
    that only a deferred import keeps from failing is still two modules that each need the
    other. Importing `a.b.c` counts as an arrow to `a.b.c` only (not to its packages).
    """
    root = package.parent
    edges: dict[str, dict[str, Arrow]] = {}
    for path in sorted(package.rglob("*.py")):
        for arrow in arrows(path, root=root, type_checking=True):
            if arrow.module.split(".")[0] == package.name and arrow.module != arrow.importer:
                edges.setdefault(arrow.importer, {}).setdefault(arrow.module, arrow)
    # Tarjan's strongly connected components: each component of two or more is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return [
        [arrow for a in c for b, arrow in edges.get(a, {}).items() if b in c] for c in components
    ]


def test_every_lpim_module_is_on_a_floor() -> None:
    missing = unplaced()
    assert not missing, f"modules on no floor: {missing}; add each to FLOORS in {__file__}"


def test_every_floor_names_a_module_that_exists() -> None:
    stale = stale_floors()
    assert not stale, f"FLOORS names what is no module of lpim: {stale}"


def test_developers_md_draws_these_floors() -> None:
    """The drawing in DEVELOPERS.md ("The floors") names the floors of `FLOORS`, bottom last."""
    text = (ROOT / "DEVELOPERS.md").read_text()
    drawing = text.split("## The floors", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    drawn = [
        tuple(re.findall(r"(?<!\S)(lpim(?:\.\w+)*)(?=\s|$)", line)) for line in drawing.splitlines()
    ]
    assert [names for names in reversed(drawn) if names] == FLOORS


def test_imports_point_down_the_floors() -> None:
    found = [f"{arrow}: {problem}" for arrow, problem in violations()]
    assert not found, "imports that break the layering:\n" + "\n".join(found)


def test_no_import_circle() -> None:
    circles = ["\n".join(f"  {arrow}" for arrow in circle) for circle in import_cycles()]
    assert not circles, "import circles:\n" + "\n\n".join(circles)


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
    beside = arrows(PACKAGE / "testing" / "probe.py", "from lpim.zoo import BUGS\n")
    assert broken_rules(beside[0]) == ["points sideways: lpim.zoo is beside lpim.testing"]


def copy_of_lpim(tmp_path: Path) -> Path:
    """A copy of the package's sources under `tmp_path`, to inject violations into."""
    copy = tmp_path / "lpim"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.typed"))
    return copy


def test_a_module_on_no_floor_and_a_floor_on_no_module_fail(tmp_path: Path) -> None:
    """A new module is refused until placed (no catch-all floor; `lpim.masks2` is not inside
    `lpim.masks`), and a floor naming what does not exist is refused."""
    copy = copy_of_lpim(tmp_path)
    assert unplaced(copy) == [] and stale_floors(copy) == []
    (copy / "helpers.py").write_text('"""New."""\n')
    (copy / "masks2.py").write_text('"""New."""\n')
    (copy / "testing" / "new_part.py").write_text('"""Inside a placed package."""\n')
    assert sorted(unplaced(copy)) == ["lpim.helpers", "lpim.masks2"]
    shutil.rmtree(copy / "sanitizer")
    assert stale_floors(copy) == ["lpim.sanitizer"]


CIRCLE_CLOSERS = {
    "at import": "from lpim.masks import _errors\n",
    "in a function": "def later():\n    from lpim.masks._errors import describe_tensor\n",
    "for type checkers": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lpim.masks._errors import MaskConventionError\n"
    ),
}


@pytest.mark.parametrize("closer", CIRCLE_CLOSERS, ids=list(CIRCLE_CLOSERS))
def test_an_import_circle_is_found(tmp_path: Path, closer: str) -> None:
    """The circle issue 25 removed, put back: the registry importing the errors that quote it."""
    copy = copy_of_lpim(tmp_path)
    assert import_cycles(copy) == []
    conventions = copy / "masks" / "_conventions.py"
    conventions.write_text(conventions.read_text() + CIRCLE_CLOSERS[closer])
    (circle,) = import_cycles(copy)
    assert {(a.importer, a.module) for a in circle} == {
        ("lpim.masks._conventions", "lpim.masks._errors"),
        ("lpim.masks._errors", "lpim.masks._conventions"),
    }


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
