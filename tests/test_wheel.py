"""The wheel works alone (issue 24, item 4): built with `pip wheel . --no-deps`, installed in a
fresh venv away from the checkout (torch pinned first, as every install script does), it runs
`lpim check`, `lpim vendor`, `lpim sanitize` and the pytest plugin.

About a minute, most of it pip unpacking torch from its cache or a local wheel; marked `wheel`
(`-m "not wheel"` leaves it out while editing). Skipped, saying why, only where pip cannot get
torch 2.13.0 without the network it does not have.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"

pytestmark = pytest.mark.wheel

_SANITIZED_SCRIPT = """
import torch
from torch import nn

attention = nn.MultiheadAttention(8, 2, batch_first=True).eval()
tokens = torch.randn(3, 5, 8)
key_padding_mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
attention(tokens, tokens, tokens, key_padding_mask=key_padding_mask)
print("step done")
"""

_PLUGIN_TEST = """
from lpim.zoo import CORRECT


def test_the_fixture_checks_an_encoder(lpim_check, lpim_device):
    report = lpim_check(
        CORRECT["masked_mean"].factory, dtype="float32", properties=["finite", "matches_unpadded"]
    )
    assert report.passed and lpim_device.type == "cpu"
"""


def _run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, (
        f"{what}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def test_the_wheel_installed_alone_runs_the_command_and_the_plugin(tmp_path: Path) -> None:
    # build: no isolation where this environment has the build backend (no network needed)
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)]
    _ok(_run([*build, "--no-build-isolation"], tmp_path), "pip wheel")
    (wheel,) = dist.glob("lpim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lpim/py.typed" in names and "lpim/encoder.py" in names
    assert any(n.startswith("lpim/zoo/") for n in names)
    assert not any(n.startswith(("tests/", "docs/", "benchmarks/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    declared = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]" in declared and "[hypothesis]" in declared

    # a fresh venv, torch pinned first
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", str(venv)], tmp_path), "python -m venv")
    python, lpim = str(venv / "bin" / "python"), str(venv / "bin" / "lpim")
    pip = [python, "-m", "pip", "install", "-q"]
    torch_install = _run([*pip, TORCH_PIN], tmp_path, timeout=600)
    if torch_install.returncode != 0:
        pytest.skip(
            f"pip cannot install {TORCH_PIN} here (no local wheel or cache, no network): "
            + torch_install.stderr.strip().splitlines()[-1]
        )
    _ok(_run([*pip, str(wheel)], tmp_path, timeout=600), "pip install the wheel")

    # away from the checkout: a folder of its own, and lpim is the installed one
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _ok(_run([python, "-c", "import lpim; print(lpim.__file__)"], work), "import lpim")
    assert str(venv) in where and str(ROOT) not in where

    # lpim check, with --json
    check = _run(
        [lpim, "check", "--dtype", "float32", "--max-examples", "3", "--property", "finite",
         "--property", "matches_unpadded", "--json", "report.json"],
        work,
    )  # fmt: skip
    assert "all properties hold" in _ok(check, "lpim check")
    report = json.loads((work / "report.json").read_text())
    assert report["exit_status"] == 0 and report["versions"]["torch"].startswith("2.13.0")

    # lpim vendor
    _ok(_run([lpim, "vendor", "vendored/"], work), "lpim vendor")
    assert (work / "vendored" / "encoder.py").is_file()

    # lpim sanitize
    (work / "step.py").write_text(_SANITIZED_SCRIPT)
    sanitized = _ok(_run([lpim, "sanitize", "step.py"], work), "lpim sanitize")
    assert "step done" in sanitized

    # the plugin: a project of its own, the fixture and a profile
    (work / "test_encoder.py").write_text(_PLUGIN_TEST)
    tested = _run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile",
         "lpim-dev", "test_encoder.py"],
        work,
    )  # fmt: skip
    assert "1 passed" in _ok(tested, "pytest with the plugin")
