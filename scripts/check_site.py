"""Open every page of the built site in headless Chromium; fail on what a reader would see broken.

    python scripts/check_site.py                 # after `mkdocs build`; serves ./site on localhost
    python scripts/check_site.py --site site --screenshots site-screenshots

For every HTML page under ``--site`` it checks: the page loads (HTTP 200), no console error and
no uncaught exception, no failed request or 4xx/5xx response for the site's own files, every
``<img>`` loaded, every internal link (and its ``#fragment``) points at an existing page and id.
It saves a full-page screenshot per page under ``--screenshots`` (git-ignored) and exits 1 when
any page has a problem, 0 otherwise.

The browser is Debian's ``chromium`` (``apt-get install -y chromium``) driven by the PyPI
``playwright`` package; never ``playwright install``. Where either is missing the check is
skipped with the reason and exit status 0, unless ``--require-browser`` (then 2), so that CI on a
machine without a browser still says why it did not run.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import shutil
import sys
import threading
import time
from pathlib import Path
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


def _skip(reason: str, require: bool) -> int:
    print(f"browser check SKIPPED: {reason}")
    return 2 if require else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("site"), help="the built site")
    parser.add_argument("--screenshots", type=Path, default=Path("site-screenshots"))
    parser.add_argument("--chromium", default=CHROMIUM, help=f"browser binary ({CHROMIUM})")
    parser.add_argument("--require-browser", action="store_true", help="exit 2 instead of skipping")
    args = parser.parse_args(argv)

    if not (args.site / "index.html").is_file():
        print(f"browser check: no {args.site}/index.html; run `mkdocs build` first")
        return 2
    chromium = shutil.which(args.chromium) or (
        args.chromium if Path(args.chromium).is_file() else None
    )
    if chromium is None:
        return _skip(
            f"no Chromium at {args.chromium} (Debian: apt-get install -y chromium)",
            args.require_browser,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return _skip(
            "the playwright package is not installed (pip install playwright)", args.require_browser
        )

    site = args.site.resolve()
    args.screenshots.mkdir(parents=True, exist_ok=True)
    server, base = _serve(site)
    pages = _pages(site)
    problems: dict[str, list[str]] = {}
    started = time.perf_counter()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
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
                images = page.eval_on_selector_all("img, svg", "els => els.length")
                shot = args.screenshots / ((url.strip("/").replace("/", "_") or "index") + ".png")
                page.screenshot(path=str(shot), full_page=True)
                page.close()
                status = "ok" if not found else f"{len(found)} PROBLEM(S)"
                print(f"{url or '/':45s} {status:14s} images+svg {images:3d}  {shot}")
                if found:
                    problems[url or "/"] = found
            browser.close()
    finally:
        server.shutdown()

    seconds = time.perf_counter() - started
    for url, found in problems.items():
        print(f"\n{url}:")
        for line in found[:30]:
            print(f"  {line}")
    verdict = "FAILED" if problems else "passed"
    print(
        f"\nbrowser check {verdict}: {len(pages)} pages, {len(problems)} with problems, "
        f"{sum(map(len, problems.values()))} problems; screenshots in {args.screenshots}/ "
        f"({seconds:.0f}s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
