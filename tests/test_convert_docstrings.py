"""``scripts/convert_docstrings.py`` turns each reST construct into Markdown, and only that."""

from __future__ import annotations

import ast
import importlib.util
import textwrap
from pathlib import Path

from tests.test_docstrings import rest_in_docstrings

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "convert_docstrings", ROOT / "scripts" / "convert_docstrings.py"
)
assert _spec is not None and _spec.loader is not None
convert = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert)

SOURCE = textwrap.dedent(
    '''\
    """Masks, see :func:`to_key_padding_mask` and :class:`~lpim.batch.LaneBatch`.

    =============  ===========  ====================================
    convention     dtype        meaning
    =============  ===========  ====================================
    ``point_mask`` bool         True = real point (lpim)
    ``additive``   float        0 keep, -inf block, and a long cell
                                that continues on the next line
    =============  ===========  ====================================

    Example::

        mask = to_key_padding_mask(point_mask)
    """

    LIMIT = 3
    """The limit, unlike :mod:`torch.nn` which is not on the site."""


    def to_key_padding_mask(point_mask):
        """Build it (the inverse is :func:`from_key_padding_mask`).

        Example:
            >>> to_key_padding_mask(x)
            tensor([True])
        """
        return ~point_mask  # :func:`in code` is never touched
    '''
)
INVENTORY = {
    "lpim.masks.convert.to_key_padding_mask": 2,
    "lpim.masks.to_key_padding_mask": 1,
    "lpim.LaneBatch": 1,
    "lpim.batch.LaneBatch": 2,
}


def _convert(source: str) -> str:
    resolver = convert.Resolver(INVENTORY)
    return str(convert.convert_source(source, "lpim.masks.convert", resolver, []))


def test_each_rest_construct_becomes_markdown() -> None:
    out = _convert(SOURCE)
    assert rest_in_docstrings(SOURCE) and rest_in_docstrings(out) == []
    ast.parse(out)
    assert "[`to_key_padding_mask`][lpim.masks.convert.to_key_padding_mask]" in out
    assert "[`LaneBatch`][lpim.batch.LaneBatch]" in out  # `~` shows the last component
    assert "`torch.nn` which" in out  # no target on the site: backticks
    assert "`from_key_padding_mask`" in out and "][lpim.masks.convert.from_" not in out
    assert "| convention | dtype | meaning |\n|---|---|---|" in out
    assert "| `additive` | float | 0 keep, -inf block, and a long cell that continues on" in out
    assert "Example:\n\n```python\nmask = to_key_padding_mask(point_mask)\n```" in out
    assert "        ```python\n        >>> to_key_padding_mask(x)\n" in out
    assert "        tensor([True])\n        ```" in out
    assert "# :func:`in code` is never touched" in out


def test_converting_twice_changes_nothing_more() -> None:
    once = _convert(SOURCE)
    assert _convert(once) == once


def test_lines_that_grow_past_100_characters_are_rewrapped() -> None:
    source = (
        "def f():\n"
        '    """Short.\n\n'
        "    A paragraph that mentions :func:`to_key_padding_mask` and then goes on and on until\n"
        "    the next line.\n"
        '    """\n'
    )
    out = _convert(source)
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "[`to_key_padding_mask`][lpim.masks.convert.to_key_padding_mask]" in out
