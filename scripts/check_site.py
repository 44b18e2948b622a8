"""Open every page of the built site in headless Chromium; fail on what a reader would see broken.

    python scripts/check_site.py                 # after `mkdocs build`; serves ./site on localhost
    python scripts/check_site.py --site site --screenshots site-screenshots

For every HTML page under ``--site`` it checks: the page loads (HTTP 200), no console error and
no uncaught exception, no failed request or 4xx/5xx response for the site's own files, every
``<img>`` loaded, every internal link (and its ``#fragment``) points at an existing page and id.
Then what a reader sees in the page's article (each check is a function below, with a test in
``tests/test_check_site.py`` that feeds it a page with the defect):

- ``rest-markup``: a literal reST role (``:func:``, ``:class:``, ...) or ``::`` in rendered text;
- ``rest-table``: a run of ``====`` in text (a reST table rendered as a paragraph);
- ``clipped-output``: executed output (a code block of mostly unhighlighted text, or console
  output) whose content is wider than its box and cut there (a block that scrolls sideways
  shows all of it), at 1280 px and at phone width (390 px), or a page wider than a phone's
  screen;
- ``alt-text``: an ``<img>`` without ``alt`` text or an ``<svg>`` without a ``<title>``,
  ``aria-label`` or ``aria-labelledby`` (unless ``aria-hidden``);
- ``internal-name``: a leaked internal module name (``_code_block_session``, ``._base.``);
- ``broken-identifier``: an identifier in a table cell (``repeat_head_order``) broken over two
  lines inside a word;
- ``wrapped-report``: a report (an output block marked ``lpim-report``) that the browser wraps
  rather than keeping the lines lpim prints (a wrapped table breaks its header and rule);
- ``search``: the site's own search (typed into its search box) for the seed's RuntimeError must
  rank the page that fixes it (``howto/fix-3d-attn-mask/``) first.

Four checks read each page's HTML without a browser (they run, and fail, where no browser is):

- ``hidden-name``: the page's shown Python uses a name none of its shown blocks defines (a helper
  run in a hidden block), or a block that is not Python; listings titled ``Listing: ...`` are
  not read (``scripts/site_examples.py`` runs the blocks; this is its static half);
- ``temp-path``: a trace of the build machine: a temporary path (``/tmp/tmpabcd1234``,
  ``../../tmpck_de290/``, ``/var/folders/``, ``pytest-of-``) or a ``sys.path[:0] = [...]`` line;
- ``split-returns``: a Returns (or Yields) section of the API reference with one value split
  over rows (a wrapped docstring line became a row: a row's description ends mid-sentence);
- ``truncated-note``: a note of a report cut inside a word: a table cell ``[n] ...`` that stops
  mid-word of its footnote, or a footnote that stops mid-word of the same text elsewhere on the
  page.

It saves a full-page screenshot per page under ``--screenshots`` (git-ignored), prints how many
defects each check found, and exits 1 when any page has a problem, 0 otherwise.

The browser is Debian's ``chromium`` (``apt-get install -y chromium``) driven by the PyPI
``playwright`` package; never ``playwright install``. Where either is missing the check is
skipped with the reason and exit status 0, unless ``--require-browser`` (then 2), so that CI on a
machine without a browser still says why it did not run.
"""

from __future__ import annotations

import argparse
import functools
import html
import html.parser
import http.server
import itertools
import json
import re
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: What a reader pastes into the search box, and the page that must come first for it.
SEARCH_QUERY = (
    "The shape of the 3D attn_mask is torch.Size([1600, 21, 21]), but should be (12800, 21, 21)."
)
SEARCH_EXPECT = "howto/fix-3d-attn-mask/"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
CHECKS = (
    "rest-markup",
    "rest-table",
    "clipped-output",
    "alt-text",
    "internal-name",
    "broken-identifier",
    "wrapped-report",
    "search",
)
#: The checks that read a page's HTML, without a browser.
STATIC_CHECKS = ("hidden-name", "temp-path", "split-returns", "truncated-note")
#: Code block languages that hold what executed blocks print (markdown-exec's result=...).
OUTPUT_LANGUAGES = ("text", "console", "pycon", "output", "plain", "shell-session")
INTERNAL_NAMES = ("_code_block_session", "._base.")

# The page's article (the content a reader reads; navigation and header excluded), or the body.
_ROOT = "(document.querySelector('article.md-content__inner') || document.body)"

# Text nodes a reader sees as prose: not inside code, pre, scripts or styles.
_PROSE_TEXT = (
    "(() => { const root = " + _ROOT + "; const out = [];"
    " const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);"
    " for (let n = walk.nextNode(); n; n = walk.nextNode()) {"
    "   const el = n.parentElement;"
    "   if (!el || el.closest('pre, code, script, style, kbd, samp')) continue;"
    "   const block = el.closest('p, li, td, th, dd, dt, h1, h2, h3, h4, h5, h6, div') || el;"
    "   out.push([n.textContent, block.innerText || ''])"
    " } return out; })()"
)


class _Ids(html.parser.HTMLParser):
    """Collect every ``id`` and ``name`` attribute of a page (link fragments point at them)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _pages(site: Path) -> list[str]:
    """Site-relative URLs of every HTML page, the front page first."""
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    urls = [p[: -len("index.html")] if p.endswith("index.html") else p for p in pages]
    return sorted(urls, key=lambda u: (u != "", u))


def _target_file(site: Path, path: str) -> Path | None:
    """The file a site-relative URL path resolves to, as the static server would serve it."""
    candidate = site / unquote(path).lstrip("/")
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None


@functools.cache
def _ids(file: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(file.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


# reST that mkdocstrings (Google style) or Markdown passed through as text.
_REST_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|ref|const|term):`?")
_LITERAL_MARKER = re.compile(r"(?<![:\w])::(?=\s|$)")
_EQUALS_RUN = re.compile(r"={4,}")


def _snippet(text: str, start: int, end: int, context: int = 40) -> str:
    text = " ".join(text.split()) if len(text) < 2000 else text
    return repr(text[max(0, start - context) : end + context])


def _prose(page: Any) -> list[tuple[str, str]]:
    return [(node, block) for node, block in page.evaluate(_PROSE_TEXT)]


def check_rest_markup(page: Any) -> list[str]:
    """Literal reST roles (``:func:``, ``:class:``, ...) and ``::`` literal markers in prose."""
    found = []
    for node, block in _prose(page):
        for pattern, what in ((_REST_ROLE, "reST role"), (_LITERAL_MARKER, "reST '::'")):
            for match in pattern.finditer(node):
                seen = _snippet(node, match.start(), match.end())
                paragraph = " ".join(block.split())[:80]
                found.append(f"{what} {match.group(0)!r} in text: {seen} (in {paragraph!r})")
    return found


def check_rest_table(page: Any) -> list[str]:
    """A run of ``====`` in prose: a reST table rendered as a paragraph."""
    found = []
    for node, block in _prose(page):
        match = _EQUALS_RUN.search(node)
        if match:
            found.append(f"run of '=' in text (a reST table?): {_snippet(block, 0, 60, 0)}")
    return found


# Executed output wider than its box: code blocks whose text is mostly unhighlighted (what
# result="text" prints) or console output (Pygments' "go" spans of result="console").
_CLIPPED = (
    "(() => { const root = " + _ROOT + "; const out = [];"
    " for (const code of root.querySelectorAll('pre > code')) {"
    # Output: a block whose language (Pygments' language-* class) is one of OUTPUT_LANGUAGES;
    # without a language class, one whose text is mostly unhighlighted or console output (.go).
    "   const box = code.closest('.highlight');"
    "   const lang = box ? [...box.classList].find(c => c.startsWith('language-')) : undefined;"
    "   if (lang !== undefined) { if (!"
    + json.dumps(OUTPUT_LANGUAGES)
    + ".includes(lang.slice(9)))"
    "     continue; } else {"
    "   const walk = document.createTreeWalker(code, NodeFilter.SHOW_TEXT); let plain = 0;"
    "   for (let n = walk.nextNode(); n; n = walk.nextNode()) {"
    "     const span = n.parentElement.closest('span[class]');"
    "     if (!span || !code.contains(span) || span.classList.contains('go'))"
    "       plain += n.textContent.trim().length; }"
    "   if (plain * 2 < code.textContent.trim().length) continue; }"  # highlighted source
    "   const overflow = getComputedStyle(code).overflowX;"
    "   if (overflow === 'auto' || overflow === 'scroll') continue;"  # it scrolls: not clipped
    "   if (code.scrollWidth > code.clientWidth + 1) {"
    "     const line = code.innerText.split('\\n')"
    "       .reduce((a, b) => (b.length > a.length ? b : a), '');"
    "     out.push([code.scrollWidth, code.clientWidth, line.slice(0, 90)]);"
    "   } }"
    " const doc = document.documentElement;"
    " if (doc.scrollWidth > doc.clientWidth + 1)"
    "   out.push([doc.scrollWidth, doc.clientWidth, null]);"
    " return out; })()"
)


def check_clipped_output(page: Any) -> list[str]:
    """Plain-text (executed output) code blocks whose content is wider than their box."""
    width = page.viewport_size["width"] if page.viewport_size else "?"
    found = []
    for scroll, client, line in page.evaluate(_CLIPPED):
        if line is None:
            found.append(f"page is {scroll} px wide in a {client} px window (at {width} px)")
        else:
            found.append(
                f"output clipped at {width} px ({scroll} px in a {client} px box): {line!r}"
            )
    return found


_NO_ALT = (
    "(() => { const root = " + _ROOT + "; const out = [];"
    " const heads = [...root.querySelectorAll('h1, h2, h3, h4')];"
    " const under = el => { let h = null; for (const x of heads)"
    "   if (x.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) h = x;"
    "   return h ? ' under ' + JSON.stringify(h.innerText.replace('\u00b6', '').trim()) : ''; };"
    " for (const img of root.querySelectorAll('img')) {"
    "   if (!(img.getAttribute('alt') || '').trim())"
    "     out.push('<img src=' + img.getAttribute('src') + '>' + under(img));"
    " }"
    " for (const svg of root.querySelectorAll('svg')) {"
    "   if (svg.parentElement && svg.parentElement.closest('svg')) continue;"  # nested in a figure
    "   if (svg.closest('[aria-hidden=\"true\"]')) continue;"
    "   const title = svg.querySelector(':scope > title');"
    "   const label = (svg.getAttribute('aria-label') || '').trim()"
    "     || (svg.getAttribute('aria-labelledby') || '').trim()"
    "     || (title && title.textContent.trim());"
    "   if (!label) out.push('<svg>' + under(svg));"
    " }"
    " return out; })()"
)


def check_alt_text(page: Any) -> list[str]:
    """``<img>`` without ``alt`` text, ``<svg>`` without a title or label (unless aria-hidden)."""
    return [f"no alternative text: {what}" for what in page.evaluate(_NO_ALT)]


def check_internal_names(page: Any) -> list[str]:
    """Internal module names a reader should never see (code blocks included)."""
    text = page.evaluate(_ROOT + ".innerText")
    found = []
    for name in INTERNAL_NAMES:
        for match in re.finditer(re.escape(name), text):
            found.append(f"internal name {name!r}: {_snippet(text, match.start(), match.end())}")
    return found


# Identifiers (code without a space) in table cells that the browser laid out over two lines.
_BROKEN = (
    "(() => { const root = " + _ROOT + "; const out = [];"
    " for (const code of root.querySelectorAll('td code, th code')) {"
    "   const text = code.textContent;"
    "   if (!text.trim() || /\\s/.test(text.trim())) continue;"
    "   const lines = new Set([...code.getClientRects()].map(r => Math.round(r.top)));"
    "   if (lines.size > 1) out.push(text);"
    " } return out; })()"
)


# Reports (output blocks marked `lpim-report`) whose lines the browser may wrap: lpim prints
# them at their width, and a wrapped table breaks its header and rule.
_WRAPPED_REPORTS = (
    "(() => { const root = " + _ROOT + "; const out = [];"
    " for (const code of root.querySelectorAll('.lpim-report pre > code')) {"
    "   if (getComputedStyle(code).whiteSpace !== 'pre')"
    "     out.push(code.textContent.trim().split('\\n')[0].slice(0, 60));"
    " } return out; })()"
)


def check_wrapped_reports(page: Any) -> list[str]:
    """Reports the browser wraps instead of scrolling (lpim prints them at their width)."""
    return [
        f"report wrapped, not at lpim's width: {first!r}"
        for first in page.evaluate(_WRAPPED_REPORTS)
    ]


def check_broken_identifiers(page: Any) -> list[str]:
    """Identifiers in tables broken inside a word over two lines."""
    return [f"identifier broken over lines in a table: {text!r}" for text in page.evaluate(_BROKEN)]


def _site_examples() -> Any:
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import site_examples

    return site_examples


def check_hidden_names(page_html: str) -> list[str]:
    """Names the page's shown Python uses but never shows (or a shown block that is not Python)."""
    examples = _site_examples()
    return [
        f"hidden name {found}" for found in examples.hidden_names(examples.python_blocks(page_html))
    ]


class _Text(html.parser.HTMLParser):
    """The text of a page's article, and of each of its code blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.code: list[list[str]] = []
        self._article = 0
        self._pre = 0
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "article" and "md-content__inner" in classes:
            self._article = 1
        elif self._article and tag == "article":
            self._article += 1
        if tag in ("script", "style"):
            self._skip += 1
        if self._article and tag == "pre":
            self._pre += 1
            self.code.append([])

    def handle_endtag(self, tag: str) -> None:
        if self._article and tag == "article":
            self._article -= 1
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        if self._article and tag == "pre":
            self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if not self._article or self._skip:
            return
        self.text.append(data)
        if self._pre:
            self.code[-1].append(data)


def _text(page_html: str) -> tuple[str, list[str]]:
    parser = _Text()
    parser.feed(page_html)
    return "".join(parser.text), ["".join(block) for block in parser.code]


#: Traces of the machine that built the site.
_TEMP_PATH = re.compile(
    r"(?:/tmp/|/var/folders/|/private/var/|\\Temp\\)[^\s'\"]*"  # a temporary folder
    r"|(?<![\w-])tmp[a-z0-9_]{8}(?![\w-])"  # a tempfile.mkdtemp() name, wherever it is
    r"|pytest-of-[\w-]+"
    r"|sys\.path\[:0\]\s*=[^\n]*"
)


def check_temp_paths(page_html: str) -> list[str]:
    """Temporary paths and ``sys.path[:0] = [...]`` lines: traces of the build machine."""
    text, _ = _text(page_html)
    return [
        f"trace of the build machine: {_snippet(text, m.start(), m.end())}"
        for m in _TEMP_PATH.finditer(text)
    ]


_RETURNS = re.compile(
    r'<span class="doc-section-title">(Returns|Yields):</span>.*?<tbody>(.*?)</tbody>', re.DOTALL
)
_ROW = re.compile(r'<tr class="doc-section-item">(.*?)</tr>', re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_CELL_HTML = re.compile(r"<td[^>]*>(.*?)</td>", re.DOTALL)


def check_split_returns(page_html: str) -> list[str]:
    """A Returns/Yields table with one value split over rows: a row's description ends
    mid-sentence, or the next one starts mid-sentence (lower case, or code)."""
    found = []
    for section in _RETURNS.finditer(page_html):
        rows = [
            " ".join(html.unescape(_TAGS.sub(" ", cells[-1])).split())
            for row in _ROW.findall(section.group(2))
            if (cells := _CELL_HTML.findall(row))
        ]
        for row, following in itertools.pairwise(rows):
            ends = row.rstrip().endswith((".", "!", "?"))
            starts = following[:1].isupper() and not following.startswith("`")
            if not (ends and starts):
                found.append(
                    f"{section.group(1)} split over rows: {row[-60:]!r} | {following[:60]!r}"
                )
    return found


_FOOTNOTE = re.compile(r"^\[(\d+)\] (.+(?:\n {4}\S.*)*)", re.MULTILINE)
_CELL = re.compile(r"\[(\d+)\] ([^\n\[]*?) ?\.\.\.(?=\s|$)")


def check_truncated_notes(page_html: str) -> list[str]:
    """Report notes cut inside a word (see the module docstring)."""
    _, blocks = _text(page_html)
    every = "\n".join(blocks)
    found = []
    for block in blocks:
        footnotes = {m.group(1): " ".join(m.group(2).split()) for m in _FOOTNOTE.finditer(block)}
        for number, shown in _CELL.findall(block):
            note = footnotes.get(number, "")
            shown = shown.rstrip()
            if note.startswith(shown) and note[len(shown) : len(shown) + 1].isalnum():
                found.append(f"table note cut mid-word: [{number}] {shown!r}...")
        for number, note in footnotes.items():
            detail = note.split(": ", 1)[-1]
            if len(detail) < 20:
                continue
            at = every.find(detail)
            while at >= 0:
                after = every[at + len(detail) : at + len(detail) + 1]
                if after.isalnum():
                    found.append(f"footnote [{number}] cut mid-word: ...{detail[-40:]!r}")
                    break
                at = every.find(detail, at + 1)
    return found


def check_html(page_html: str) -> dict[str, list[str]]:
    """Every check that reads a page's HTML (no browser), by check name."""
    return {
        "hidden-name": check_hidden_names(page_html),
        "temp-path": check_temp_paths(page_html),
        "split-returns": check_split_returns(page_html),
        "truncated-note": check_truncated_notes(page_html),
    }


def search_results(page: Any, base: str, query: str, timeout_ms: int = 15000) -> list[str]:
    """The pages the site's search lists for ``query``, best first (site-relative URLs)."""
    page.goto(base, wait_until="load")
    box = page.locator("input.md-search__input").first
    deadline = time.monotonic() + timeout_ms / 1000
    while True:  # the search worker may still be loading its index: type again until it answers
        box.click()
        box.fill(query)
        box.press("End")  # Material reads the query on keyup
        page.wait_for_timeout(500)
        meta = page.locator(".md-search-result__meta").first.inner_text()
        if page.locator(".md-search-result__item").count() or "No matching" in meta:
            break
        if time.monotonic() > deadline:
            return []
    page.wait_for_timeout(300)  # let the last answer settle
    hrefs = page.eval_on_selector_all(".md-search-result__item > a", "as => as.map(a => a.href)")
    pages: list[str] = []
    for href in hrefs:
        url = urldefrag(href)[0]
        url = url[len(base) :] if url.startswith(base) else url
        if url not in pages:
            pages.append(url)
    return pages


def check_search(
    page: Any, base: str, query: str = SEARCH_QUERY, expect: str = SEARCH_EXPECT
) -> list[str]:
    """The site's search for ``query`` ranks the page ``expect`` first."""
    pages = search_results(page, base, query)
    if pages[:1] == [expect]:
        return []
    rank = f"ranked {pages.index(expect) + 1}" if expect in pages else "not found"
    return [f"search for {query!r}: {expect!r} {rank}; first: {pages[:3]}"]


def check_page(page: Any) -> dict[str, list[str]]:
    """Every in-page check of what a reader sees, on a loaded page, by check name."""
    return {
        "rest-markup": check_rest_markup(page),
        "rest-table": check_rest_table(page),
        "clipped-output": check_clipped_output(page),
        "alt-text": check_alt_text(page),
        "internal-name": check_internal_names(page),
        "broken-identifier": check_broken_identifiers(page),
        "wrapped-report": check_wrapped_reports(page),
    }


def _skip(reason: str, require: bool) -> int:
    print(f"browser check SKIPPED: {reason}")
    return 2 if require else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("site"), help="the built site")
    parser.add_argument("--screenshots", type=Path, default=Path("site-screenshots"))
    parser.add_argument("--chromium", default=CHROMIUM, help=f"browser binary ({CHROMIUM})")
    parser.add_argument("--require-browser", action="store_true", help="exit 2 instead of skipping")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="print every defect and the count per check but exit 0 (to count them before a fix)",
    )
    parser.add_argument(
        "--static-only", action="store_true", help="only the checks that need no browser"
    )
    args = parser.parse_args(argv)

    if not (args.site / "index.html").is_file():
        print(f"site check: no {args.site}/index.html; run `mkdocs build` first")
        return 2
    static = _static_checks(args.site)
    failed = bool(static) and not args.report_only
    if args.static_only:
        return 1 if failed else 0
    chromium = shutil.which(args.chromium) or (
        args.chromium if Path(args.chromium).is_file() else None
    )
    if chromium is None:
        skipped = _skip(
            f"no Chromium at {args.chromium} (Debian: apt-get install -y chromium)",
            args.require_browser,
        )
        return 1 if failed else skipped
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skipped = _skip(
            "the playwright package is not installed (pip install playwright)", args.require_browser
        )
        return 1 if failed else skipped

    site = args.site.resolve()
    args.screenshots.mkdir(parents=True, exist_ok=True)
    server, base = _serve(site)
    pages = _pages(site)
    problems: dict[str, list[str]] = {}
    per_check: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport=DESKTOP)
            phone = browser.new_context(viewport=PHONE)
            for url in pages:
                page = context.new_page()
                found: list[str] = []
                page.on(
                    "console",
                    lambda msg, found=found: (
                        found.append(f"console {msg.type}: {msg.text}")
                        if msg.type == "error"
                        else None
                    ),
                )
                page.on("pageerror", lambda exc, found=found: found.append(f"page error: {exc}"))
                page.on(
                    "requestfailed",
                    lambda req, found=found: (
                        found.append(f"request failed: {req.url} ({req.failure})")
                        if req.url.startswith(base)
                        else None
                    ),
                )
                page.on(
                    "response",
                    lambda resp, found=found: (
                        found.append(f"HTTP {resp.status}: {resp.url}")
                        if resp.url.startswith(base) and resp.status >= 400
                        else None
                    ),
                )
                response = page.goto(base + url, wait_until="load")
                if response is None or response.status != 200:
                    found.append(f"page itself: HTTP {response.status if response else '?'}")
                page.wait_for_timeout(150)
                broken_images = page.eval_on_selector_all(
                    "img",
                    "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0)"
                    ".map(i => i.currentSrc || i.src)",
                )
                found += [f"missing image: {src}" for src in broken_images]
                hrefs = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
                for href in sorted(set(hrefs)):
                    if not href.startswith(base):
                        continue  # external links are not checked (no network here)
                    address, fragment = urldefrag(href)
                    target = _target_file(site, urlparse(address).path)
                    if target is None:
                        found.append(f"broken link: {href}")
                    elif (
                        fragment
                        and target.suffix == ".html"
                        and unquote(fragment) not in _ids(target)
                    ):
                        found.append(f"broken anchor: {href}")
                per_check["loads-links-images"] += len(found)
                for name, lines in check_page(page).items():
                    per_check[name] += len(lines)
                    found += [f"[{name}] {line}" for line in lines]
                images = page.eval_on_selector_all("img, svg", "els => els.length")
                shot = args.screenshots / ((url.strip("/").replace("/", "_") or "index") + ".png")
                page.screenshot(path=str(shot), full_page=True)
                page.close()
                small = phone.new_page()
                small.goto(base + url, wait_until="load")
                clipped = check_clipped_output(small)
                small.close()
                per_check["clipped-output"] += len(clipped)
                found += [f"[clipped-output] {line}" for line in clipped]
                status = "ok" if not found else f"{len(found)} PROBLEM(S)"
                print(f"{url or '/':45s} {status:14s} images+svg {images:3d}  {shot}")
                if found:
                    problems[url or "/"] = found
            page = context.new_page()
            ranking = check_search(page, base)
            page.close()
            per_check["search"] += len(ranking)
            print(f"{'(search)':45s} {'ok' if not ranking else '1 PROBLEM(S)'}")
            if ranking:
                problems["(search)"] = [f"[search] {line}" for line in ranking]
            browser.close()
    finally:
        server.shutdown()

    seconds = time.perf_counter() - started
    for url, found in problems.items():
        print(f"\n{url}:")
        for line in found[:30]:
            print(f"  {line}")
        if len(found) > 30:
            print(f"  ... and {len(found) - 30} more")
    print("\ndefects per check:")
    for name in ("loads-links-images", *CHECKS):
        print(f"  {name:20s} {per_check[name]}")
    verdict = "FAILED" if problems else "passed"
    print(
        f"\nbrowser check {verdict}: {len(pages)} pages, {len(problems)} with problems, "
        f"{sum(map(len, problems.values()))} problems; screenshots in {args.screenshots}/ "
        f"({seconds:.0f}s)"
    )
    return 1 if (problems or static) and not args.report_only else 0


def _static_checks(site: Path) -> dict[str, list[str]]:
    """Run the checks that read HTML on every page; print each defect and the count per check."""
    problems: dict[str, list[str]] = {}
    per_check: Counter[str] = Counter()
    for file in sorted(site.rglob("*.html")):
        url = file.relative_to(site).as_posix().removesuffix("index.html") or "/"
        found = []
        for name, lines in check_html(file.read_text(encoding="utf-8")).items():
            per_check[name] += len(lines)
            found += [f"[{name}] {line}" for line in lines]
        if found:
            problems[url] = found
    for url, found in problems.items():
        print(f"\n{url}:")
        for line in found[:30]:
            print(f"  {line}")
        if len(found) > 30:
            print(f"  ... and {len(found) - 30} more")
    print("\ndefects per check (HTML, no browser):")
    for name in STATIC_CHECKS:
        print(f"  {name:20s} {per_check[name]}")
    verdict = "FAILED" if problems else "passed"
    print(f"HTML check {verdict}: {len(problems)} pages with problems\n")
    return problems


if __name__ == "__main__":
    sys.exit(main())
