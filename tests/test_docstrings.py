"""Every docstring in ``lpim/`` is Markdown that mkdocstrings (Google style) renders as written.

Walks every module under ``lpim/`` with ``ast`` (module, class and function docstrings) and fails on
reST that the API pages would show as raw text: roles (``:func:``, ``:class:``, ...), ``::``
literal-block markers, ``>>>`` examples outside fenced code, and reST ``====`` tables. Each finding
names the file, the line and the offending text. ``scripts/convert_docstrings.py`` rewrites them.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from typing import NamedTuple

PACKAGE = Path(__file__).resolve().parent.parent / "lpim"

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc):`[^`]*`")
LITERAL_MARKER = re.compile(r"::\s*$")
DOCTEST = re.compile(r"^\s*>>>")
TABLE_BORDER = re.compile(r"^\s*={2,}(?:\s+={2,})*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


class Finding(NamedTuple):
    path: str
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.text.strip()}"


def _is_string(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def docstrings(source: str) -> list[tuple[int, str]]:
    """``(first line, raw text)`` of every docstring in ``source``: module, class and function
    docstrings, and attribute docstrings (a string right after an assignment, which mkdocstrings
    renders too)."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for i, statement in enumerate(node.body):
            after_assignment = i > 0 and isinstance(node.body[i - 1], (ast.Assign, ast.AnnAssign))
            if _is_string(statement) and (i == 0 or after_assignment):
                value = statement.value  # type: ignore[attr-defined]
                found.append((value.lineno, value.value))
    return sorted(found)


def rest_in_docstrings(source: str, path: str = "<source>") -> list[Finding]:
    """Every reST construct in the docstrings of ``source`` that Markdown would show as text."""
    findings = []
    for first_line, text in docstrings(source):
        fenced = False
        for offset, line in enumerate(text.splitlines()):
            where = first_line + offset
            if FENCE.match(line):
                fenced = not fenced
                continue
            if fenced:
                continue
            for match in ROLE.finditer(line):
                findings.append(Finding(path, where, "reST role", match.group(0)))
            if LITERAL_MARKER.search(line):
                findings.append(Finding(path, where, "reST '::' literal block", line))
            if DOCTEST.match(line):
                findings.append(Finding(path, where, "'>>>' example outside fenced code", line))
            if TABLE_BORDER.match(line):
                findings.append(Finding(path, where, "reST '====' table", line))
    return findings


def test_the_scanner_finds_each_kind_with_file_and_line() -> None:
    source = textwrap.dedent(
        '''\
        """Module docstring with :mod:`lpim.masks`."""


        class Batch:
            """A batch.

            ==========  ======
            name        shape
            ==========  ======
            points      [B, M]
            ==========  ======

            Example::

                Batch()
            """

            LIMIT = 3
            """The limit :data:`LIMIT` sets."""

            def make(self) -> None:
                """Make one, see :meth:`Batch.make` and :class:`~lpim.LaneBatch`.

                >>> Batch().make()

                ```python
                >>> fenced examples are fine
                :func:`and so is this`
                ```
                """
        '''
    )
    found = rest_in_docstrings(source, "lpim/x.py")
    assert [(f.line, f.kind) for f in found] == [
        (1, "reST role"),
        (7, "reST '====' table"),
        (9, "reST '====' table"),
        (11, "reST '====' table"),
        (13, "reST '::' literal block"),
        (19, "reST role"),
        (22, "reST role"),
        (22, "reST role"),
        (24, "'>>>' example outside fenced code"),
    ]
    assert str(found[6]) == "lpim/x.py:22: reST role: :meth:`Batch.make`"
    assert rest_in_docstrings('"""Plain Markdown: `x`, [LaneBatch][lpim.LaneBatch]."""') == []


def _all_findings() -> list[Finding]:
    findings = []
    for module in sorted(PACKAGE.rglob("*.py")):
        relative = module.relative_to(PACKAGE.parent).as_posix()
        findings += rest_in_docstrings(module.read_text(encoding="utf-8"), relative)
    return findings


def test_no_rest_in_lpim_docstrings() -> None:
    findings = _all_findings()
    assert not findings, f"{len(findings)} reST constructs in docstrings:\n" + "\n".join(
        map(str, findings)
    )
