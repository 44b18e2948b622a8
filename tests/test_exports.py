"""Every public module declares its surface: `__all__` lists exactly its public names, each one
documented.

Modelled on Hypothesis' `_check_exports` (`hypothesis/strategies/__init__.py`), which asserts
`set(__all__) == {n for n in dir() if n[0] not in "_@"}`. lpim's modules also import helpers
they do not export, so the public names are read from the source with `ast`: what a module
defines at top level without a leading underscore, and, in a package's `__init__.py`, what it
imports (a package re-exports). Internals live in `_`-prefixed modules or names.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lpim"

# Public modules that do not declare their surface yet, in files others are rewriting
# (issue 14, item 2): remove an entry when the module gets its `__all__`.
KNOWN_UNDECLARED: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def public_modules() -> list[str]:
    names = (module_name(p) for p in sorted(PACKAGE.rglob("*.py")))
    return [n for n in names if not any(part.startswith("_") for part in n.split("."))]


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def top_level(tree: ast.Module, type_checking: bool = False) -> list[ast.stmt]:
    """Top-level statements, with `if`/`try` bodies flattened (`if TYPE_CHECKING:` only when
    `type_checking`: a lazy package's re-exports)."""
    out: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                out += [*node.body, *node.orelse]
            elif type_checking:
                out += node.body
        elif isinstance(node, ast.Try):
            out += [*node.body, *node.orelse, *node.finalbody]
        else:
            out.append(node)
    return out


def defined_and_imported(path: Path) -> tuple[set[str], set[str]]:
    """Names a module binds at top level: `(defined here, imported)`; public ones only."""
    defined: set[str] = set()
    imported: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in top_level(tree, type_checking=is_lazy(tree)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                defined |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            for alias in node.names:
                if alias.name != "TYPE_CHECKING":  # a flag for type checkers, not a re-export
                    imported.add((alias.asname or alias.name).split(".")[0])
    public = {n for n in defined | imported if not n.startswith("_")}
    return defined & public, imported & public


def is_lazy(tree: ast.Module) -> bool:
    """A package that re-exports lazily (PEP 562, `lpim._lazy`): it binds `__getattr__`, and
    imports its public names under `if TYPE_CHECKING:` for type checkers and the docs."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            return True
        if isinstance(node, ast.Assign):
            names = {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if "__getattr__" in names:
                return True
    return False


def lazy_imports(path: Path) -> dict[str, str]:
    """A lazy package's `if TYPE_CHECKING:` imports: public name -> the module it names."""
    found: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    for alias in inner.names:
                        found[alias.asname or alias.name] = inner.module
    return found


def source_of(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def attribute_docstrings(module: object) -> dict[str, str]:
    """`NAME = value` followed by a string literal: the docstring mkdocstrings shows for it."""
    path = Path(inspect.getfile(module))  # type: ignore[arg-type]
    body = top_level(ast.parse(path.read_text()))
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    docs[target.id] = after.value.value
    return docs


def documented(module: object, name: str) -> bool:
    """Whether `module.name` has a docstring of its own (a class's, not one it inherits)."""
    value = getattr(module, name)
    if inspect.ismodule(value):
        return bool(value.__doc__)
    if inspect.isclass(value):
        return bool(value.__dict__.get("__doc__"))
    if inspect.isfunction(value) or inspect.isbuiltin(value) or hasattr(value, "__wrapped__"):
        return bool(value.__doc__)  # a decorated function (a pytest fixture) keeps its own
    # data: the string literal after its assignment, where it is defined
    owners = [module]
    for found in (importlib.import_module(m) for m in public_and_private_modules()):
        if name in vars(found) and vars(found)[name] is value:
            owners.append(found)
    return any(name in attribute_docstrings(owner) for owner in owners)


def public_and_private_modules() -> list[str]:
    return [module_name(p) for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__main__.py"]


def surface_problems(module_name_: str) -> list[str]:
    module = importlib.import_module(module_name_)
    path = source_of(module_name_)
    declared = getattr(module, "__all__", None)
    if declared is None:
        return [f"{module_name_} has no __all__"]
    defined, imported = defined_and_imported(path)
    package = path.name == "__init__.py"
    public = defined | imported if package else defined
    problems = []
    missing = public - set(declared)
    dunders = {n for n in declared if n.startswith("__") and hasattr(module, n)}
    extra = set(declared) - public - dunders - (imported if not package else set())
    if missing:
        problems.append(f"{module_name_}: public but not in __all__: {sorted(missing)}")
    if extra:
        problems.append(f"{module_name_}: in __all__ but not bound there: {sorted(extra)}")
    if len(set(declared)) != len(declared):
        problems.append(f"{module_name_}: __all__ lists a name twice")
    unreachable = [n for n in declared if not hasattr(module, n)]
    if unreachable:
        problems.append(f"{module_name_}: in __all__ but not there at run time: {unreachable}")
    undocumented = [
        n
        for n in declared
        if n != "__version__" and hasattr(module, n) and not documented(module, n)
    ]
    if undocumented:
        problems.append(f"{module_name_}: no docstring for {undocumented}")
    return problems


@pytest.mark.parametrize("module", public_modules())
def test_public_module_declares_its_surface(module: str) -> None:
    problems = surface_problems(module)
    if module in KNOWN_UNDECLARED:
        assert problems, f"{module} is fine now: remove it from KNOWN_UNDECLARED"
        pytest.xfail(f"known, for the lead: {problems}")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_an_undeclared_public_name(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        '"""A probe."""\n__all__ = ["declared"]\n'
        'def declared():\n    """Documented."""\n'
        "def undeclared():\n    pass\n"
    )
    defined, _ = defined_and_imported(module)
    assert defined - {"declared"} == {"undeclared"}


LAZY_PACKAGES = ["lpim", "lpim.testing"]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_a_lazy_package_gives_at_run_time_what_it_declares_for_type_checkers(package: str) -> None:
    """The `if TYPE_CHECKING:` imports (what mypy and the API docs read) and the lazy table
    (what runs) name the same objects, and `dir()` lists `__all__`."""
    path = source_of(package)
    assert is_lazy(ast.parse(path.read_text())), f"{package} is no longer lazy"
    module = importlib.import_module(package)
    declared = lazy_imports(path)
    assert set(declared) | {"__version__"} >= set(module.__all__) - {"__version__"}
    for name, where in declared.items():
        source = importlib.import_module(where)
        expected = getattr(source, name, None)
        if expected is None:  # `from lpim import masks`: a submodule
            expected = importlib.import_module(f"{where}.{name}")
        assert getattr(module, name) is expected, (package, name)
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_importing_a_lazy_package_imports_no_torch(package: str) -> None:
    import subprocess
    import sys

    code = (
        f"import sys, {package}\n"
        "loaded = [m for m in ('torch', 'hypothesis', 'numpy') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- the public surface is the documented surface ----------------------------------------------

API_PAGES = ROOT / "docs" / "reference"
# Modules that are a command or a plugin rather than a Python API: their page documents what
# users run (`lpim ...`), not the names inside.
COMMAND_PAGES = {"lpim.cli": API_PAGES / "cli.md"}
_DIRECTIVE = re.compile(r"^::: ([\w.]+)\n((?:[ \t]+.*\n)*)", re.MULTILINE)


def rendered_on_pages(pages: Path = API_PAGES) -> dict[str, set[str] | None]:
    """What the API pages render: each `::: target` with the members it lists (None: every
    public member; an empty set: `members: false`, the heading and docstring only)."""
    rendered: dict[str, set[str] | None] = {}
    for page in sorted(pages.rglob("*.md")):
        for target, options in _DIRECTIVE.findall(page.read_text()):
            listed = re.search(r"members:\s*(\[[^\]]*\]|false|true)", options)
            if listed is None or listed.group(1) == "true":
                members: set[str] | None = None
            elif listed.group(1) == "false":
                members = set()
            else:
                members = {m.strip() for m in listed.group(1).strip("[]").split(",") if m.strip()}
            known = rendered.get(target, set())
            rendered[target] = None if members is None or known is None else known | members
    return rendered


def undocumented_names(module: str, rendered: dict[str, set[str] | None]) -> list[str]:
    """The names of `module`'s `__all__` that no API page renders, under any public path (the
    module itself, or a package that re-exports the same object)."""
    if module in COMMAND_PAGES:
        return [] if COMMAND_PAGES[module].is_file() else [f"(no page {COMMAND_PAGES[module]})"]
    mod = importlib.import_module(module)
    holders = {t: m for t in rendered if (m := _module_or_none(t)) is not None}
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.ismodule(obj) or (name.startswith("__") and name.endswith("__")):
            continue  # a submodule (it has its own entry), or `__version__` (every page's footer)
        if module == "lpim.pytest_plugin" and name.startswith("pytest_"):
            continue  # a hook implementation: pytest calls it, users never do
        shown = f"{module}.{name}" in rendered or any(
            getattr(holder, name, None) is obj
            and ((listed := rendered[t]) is None or name in listed)
            for t, holder in holders.items()
        )
        if not shown:
            missing.append(name)
    return missing


def _module_or_none(target: str) -> object | None:
    """The module a `::: target` names, or None when it names an object inside one."""
    try:
        return importlib.import_module(target)
    except ImportError:
        return None


def test_every_public_module_is_documented_on_an_api_page() -> None:
    rendered = rendered_on_pages()
    gaps = {m: names for m in public_modules() if (names := undocumented_names(m, rendered))}
    assert not gaps, (
        "public names no API page renders (add them to a page under docs/reference, or make "
        f"the module private): {gaps}"
    )


def test_every_api_page_renders_a_public_path() -> None:
    private = [t for t in rendered_on_pages() if any(p.startswith("_") for p in t.split("."))]
    assert not private, f"API pages rendering private paths: {private}"


def test_the_page_check_sees_an_undocumented_module(tmp_path: Path) -> None:
    page = tmp_path / "api.md"
    page.write_text("# x\n\n::: lpim\n    options:\n      members: [LaneBatch]\n")
    rendered = rendered_on_pages(tmp_path)
    assert rendered == {"lpim": {"LaneBatch"}}
    assert undocumented_names("lpim.lane_set", rendered) == ["LaneSet"]
    assert undocumented_names("lpim.batch", rendered) == ["LAYOUTS", "Layout"]
