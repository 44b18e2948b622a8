"""Rewrite reST docstrings into the Markdown that mkdocstrings (Google style) renders as written.

    mkdocs build                                          # writes site/objects.inv, the targets
    python scripts/convert_docstrings.py lpim             # rewrite every docstring under lpim/
    python scripts/convert_docstrings.py --check lpim     # list what would change, exit 1 if any

What it rewrites, in module, class, function and attribute docstrings (code is never touched):

- reST roles (``:func:``, ``:class:``, ``:mod:``, ``:data:``, ``:meth:``, ``:attr:``, ``:exc:``,
  ``:obj:``) become mkdocstrings cross-references, ``[`name`][lpim.full.path]``, where the target
  is rendered on the site (it is in ``--inventory``, the built site's ``objects.inv``), else
  ``` `name` ``` in backticks. ``~`` shows the last component, as in Sphinx.
- ``::`` literal blocks become fenced code (```` ```python ```` when the block parses as Python,
  ```` ```bash ```` for a shell command, ```` ```text ```` otherwise); ``Example::`` keeps one
  colon, a lone ``::`` is dropped.
- ``>>>`` examples (prompts, continuation lines and their output) become fenced ```` ```python ````
  blocks, prompts kept, so doctest still finds them.
- reST simple tables (``=====  =====`` borders) become Markdown tables; a row whose first cell is
  empty continues the row above.

Each docstring's lines are rewritten in place in the source, so quotes, prefixes and escapes stay
as they were. ``tests/test_docstrings.py`` is the check that nothing reST is left.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROLE = re.compile(r":(?:py:)?(func|class|mod|data|meth|attr|exc|obj):`([^`]+)`")
TABLE_BORDER = re.compile(r"^(\s*)={2,}(?:\s+={2,})+\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
SHELL = re.compile(r"^\s*(\$ |pip |pytest|python -m |lpim |mkdocs |bash |git )")


def read_inventory(path: Path) -> dict[str, int]:
    """``{identifier: priority}`` of a Sphinx v2 ``objects.inv`` (what mkdocstrings rendered)."""
    data = path.read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    names: dict[str, int] = {}
    for line in zlib.decompress(data[header_end:]).decode().splitlines():
        match = re.match(r"(\S+)\s+(\S+)\s+(-?\d+)\s", line)
        if match and match.group(2).startswith("py:"):
            names[match.group(1)] = int(match.group(3))
    return names


def _lookup(path: str) -> Any:
    """The object a dotted path names (modules imported as needed), or ``None``."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except Exception:
            continue
        try:
            for part in parts[split:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


class Resolver:
    """Role target -> the identifier mkdocstrings rendered, looked up in the site's inventory."""

    def __init__(self, inventory: dict[str, int]) -> None:
        self.inventory = inventory
        self._by_object: dict[int, list[str]] | None = None

    def _objects(self) -> dict[int, list[str]]:
        if self._by_object is None:
            self._by_object = {}
            for name in self.inventory:
                obj = _lookup(name)
                if obj is not None and not isinstance(obj, (int, float, str, bool, type(None))):
                    self._by_object.setdefault(id(obj), []).append(name)
        return self._by_object

    def _best(self, names: list[str]) -> str:
        return min(names, key=lambda n: (self.inventory[n], len(n), n))

    def resolve(self, target: str, module: str, scope: str | None) -> str | None:
        target = target.lstrip(".")
        candidates = []
        if scope:
            parts = scope.split(".")
            for depth in range(len(parts), 0, -1):
                candidates.append(f"{module}.{'.'.join(parts[:depth])}.{target}")
        candidates += [f"{module}.{target}", target]
        package = module.split(".")[0]
        if not target.startswith(package + "."):
            candidates.append(f"{package}.{target}")
        for name in candidates:
            if name in self.inventory:
                return name
        for name in candidates:
            obj = _lookup(name)
            if obj is not None:
                same = self._objects().get(id(obj))
                if same:
                    return self._best(same)
        return None


def convert_roles(
    line: str, resolve: Callable[[str], str | None], unresolved: list[str] | None = None
) -> str:
    def one(match: re.Match[str]) -> str:
        text = match.group(2).strip()
        titled = re.fullmatch(r"(.*?)\s*<(.+)>", text)
        title, target = (titled.group(1), titled.group(2)) if titled else (None, text)
        short = target.startswith("~")
        target = target.lstrip("~!")
        shown = title or (target.rsplit(".", 1)[-1] if short else target.lstrip("."))
        if match.group(1) in ("func", "meth") and not title and not shown.endswith(")"):
            shown = shown  # Sphinx would add "()"; the pages show the bare name
        full = resolve(target)
        if full is None:
            if unresolved is not None:
                unresolved.append(target)
            return f"`{shown}`"
        return f"[`{shown}`][{full}]"

    return ROLE.sub(one, line)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _language(block: list[str]) -> str:
    code = textwrap.dedent("\n".join(block))
    if code.strip() and all(SHELL.match(x) or not x.strip() for x in code.splitlines()):
        return "bash"
    try:
        ast.parse(code)
    except SyntaxError:
        return "text"
    return "python"


def _fenced(indent: str, language: str, block: list[str]) -> list[str]:
    body = textwrap.dedent("\n".join(block)).splitlines()
    return [f"{indent}```{language}", *[(indent + x).rstrip() for x in body], f"{indent}```"]


def _blank_around(out: list[str], new: list[str]) -> None:
    """Append ``new`` after a blank line, except as the content of a Google section header
    (``Example:`` with ``new`` indented below it)."""
    header = out and re.fullmatch(r"\s*[A-Z]\w*( \w+)?:", out[-1])
    if header and new and _indent(new[0]) > _indent(out[-1]):
        out.extend(new)
        return
    if out and out[-1].strip():
        out.append("")
    out.extend(new)


def _rows(lines: list[str], starts: list[int]) -> list[list[str]]:
    """The cells of a reST simple table's rows; a row with an empty first cell continues."""
    found: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        padded = line.ljust(starts[-1] + 1)
        ends = [*starts[1:], None]
        cells = [padded[s:e].strip() for s, e in zip(starts, ends, strict=True)]
        if found and not cells[0]:
            for k, cell in enumerate(cells):
                if cell:
                    found[-1][k] = (found[-1][k] + " " + cell).strip()
        else:
            found.append(cells)
    return found


def _row(indent: str, cells: list[str]) -> str:
    return indent + "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def convert_tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = TABLE_BORDER.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        starts = [m.start() for m in re.finditer(r"=+", border)]
        borders = [i]
        j = i + 1
        while j < len(lines) and len(borders) < 3:
            if lines[j].strip() == "" and len(borders) >= 2:
                break
            if TABLE_BORDER.match(lines[j]) and lines[j].strip() == border.strip():
                borders.append(j)
            j += 1
        if len(borders) < 2:
            out.append(lines[i])
            i += 1
            continue

        if len(borders) == 3:
            header = _rows(lines[borders[0] + 1 : borders[1]], starts)
            body = _rows(lines[borders[1] + 1 : borders[2]], starts)
        else:
            body = _rows(lines[borders[0] + 1 : borders[1]], starts)
            header, body = body[:1], body[1:]
        indent = match.group(1)

        table = [_row(indent, header[0] if header else [""] * len(starts))]
        table.append(indent + "|" + "|".join("---" for _ in starts) + "|")
        table += [_row(indent, cells) for cells in body]
        _blank_around(out, table)
        i = borders[-1] + 1
        if i < len(lines) and lines[i].strip():
            out.append("")
    return out


def convert_literal_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    fenced = False
    while i < len(lines):
        line = lines[i]
        if FENCE.match(line):
            fenced = not fenced
        if fenced or not line.rstrip().endswith("::") or line.rstrip().endswith(":::"):
            out.append(line)
            i += 1
            continue
        base = _indent(line)
        text = line.rstrip()[:-2].rstrip()
        if text.strip():
            out.append(text + (":" if not text.endswith(" ") and line.rstrip()[-3] != " " else ""))
        j = i + 1
        block: list[str] = []
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
            j -= 1
        while block and not block[0].strip():
            block.pop(0)
        if not block:
            i += 1
            continue
        _blank_around(out, _fenced(" " * base, _language(block), block))
        i = j
        if i < len(lines) and lines[i].strip():
            out.append("")
    return out


def convert_doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    fenced = False
    while i < len(lines):
        line = lines[i]
        if FENCE.match(line):
            fenced = not fenced
        if fenced or not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        base = _indent(line)
        j = i
        while j < len(lines) and lines[j].strip() and _indent(lines[j]) >= base:
            j += 1
        _blank_around(out, _fenced(" " * base, "python", lines[i:j]))
        i = j
    return out


LINE_LENGTH = 100
ENTRY = re.compile(r"^\s*[*\w]+(?: \([^)]*\))?: \S")  # a Google section entry: "name (type): ..."


def _break_at(line: str, limit: int) -> int | None:
    """The last space before ``limit`` that is outside code spans and link brackets."""
    best = None
    ticks = depth = 0
    for k, char in enumerate(line[:limit]):
        if char == "`":
            ticks += 1
        elif char == "[" and ticks % 2 == 0:
            depth += 1
        elif char == "]" and ticks % 2 == 0:
            depth = max(0, depth - 1)
        elif char == " " and ticks % 2 == 0 and depth == 0 and line[:k].strip():
            best = k
    return best


def wrap_long_lines(lines: list[str], first_limit: int, last_limit: int = LINE_LENGTH) -> list[str]:
    """Break prose lines that grew past the line length (Markdown joins them again)."""
    out: list[str] = []
    fenced = False
    for number, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        limit = first_limit if number == 0 else LINE_LENGTH
        if number == len(lines) - 1:
            limit = min(limit, last_limit)
        if fenced or line.lstrip().startswith(("|", "#", ">>>")):
            out.append(line)
            continue
        extra = "    " if ENTRY.match(line) or line.lstrip().startswith(("- ", "* ")) else ""
        indent = " " * _indent(line) + extra
        while len(line) > limit:
            at = _break_at(line, limit + 1)
            if at is None or at <= len(indent):
                break
            out.append(line[:at].rstrip())
            line = indent + line[at + 1 :].lstrip()
            limit = LINE_LENGTH
        out.append(line)
    return out


DOUBLE_TICKS = re.compile(r"``([^`]+)``")


def convert_docstring(
    text: str,
    resolve: Callable[[str], str | None],
    unresolved: list[str] | None = None,
    *,
    column: int = 0,
    quote_column: int = 0,
) -> str:
    """One docstring's source text (between the quotes) rewritten; indentation kept.

    ``column`` is where the text starts in the source line (after the quotes), ``quote_column``
    where the quotes start: the indentation of a one-line docstring that has to wrap.
    """
    lines = text.split("\n")
    rest = [x for x in lines[1:] if x.strip()]
    indent = min((_indent(x) for x in rest), default=quote_column)
    lines[0] = " " * indent + lines[0]  # the first line sits after the quotes: align it
    lines = convert_tables(lines)
    lines = convert_literal_blocks(lines)
    lines = convert_doctests(lines)
    fenced = False
    for k, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines[k] = DOUBLE_TICKS.sub(r"`\1`", convert_roles(line, resolve, unresolved))
    quote = 3  # the closing quotes share the last line
    first_limit = LINE_LENGTH - column + indent - (quote if len(lines) == 1 else 0)
    lines = wrap_long_lines(lines, first_limit=first_limit, last_limit=LINE_LENGTH - quote)
    lines[0] = lines[0][indent:]
    return "\n".join(lines)


def _module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    while parts and not (Path(*parts[:1]) / "__init__.py").is_file() and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def convert_source(
    source: str,
    module: str,
    resolver: Resolver | None,
    unresolved: list[str] | None = None,
) -> str:
    """``source`` with every docstring converted."""
    tree = ast.parse(source)
    spans: list[tuple[ast.Constant, str | None]] = []

    def visit(node: ast.AST, scope: str | None) -> None:
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            assert isinstance(body, list)
            for i, statement in enumerate(body):
                # the docstring, and attribute docstrings (a string right after an assignment)
                after_assignment = i > 0 and isinstance(body[i - 1], (ast.Assign, ast.AnnAssign))
                if (
                    (i == 0 or after_assignment)
                    and isinstance(statement, ast.Expr)
                    and isinstance(statement.value, ast.Constant)
                    and isinstance(statement.value.value, str)
                ):
                    spans.append((statement.value, scope))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{scope}.{child.name}" if scope else child.name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, scope)
            else:
                visit(child, scope)

    visit(tree, None)
    lines = source.splitlines(keepends=True)
    for node, scope in sorted(spans, key=lambda s: -s[0].lineno):
        assert node.end_lineno is not None and node.end_col_offset is not None
        first, last = node.lineno - 1, node.end_lineno - 1
        segment = "".join(lines[first : last + 1])
        start = node.col_offset
        end = len(segment) - (len(lines[last]) - node.end_col_offset)
        literal = segment[start:end]
        prefix = re.match(r"[rRuUbBfF]*('''|\"\"\"|'|\")", literal)
        if prefix is None:
            continue
        quote = prefix.group(1)
        inner = literal[prefix.end() : len(literal) - len(quote)]

        def resolve(target: str, scope: str | None = scope) -> str | None:
            return resolver.resolve(target, module, scope) if resolver else None

        converted = convert_docstring(
            inner, resolve, unresolved, column=start + prefix.end(), quote_column=start
        )
        if converted == inner:
            continue
        new = segment[:start] + literal[: prefix.end()] + converted + quote + segment[end:]
        lines[first : last + 1] = [new]
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders of .py files")
    parser.add_argument(
        "--inventory",
        type=Path,
        default=Path("site/objects.inv"),
        help="the built site's objects.inv: the cross-reference targets that resolve",
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    args = parser.parse_args(argv)
    if not args.inventory.is_file():
        print(f"no {args.inventory}: run `mkdocs build` first (it lists the rendered names)")
        return 2
    resolver = Resolver(read_inventory(args.inventory))
    sys.path.insert(0, str(Path.cwd()))
    files = [f for p in args.paths for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p])]
    changed = 0
    for file in files:
        source = file.read_text(encoding="utf-8")
        unresolved: list[str] = []
        new = convert_source(source, _module_name(file), resolver, unresolved)
        if new != source:
            changed += 1
            ast.parse(new)  # never write a file that no longer parses
            if not args.check:
                file.write_text(new, encoding="utf-8")
            long = [
                f"{file}:{n}"
                for n, line in enumerate(new.splitlines(), 1)
                if len(line) > LINE_LENGTH and line not in source.splitlines()
            ]
            if long:
                print(f"  lines over {LINE_LENGTH} characters to shorten by hand: {long}")
            note = f" (in backticks, not rendered: {', '.join(sorted(set(unresolved)))})"
            print(
                f"{'would convert' if args.check else 'converted'} {file}"
                + (note if unresolved else "")
            )
    print(f"{changed} of {len(files)} files {'need converting' if args.check else 'converted'}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
