"""README's fix section runs and prints what it says; its Quick start is what CI relies on."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _section(heading: str) -> str:
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else None]


def test_the_fix_section_runs_and_prints_what_it_shows() -> None:
    section = _section("The fix")
    code = re.findall(r"```python\n(.*?)```", section, re.S)
    shown = re.findall(r"```text\n(.*?)```", section, re.S)
    assert code and len(shown) == 1
    assert "key_padding_mask=" in code[0] and "nn.MultiheadAttention(" in code[0]
    namespace: dict[str, object] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in code:
            exec(block, namespace)
    assert printed.getvalue().strip() == shown[0].strip()
    assert tuple(namespace["out"].shape) == (1600, 21, 256)  # type: ignore[attr-defined]


def test_quick_start_is_one_bash_block_of_two_commands_in_a_clone() -> None:
    section = _section("Quick start")
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    assert [language for language, _ in blocks] == ["bash"]
    assert blocks[0][1].strip().splitlines() == [
        "pip install torch==2.13.0 && pip install . && lpim check",
        "pip install torch==2.13.0 && pip install -e '.[dev]' && python -m pytest -n auto",
    ]
    assert "clone" in section.split("```")[0]
