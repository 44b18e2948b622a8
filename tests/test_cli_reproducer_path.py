"""`lpim check` puts the current folder on a reproducer's `sys.path` only when the checked code
was imported from it: a check of installed code (the zoo, a package) writes no such line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lpim.cli import _imported_from_cwd


def test_no_module_from_the_current_folder_means_no_sys_path_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _imported_from_cwd() == []


def test_a_module_imported_from_the_current_folder_puts_it_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_encoder_for_lpim_test.py").write_text("ENCODER = None\n")
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location(
        "my_encoder_for_lpim_test", tmp_path / "my_encoder_for_lpim_test.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "my_encoder_for_lpim_test", module)
    assert _imported_from_cwd() == [str(tmp_path.resolve())]
