"""The Python a page of the built site shows, and whether it runs as shown.

    python scripts/site_examples.py                  # every page of ./site, 2 pages at a time
    python scripts/site_examples.py --site site --jobs 4 howto/fix-3d-attn-mask/

A reader copies a page's Python blocks in order into a fresh interpreter in an empty folder. This
script does the same with the built HTML: it extracts every Python code block a page shows (the
highlighted ``language-python`` blocks of the article, not mkdocstrings' signatures) and runs
them in order, in one fresh ``python`` process per page, in an empty temporary folder, with only
the installed lpim importable (not ``scripts/``, which holds the site's own helpers). A block
that is a listing to read, not to run, says so in its title (``title="Listing: ..."``, shown
above the code) and is skipped; a reproducer says in its title that it raises
(``title="Reproducer: raises ..."``), and must.

``hidden_names`` is the static half, used by ``scripts/check_site.py``: the names a page's
shown Python uses that none of its shown blocks defines (and Python does not provide).

Exit status 0 when every page's blocks ran, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import concurrent.futures
import html.parser
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

#: A block whose title contains this (any case) is a listing to read, not to run.
LISTING_MARK = "listing"
#: A block whose title contains this (a reproducer) must raise when run: that is what it is for.
RAISES_MARK = "raises"


@dataclass
class Block:
    """One Python code block as a page shows it."""

    code: str
    title: str = ""

    @property
    def is_listing(self) -> bool:
        return LISTING_MARK in self.title.lower()

    @property
    def raises(self) -> bool:
        return RAISES_MARK in self.title.lower()


@dataclass
class _Open:
    depth: int
    classes: list[str]
    title: str = ""
    code: list[str] = field(default_factory=list)
    in_code: bool = False


class _Blocks(html.parser.HTMLParser):
    """Collect the Python blocks of a page's article, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._depth = 0
        self._open: _Open | None = None
        self._in_title = False
        self._in_article = False
        self._article_depth = -1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "img", "input", "meta", "link", "hr", "wbr"):
            return
        self._depth += 1
        classes = (dict(attrs).get("class") or "").split()
        if tag == "article" and "md-content__inner" in classes:
            self._in_article, self._article_depth = True, self._depth
        if not self._in_article:
            return
        if (
            self._open is None
            and tag == "div"
            and "highlight" in classes
            and "language-python" in classes
            and "doc-signature" not in classes
        ):
            self._open = _Open(self._depth, classes)
        elif self._open is not None:
            if tag == "span" and "filename" in classes:
                self._in_title = True
            elif tag == "code":
                self._open.in_code = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("br", "img", "input", "meta", "link", "hr", "wbr"):
            return
        if self._open is not None:
            if tag == "span" and self._in_title:
                self._in_title = False
            elif tag == "code":
                self._open.in_code = False
            if self._depth == self._open.depth:
                self.blocks.append(Block("".join(self._open.code), self._open.title.strip()))
                self._open = None
        if self._in_article and self._depth == self._article_depth:
            self._in_article = False
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._open is None:
            return
        if self._in_title:
            self._open.title += data
        elif self._open.in_code:
            self._open.code.append(data)


def python_blocks(page_html: str) -> list[Block]:
    """The Python code blocks of a page's article, in the order a reader sees them."""
    parser = _Blocks()
    parser.feed(page_html)
    return [
        Block(_strip_prompts(b.code).rstrip("\n") + "\n", b.title)
        for b in parser.blocks
        if b.code.strip()
    ]


def _strip_prompts(code: str) -> str:
    """A ``>>>`` session as the code typed (output lines dropped); other code unchanged."""
    lines = code.splitlines()
    if not any(line.startswith(">>> ") or line == ">>>" for line in lines):
        return code
    typed = (">>> ", "... ")
    kept = [line[4:] for line in lines if line.startswith(typed) or line in (">>>", "...")]
    return "\n".join(kept)


_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__builtins__"}


def _bound(tree: ast.AST) -> set[str]:
    """Every name a piece of code binds, anywhere in it (loosely: scopes are not told apart)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
    return names


def hidden_names(blocks: list[Block]) -> list[str]:
    """What the page's shown Python uses but never shows: ``"name (block k: first line)"`` for
    each name a block reads that neither it nor an earlier block binds, and ``"block k does not
    parse: ..."`` for a block that is not Python. Listings are not read."""
    found: list[str] = []
    bound: set[str] = set()
    for number, block in enumerate(blocks, 1):
        if block.is_listing:
            continue
        try:
            tree = ast.parse(block.code)
        except SyntaxError as error:
            found.append(f"block {number} does not parse: {error.msg} (line {error.lineno})")
            continue
        bound |= _bound(tree)
        first = block.code.strip().splitlines()[0][:60]
        seen: set[str] = set()
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Name)
                and isinstance(node.ctx, ast.Load)
                and node.id not in bound
                and node.id not in _BUILTINS
                and node.id not in seen
            ):
                seen.add(node.id)
                found.append(f"{node.id!r} (block {number}: {first!r})")
    return found


# What the fresh interpreter runs: the blocks from stdin (JSON), in one namespace, in order.
_RUNNER = textwrap.dedent(
    """
    import json, sys, traceback
    blocks = json.load(sys.stdin)
    namespace = {"__name__": "__main__"}
    for number, code, raises in blocks:
        try:
            exec(compile(code, f"<block {number}>", "exec"), namespace)
        except Exception:
            if raises:
                continue  # a reproducer: raising is what its title says it does
            print(f"BLOCK {number} FAILED:", file=sys.stderr)
            traceback.print_exc()
            sys.exit(1)
        if raises:
            print(f"BLOCK {number} FAILED: its title says it raises; it ran", file=sys.stderr)
            sys.exit(1)
    """
)


@dataclass
class Outcome:
    page: str
    blocks: int
    listings: int
    seconds: float
    error: str = ""


def run_page(page: str, blocks: list[Block], timeout: float = 600.0) -> Outcome:
    """Run a page's blocks (listings skipped) in order in a fresh interpreter in an empty
    folder; the error, with the failing block, when one raised."""
    runnable = [(n, b.code, b.raises) for n, b in enumerate(blocks, 1) if not b.is_listing]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "COV_", "PYTEST")) and key != "VIRTUAL_ENV_PROMPT"
    }
    # Only the lpim under test: this checkout first (not its scripts/ folder), as installed.
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MPLBACKEND", "Agg")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lpim-page-") as empty:
        try:
            done = subprocess.run(
                [sys.executable, "-c", _RUNNER],
                input=json.dumps(runnable),
                capture_output=True,
                text=True,
                cwd=empty,
                env=env,
                timeout=timeout,
            )
            error = "" if done.returncode == 0 else (done.stderr[-3000:] or done.stdout[-3000:])
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout:.0f}s"
    seconds = time.perf_counter() - started
    return Outcome(page, len(runnable), len(blocks) - len(runnable), seconds, error)


def site_pages(site: Path) -> dict[str, list[Block]]:
    """Every page of the built site with Python blocks: its URL and its blocks."""
    pages: dict[str, list[Block]] = {}
    for file in sorted(site.rglob("*.html")):
        url = file.relative_to(site).as_posix().removesuffix("index.html")
        blocks = python_blocks(file.read_text(encoding="utf-8"))
        if blocks:
            pages[url] = blocks
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help="site-relative page URLs (default: every page)")
    parser.add_argument("--site", type=Path, default=Path("site"), help="the built site")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"no {args.site}/index.html; run `mkdocs build` first")
        return 2
    pages = site_pages(args.site)
    if args.pages:
        pages = {url: blocks for url, blocks in pages.items() if url in args.pages}
    started = time.perf_counter()
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # The longest pages first, so that the wall time is the longest page, not the sum.
        order = sorted(pages, key=lambda url: -sum(len(b.code) for b in pages[url]))
        futures = [pool.submit(run_page, url, pages[url]) for url in order]
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            status = "ok" if not outcome.error else "FAILED"
            listed = f", {outcome.listings} listing(s) not run" if outcome.listings else ""
            print(
                f"{outcome.page or '/':40s} {status:6s} {outcome.blocks} block(s){listed} "
                f"({outcome.seconds:.1f}s)",
                flush=True,
            )
            if outcome.error:
                failed += 1
                print(textwrap.indent(outcome.error.rstrip(), "    "), flush=True)
    print(
        f"{len(pages)} pages, {failed} failed ({time.perf_counter() - started:.0f}s, "
        f"{args.jobs} at a time)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
