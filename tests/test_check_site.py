"""Each check of ``scripts/check_site.py`` fed a page with its defect (and a page without it).

They drive Debian's chromium through the PyPI ``playwright`` package, as the check itself does, and
skip with the reason where either is missing (``.ci/run`` installs both before the tests).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_site", ROOT / "scripts" / "check_site.py")
assert _spec is not None and _spec.loader is not None
check_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_site)

SEED = check_site.SEARCH_QUERY


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which(check_site.CHROMIUM)
    if chromium is None:
        pytest.skip(f"no Chromium at {check_site.CHROMIUM} (Debian: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=check_site.CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page_with(browser: Any) -> Iterator[Any]:
    """Open an article with the given HTML body, the way Material lays out a page's content."""
    opened: list[Any] = []

    def open_page(article: str, viewport: dict[str, int] = check_site.DESKTOP) -> Any:
        page = browser.new_page(viewport=viewport)
        opened.append(page)
        page.set_content(
            "<!doctype html><html><head><style>"
            "pre > code { display: block; overflow: hidden; white-space: pre; }"
            "</style></head><body><nav>:func:`navigation is not checked` ====</nav>"
            f'<article class="md-content__inner md-typeset">{article}</article></body></html>'
        )
        return page

    yield open_page
    for page in opened:
        page.close()


def test_rest_roles_and_literal_markers_in_text_are_found(page_with: Any) -> None:
    page = page_with(
        "<p>Build it with :func:<code>lpim.masks.to_attn_mask_3d</code> first.</p>"
        "<ul><li>See :class:`LaneBatch`.</li></ul>"
        "<p>Example (test_my_encoder.py)::</p>"
    )
    found = check_site.check_rest_markup(page)
    assert len(found) == 3, found
    assert ":func:" in found[0] and "to_attn_mask_3d" in found[0]
    assert ":class:" in found[1]
    assert "'::'" in found[2] and "test_my_encoder.py" in found[2]


def test_rest_markup_in_code_is_not_a_defect(page_with: Any) -> None:
    page = page_with(
        "<p>The role <code>:func:</code> and <code>std::vector</code> are code.</p>"
        "<pre><code>Example::\n    :class:`x`</code></pre><p>Time: 12:30, a::b.</p>"
    )
    assert check_site.check_rest_markup(page) == []


def test_a_rest_table_rendered_as_a_paragraph_is_found(page_with: Any) -> None:
    page = page_with(
        "<p>===================== ============ convention meaning"
        " ===================== ============</p><pre><code>====</code></pre><p>a == b</p>"
    )
    found = check_site.check_rest_table(page)
    assert len(found) == 1 and "=====" in found[0], found


def test_executed_output_wider_than_its_box_is_found(page_with: Any) -> None:
    long_line = "property 'matches_unpadded' failed: " + "lane (b=0, m=0) " * 20
    page = page_with(
        f"<pre><code>{long_line}</code></pre>"  # plain text: executed output, clipped
        f'<pre><code><span class="n">{long_line}</span></code></pre>'  # highlighted source
        f'<pre><code style="white-space: pre-wrap">{long_line}</code></pre>'  # wrapped: fits
        "<pre><code>short</code></pre>"
        f'<pre><code style="overflow-x: auto">{long_line.replace("matches", "scroll")}</code></pre>'
        '<pre><code><span class="gp">$ </span><span class="nb">lpim</span> check\n'
        f'<span class="go">{long_line.replace("matches", "console")}</span></code></pre>'
        f'<div class="language-python highlight"><pre><code>{long_line}</code></pre></div>'
        '<div class="language-text highlight"><pre><code><span class="err">'
        f"{long_line.replace('matches', 'text')}</span></code></pre></div>"
        '<details><summary>reproducer</summary><pre><code><span class="c1"># lpim</span>'
        f'<span class="n">{long_line}</span></code></pre></details>'  # collapsed source
    )
    found = check_site.check_clipped_output(page)
    assert len(found) == 3, found
    assert "matches_unpadded" in found[0] and "at 1280 px" in found[0]
    assert "console_unpadded" in found[1]
    assert "text_unpadded" in found[2]


def test_a_page_wider_than_a_phone_is_found(page_with: Any) -> None:
    page = page_with('<div style="width: 900px">a wide table</div>', viewport=check_site.PHONE)
    found = check_site.check_clipped_output(page)
    assert len(found) == 1 and "in a 390 px window" in found[0], found
    assert check_site.check_clipped_output(page_with("<p>fits</p>", check_site.PHONE)) == []


def test_images_and_svgs_without_alternative_text_are_found(page_with: Any) -> None:
    pixel = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    page = page_with(
        f'<h2>Pictures</h2><img src="{pixel}"><img src="{pixel}" alt="  ">'
        '<svg width="10" height="10"><rect width="5" height="5"/></svg>'
        f'<img src="{pixel}" alt="a mask">'
        '<svg role="img" aria-label="the mask"><rect width="5" height="5"/></svg>'
        "<svg><title>key_padding_mask, True = ignore</title><svg></svg></svg>"
        '<span aria-hidden="true"><svg><rect width="5" height="5"/></svg></span>'
    )
    found = check_site.check_alt_text(page)
    assert len(found) == 3, found
    assert all('under "Pictures"' in line for line in found)
    assert "<svg>" in found[2]


def test_leaked_internal_module_names_are_found(page_with: Any) -> None:
    page = page_with(
        "<pre><code>lpim check of _code_block_session_consumer_n1_.BevCrossAttention: ok</code>"
        "</pre><p>Bases: <code>lpim.zoo._base.AttentionLaneEncoder</code></p>"
        "<p>lpim.zoo.AttentionLaneEncoder and a_base.py are fine.</p>"
    )
    found = check_site.check_internal_names(page)
    assert len(found) == 2, found
    assert "_code_block_session" in found[0] and "._base." in found[1]


def test_check_page_runs_every_in_page_check(page_with: Any) -> None:
    results = check_site.check_page(page_with("<p>:mod:`lpim` ==== ._base.</p>"))
    assert set(results) == set(check_site.CHECKS) - {"search"}
    assert {name for name, found in results.items() if found} == {
        "rest-markup",
        "rest-table",
        "internal-name",
    }


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-page Material site: only ``fix/`` contains the seed's RuntimeError."""
    pytest.importorskip("material", reason="the docs extra: pip install -e '.[docs]'")
    root = tmp_path_factory.mktemp("tiny-site")
    (root / "docs").mkdir()
    (root / "docs" / "index.md").write_text("# Home\n\nPadding masks for lane encoders.\n")
    (root / "docs" / "other.md").write_text("# Other\n\nThe attention mask conventions.\n")
    (root / "docs" / "fix.md").write_text(
        f"# Fix the crash\n\n```text\nRuntimeError: {SEED}\n```\n"
    )
    (root / "mkdocs.yml").write_text(
        textwrap.dedent(
            """\
            site_name: tiny
            theme: {name: material, font: false}
            plugins: [search]
            nav: [index.md, other.md, fix.md]
            """
        )
    )
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(root / "mkdocs.yml")],
        check=True,
        cwd=root,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""},
    )
    return root / "site"


def test_search_that_does_not_rank_the_fixing_page_first_is_found(
    browser: Any, tiny_site: Path
) -> None:
    server, base = check_site._serve(tiny_site)
    page = browser.new_page(viewport=check_site.DESKTOP)
    try:
        assert check_site.search_results(page, base, SEED)[:1] == ["fix/"]
        assert check_site.check_search(page, base, SEED, expect="fix/") == []
        found = check_site.check_search(page, base, SEED, expect="other/")
        assert len(found) == 1 and "'other/' not found; first: ['fix/']" in found[0], found
    finally:
        page.close()
        server.shutdown()


def _python(code: str, title: str = "") -> str:
    """A Python block as the built site shows it (Pygments' spans left out: text is what counts)."""
    head = f'<span class="filename">{title}</span>' if title else ""
    block = f"<pre><span></span><code>{code}</code></pre>"
    return f'<div class="language-python highlight">{head}{block}</div>'


def _article(body: str) -> str:
    return (
        f'<html><body><article class="md-content__inner md-typeset">{body}</article></body></html>'
    )


def test_a_name_the_page_never_shows_is_found() -> None:
    page = _article(
        _python("import docs_fix\nns = docs_fix.fresh()", title="")  # the import is shown: fine
        + _python("from lpim import masks\nprint(masks.diagnose(per_lane, point_mask))")
        + _python("def helper(self):\n    return hidden(self)", title="Listing: an excerpt")
        + _python("  indented fragment(")
        + '<div class="language-python doc-signature highlight"><pre><code>f(x: Tensor)</code>'
        "</pre></div>"
    )
    found = check_site.check_hidden_names(page)
    assert [line.split(" (block")[0] for line in found[:2]] == [
        "hidden name 'per_lane'",
        "hidden name 'point_mask'",
    ], found
    assert len(found) == 3 and "does not parse" in found[2], found  # the listing is not read
    shown_helper = _python("def show_error(call):\n    call()") + _python("show_error(print)")
    assert check_site.check_hidden_names(_article(shown_helper)) == []


def test_traces_of_the_build_machine_are_found() -> None:
    page = _article(
        "<pre><code>sys.path[:0] = ['/tmp/tmprsdwyjg5']  # where your code was imported from\n"
        "../../tmpck_de290/test_prior_encoder.py ..  [100%]\n"
        "written to /var/folders/xy/T/lpim-reproducers/\n</code></pre>"
        "<p>Reproducers go to lpim-reproducers/ in the current folder; a template file.</p>"
    )
    found = check_site.check_temp_paths(page)
    assert len(found) == 3, found  # the sys.path line (with its temporary folder), two paths
    assert "sys.path[:0]" in found[0]
    assert any("tmpck_de290" in line for line in found)
    assert any("/var/folders/" in line for line in found)
    assert check_site.check_temp_paths(_article("<p>template, tmp, attempt</p>")) == []


def _returns(*rows: tuple[str, str]) -> str:
    cells = "".join(
        f'<tr class="doc-section-item"><td><code>{kind}</code></td>'
        f'<td><div class="doc-md-description"><p>{text}</p></div></td></tr>'
        for kind, text in rows
    )
    return (
        '<p><span class="doc-section-title">Returns:</span></p><table><thead><tr><th>Type</th>'
        f"<th>Description</th></tr></thead><tbody>{cells}</tbody></table>"
    )


def test_a_returns_value_split_over_rows_is_found() -> None:
    split = _returns(
        ("Tensor", "<code>(B*M, S)</code> bool for <code>nn.MultiheadAttention</code> or"),
        ("Tensor", "<code>nn.TransformerEncoder(src_key_padding_mask=...)</code>. The fix."),
    )
    found = check_site.check_split_returns(_article(split))
    assert len(found) == 1 and "split over rows" in found[0], found
    whole = _returns(("Tensor", "The mask, <code>(B*M, S)</code>, True = ignore; the fix."))
    two_values = _returns(("Tensor", "The mask."), ("int", "Its width."))
    assert check_site.check_split_returns(_article(whole + two_values)) == []


def test_a_note_cut_mid_word_is_found() -> None:
    cut = (
        "<pre><code>property          dtype    verdict  note\n"
        "matches_unpadded  float64  FAIL     [1] matches_unpadded: lane (b=0, m=0) wi...\n"
        "[1] matches_unpadded: lane (b=0, m=0) with 1 real points: lane_embedding[0] is "
        "-0.180656 in the batch but 0.0168597 is expec\n</code></pre>"
        "<pre><code>property 'matches_unpadded' failed: lane (b=0, m=0) with 1 real points: "
        "lane_embedding[0] is -0.180656 in the batch but 0.0168597 is expected (allowed ...)"
        "</code></pre>"
    )
    found = check_site.check_truncated_notes(_article(cut))
    assert len(found) == 2, found
    assert "[1] 'matches_unpadded: lane (b=0, m=0) wi'" in found[0]
    assert "is expec" in found[1]
    whole = (
        "<pre><code>matches_unpadded  float64  FAIL     [1] matches_unpadded: lane (b=0, m=0) ...\n"
        "[1] matches_unpadded: lane (b=0, m=0) with 1 real points: lane_embedding[0] is\n"
        "    -0.180656 in the batch but 0.0168597 is expected (allowed ...)\n</code></pre>"
        "<pre><code>property 'matches_unpadded' failed: lane (b=0, m=0) with 1 real points: "
        "lane_embedding[0] is -0.180656 in the batch but 0.0168597 is expected (allowed ...)"
        "</code></pre>"
    )
    assert check_site.check_truncated_notes(_article(whole)) == []


def test_an_identifier_broken_inside_a_word_in_a_table_is_found(page_with: Any) -> None:
    page = page_with(
        '<table style="width: 300px"><tr><td style="width: 60px">'
        '<code style="word-break: break-all">repeat_head_order</code></td>'
        '<td><code style="white-space: nowrap">seed_crash_3d_mask</code> and '
        "<code>two words</code></td></tr></table>"
    )
    found = check_site.check_broken_identifiers(page)
    assert found == ["identifier broken over lines in a table: 'repeat_head_order'"], found


def test_a_wrapped_report_is_found(page_with: Any) -> None:
    table = "property  dtype\n--------  -----\nfinite    float32\n"
    page = page_with(
        '<div class="lpim-report"><pre><code style="white-space: pre-wrap">'
        + table
        + '</code></pre></div><div class="lpim-report"><pre><code style="white-space: pre">'
        + table
        + "</code></pre></div>"
    )
    found = check_site.check_wrapped_reports(page)
    assert found == ["report wrapped, not at lpim's width: 'property  dtype'"], found


def test_the_html_checks_run_without_a_browser_and_fail_the_site(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        _article("<pre><code>1 reproducer(s) written to /tmp/tmpabcd1234/</code></pre>")
    )
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "check_site.py"),
            "--site",
            str(tmp_path),
            "--static-only",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stdout
    assert "temp-path            1" in done.stdout, done.stdout
