"""What a page of the built site shows is what runs: ``scripts/site_examples.py`` extracts each
page's Python blocks from the HTML and runs them in order in a fresh interpreter in an empty
folder. Tests of the extractor and the runner on planted pages, then (where the site is built:
``site/`` or ``$LPIM_SITE``) every page of the real site."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "site_examples", ROOT / "scripts" / "site_examples.py"
)
assert _spec is not None and _spec.loader is not None
site_examples = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("site_examples", site_examples)  # its dataclasses look themselves up
_spec.loader.exec_module(site_examples)


def _block(code: str, title: str = "", signature: bool = False) -> str:
    kind = "language-python doc-signature highlight" if signature else "language-python highlight"
    head = f'<span class="filename">{title}</span>' if title else ""
    return f'<div class="{kind}">{head}<pre><span></span><code>{code}</code></pre></div>'


def _page(*blocks: str) -> str:
    body = "".join(blocks)
    return (
        f"<html><body>{_block('outside = 1')}"  # not in the article: navigation, never read
        f'<article class="md-content__inner md-typeset">{body}</article></body></html>'
    )


def test_the_article_python_blocks_are_extracted_in_order_with_their_titles() -> None:
    page = _page(
        _block('<span class="kn">import</span> os\nx = 1 &lt; 2'),
        _block("f(x: int) -&gt; int", signature=True),
        _block("def method(self):\n    return self.hidden", title="Listing: an override"),
        _block("&gt;&gt;&gt; y = x\n&gt;&gt;&gt; y\nTrue"),
    )
    blocks = site_examples.python_blocks(page)
    assert [b.code for b in blocks] == [
        "import os\nx = 1 < 2\n",
        "def method(self):\n    return self.hidden\n",
        "y = x\ny\n",
    ]
    assert [b.is_listing for b in blocks] == [False, True, False]


def test_a_page_runs_in_a_fresh_interpreter_in_an_empty_folder() -> None:
    blocks = site_examples.python_blocks(
        _page(
            _block("import os, lpim\nassert os.listdir('.') == [], os.listdir('.')"),
            _block(f"assert lpim.__file__.startswith({str(ROOT)!r})"),
            _block("undefined_helper()", title="Listing: not run"),
        )
    )
    outcome = site_examples.run_page("planted/", blocks)
    assert outcome.error == "" and (outcome.blocks, outcome.listings) == (2, 1)


def test_a_helper_the_page_never_shows_fails_the_page() -> None:
    blocks = site_examples.python_blocks(
        _page(_block("import docs_fix  # the site's own helper: not importable"), _block("1"))
    )
    outcome = site_examples.run_page("planted/", blocks)
    assert "BLOCK 1 FAILED" in outcome.error and "docs_fix" in outcome.error
    hidden = site_examples.python_blocks(_page(_block("print(show_error)")))
    assert "BLOCK 1 FAILED" in site_examples.run_page("p/", hidden).error
    assert site_examples.hidden_names(hidden) == ["'show_error' (block 1: 'print(show_error)')"]


def _site() -> Path:
    site = Path(os.environ.get("LPIM_SITE", ROOT / "site"))
    if not (site / "index.html").is_file():
        pytest.skip(f"no built site at {site} (mkdocs build, or set LPIM_SITE)")
    return site


def test_every_page_of_the_built_site_runs_as_shown() -> None:
    pages = site_examples.site_pages(_site())
    assert pages, "no page with Python blocks"
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        outcomes = list(pool.map(lambda url: site_examples.run_page(url, pages[url]), pages))
    failed = {o.page: o.error for o in outcomes if o.error}
    assert not failed, "\n\n".join(f"{page}:\n{error}" for page, error in failed.items())


def test_a_reproducer_must_raise_and_nothing_else_may() -> None:
    title = "Reproducer: raises the failure when run"
    raising = site_examples.python_blocks(_page(_block("assert 1 == 2", title=title), _block("1")))
    assert site_examples.run_page("p/", raising).error == ""
    quiet = site_examples.python_blocks(_page(_block("x = 1", title=title)))
    assert "its title says it raises" in site_examples.run_page("p/", quiet).error
