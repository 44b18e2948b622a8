"""The site's build hooks: a report's output block is marked to keep its lines, and the cache key
of an executed block changes with everything the block's output depends on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


hooks = _load("mkdocs_hooks")


def _output(text: str, language: str = "text") -> str:
    return (
        f'<div class="language-{language} highlight"><pre><span></span><code>'
        f'<a id="__codelineno-0-1"></a>{text}</code></pre></div>'
    )


def test_a_report_table_keeps_its_lines_and_a_message_wraps() -> None:
    report = _output(
        "lpim check of enc: 1 failed\nproperty  dtype    verdict  note\n"
        "--------  -------  -------  ----\nfinite    float32  FAIL     [1] NaN ..."
    )
    message = _output("RuntimeError: The shape of the 3D attn_mask is torch.Size([1600, 21, 21])")
    diff = _output("- a\n+ b", language="diff")
    html = hooks.on_page_content(report + message + diff, page=_Page())
    assert html.count("lpim-report") == 1
    assert html.startswith('<div class="language-text highlight lpim-report">')
    assert message in html and diff in html


class _Page:
    class file:  # the shape mkdocs gives a page
        src_uri = "planted.md"


def test_the_cache_key_follows_every_input(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("markdown_exec")
    cache = _load("docs_cache")
    monkeypatch.setattr(cache, "_inputs", "inputs-1")
    monkeypatch.setattr(cache, "_history", {})
    options = {"returncode": 0, "id": "", "interactive": False}
    key = cache._key("page.md@1", "s", "print(x)", options)
    assert key == cache._key("page.md@1", "s", "print(x)", dict(options))  # stable
    assert key != cache._key("page.md@2", "s", "print(x)", options)  # the page's Markdown
    assert key != cache._key("page.md@1", "s", "print(y)", options)  # the code
    assert key != cache._key("page.md@1", "s", "print(x)", {**options, "title": "t"})
    monkeypatch.setattr(cache, "_history", {"s": ["x = 1"]})
    assert key != cache._key("page.md@1", "s", "print(x)", options)  # the session's state
    monkeypatch.setattr(cache, "_history", {})
    monkeypatch.setattr(cache, "_inputs", "inputs-2")
    assert key != cache._key("page.md@1", "s", "print(x)", options)  # lpim, scripts, versions
