"""A Returns section is one value on the API pages, however many lines its docstring wraps to:
the docstring style (Google, a Returns paragraph) and the renderer's parser options in
`mkdocs.yml` agree, so a wrapped line never becomes another "Tensor" row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
griffe = pytest.importorskip("griffe", reason="the docs extras: pip install -e '.[docs]'")
yaml = pytest.importorskip("yaml")


def _site_parser_options() -> dict[str, Any]:
    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("", lambda loader, suffix, node: None)  # !!python tags
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)
    (plugin,) = [
        p["mkdocstrings"] for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p
    ]
    options = plugin["handlers"]["python"]["options"]
    assert options["docstring_style"] == "google"
    return dict(options.get("docstring_options", {}))


def _returns(text: str) -> list[str]:
    docstring = griffe.Docstring(text, parser="google", parser_options=_site_parser_options())
    sections = [s for s in docstring.parse() if s.kind.value in ("returns", "yields")]
    return [item.description for section in sections for item in section.value]


def test_a_wrapped_returns_line_stays_in_its_value() -> None:
    wrapped = """Convert.

    Returns:
        `(B*M, S)` bool for `nn.MultiheadAttention(key_padding_mask=...)` or
        `nn.TransformerEncoder(src_key_padding_mask=...)`. This 2D mask is the right fix for
        the "shape of the 3D attn_mask" error.
    """
    (value,) = _returns(wrapped)
    assert value.startswith("`(B*M, S)` bool") and value.endswith(
        '"shape of the 3D attn_mask" error.'
    )


def test_every_returns_section_of_lpim_is_one_value() -> None:
    package = griffe.load(
        "lpim",
        search_paths=[str(ROOT)],
        docstring_parser="google",
        docstring_options=_site_parser_options(),
        allow_inspection=False,
        resolve_aliases=False,
    )
    split: list[str] = []
    seen: set[str] = set()

    def walk(obj: Any) -> None:
        if obj.path in seen or obj.is_alias:
            return
        seen.add(obj.path)
        if obj.docstring:
            for section in obj.docstring.parse():
                if section.kind.value in ("returns", "yields") and len(section.value) != 1:
                    split.append(f"{obj.path}: {len(section.value)} values")
        for member in obj.members.values():
            walk(member)

    walk(package)
    assert len(seen) > 100 and not split, split
