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


_PAGE = """# A page

```python exec="on" session="s"
x = 1
```

```bash exec="on" source="above" result="text"
echo hi
```

```python
print("not executed")
```
"""


def test_python_and_shell_blocks_are_read_as_markdown_exec_runs_them() -> None:
    pytest.importorskip("markdown_exec")
    cache = _load("docs_cache")
    blocks = cache._blocks("page.md", _PAGE)
    assert [(language, session, code) for language, session, code, _ in blocks] == [
        ("python", "s", "x = 1"),
        ("bash", None, "echo hi"),  # a shell block has no session
    ]
    options = blocks[1][3]
    assert cache._key("p@1", None, "echo hi", options, "bash") != cache._key(
        "p@1", None, "echo hi", options, "python"
    )


class _File:
    def __init__(self, folder: Path, name: str, markdown: str) -> None:
        self.src_uri = name
        self.abs_src_path = str(folder / name)
        (folder / name).write_text(markdown, encoding="utf-8")

    def __repr__(self) -> str:
        return self.src_uri


class _Files(list):  # type: ignore[type-arg]
    def documentation_pages(self) -> list[_File]:
        return list(self)


def _run_block(code: str, bash: bool = False) -> str:
    fence = "```bash" if bash else "```python"
    return f'{fence} exec="on"\n{code}\n```\n'


def test_pages_that_execute_nothing_render_first_then_the_largest_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mkdocs")
    cache = _load("docs_cache")
    monkeypatch.setenv("LPIM_DOCS_JOBS", "0")  # order only, no workers
    monkeypatch.setattr(cache, "_unit_of", {})
    files = _Files(
        [
            _File(tmp_path, "small.md", _run_block("print(1)")),
            _File(tmp_path, "plain.md", "# nothing runs here\n"),
            _File(tmp_path, "shell.md", _run_block("lpim check x", bash=True)),
            _File(tmp_path, "api.md", "::: lpim.masks\n"),
        ]
    )
    ordered = cache.prefill(files, config={})
    assert [f.src_uri for f in ordered] == ["plain.md", "api.md", "shell.md", "small.md"]


def test_a_session_on_two_pages_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mkdocs")
    cache = _load("docs_cache")
    monkeypatch.setenv("LPIM_DOCS_JOBS", "0")
    monkeypatch.setattr(cache, "_unit_of", {})
    block = '```python exec="on" session="shared"\nx = 1\n```\n'
    files = _Files([_File(tmp_path, "a.md", block), _File(tmp_path, "b.md", block)])
    with pytest.raises(ValueError, match=r"session 'shared' is used on a\.md and on b\.md"):
        cache.prefill(files, config={})


def test_hypothesis_draws_from_one_pool_of_constants_in_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module loaded after the build started (a page's example, a temporary file) adds
    nothing to what Hypothesis draws."""
    from hypothesis.internal.conjecture import providers

    monkeypatch.setattr(providers, "_get_local_constants", providers._get_local_constants)
    hooks._pin_hypothesis_constants()
    before = providers._get_local_constants()
    (tmp_path / "late_module.py").write_text("MARK = 123.456789\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("late_module")
    after = providers._get_local_constants()
    assert after is before
    assert 123.456789 not in after.floats
    monkeypatch.delitem(sys.modules, "late_module")
