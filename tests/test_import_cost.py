"""lpim costs nothing until used (issue 24): what a pytest run and the `lpim` command import.

Each test runs a fresh interpreter (the modules loaded are the point) with this checkout first on
`sys.path`, and reads `sys.modules` at the end. How long the imports take is measured by
`benchmarks/import_cost.py`, never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What the plugin may load in a project that never uses lpim: its own module and what it needs.
PLUGIN_MODULES = {"lpim", "lpim._lazy", "lpim._version", "lpim.profiles", "lpim.pytest_plugin"}

_PROBE = """
import json, sys
from pathlib import Path

def pytest_sessionfinish(session):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lpim", "torch", "hypothesis"))
    Path("loaded.json").write_text(json.dumps(loaded))
"""


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path}


def _pytest_loads(project: Path, *args: str) -> set[str]:
    """The lpim, torch and Hypothesis modules loaded by the end of `pytest ARGS` in `project`."""
    (project / "conftest.py").write_text(_PROBE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return set(json.loads((project / "loaded.json").read_text()))


def test_a_plain_pytest_run_imports_no_torch_no_hypothesis_and_only_the_plugin(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    loaded = _pytest_loads(tmp_path)
    assert "lpim.pytest_plugin" in loaded  # the plugin did load: the test is not vacuous
    assert not {m for m in loaded if m.split(".")[0] in ("torch", "hypothesis")}
    assert {m for m in loaded if m.split(".")[0] == "lpim"} <= PLUGIN_MODULES


def test_a_failing_plain_test_loads_none_of_lpim_checks_either(tmp_path: Path) -> None:
    """The plugin's report hook looks at every failure without importing lpim.testing."""
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 3\n")
    (tmp_path / "conftest.py").write_text(_PROBE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "assert (1 + 1) == 3" in result.stdout
    loaded = set(json.loads((tmp_path / "loaded.json").read_text()))
    assert "torch" not in loaded and "lpim.testing" not in loaded


def test_torch_loads_when_an_lpim_fixture_is_used(tmp_path: Path) -> None:
    (tmp_path / "test_device.py").write_text(
        "def test_device(lpim_device):\n    assert lpim_device.type == 'cpu'\n"
    )
    assert "torch" in _pytest_loads(tmp_path)


def test_lpim_profiles_load_in_a_plain_project(tmp_path: Path) -> None:
    (tmp_path / "test_profile.py").write_text(
        "from hypothesis import settings\n"
        "def test_profile():\n"
        "    assert settings.get_current_profile_name() == 'lpim-ci'\n"
        "    assert settings().max_examples == 50\n"
    )
    loaded = _pytest_loads(tmp_path, "--hypothesis-profile", "lpim-ci")
    assert "torch" not in loaded


# -- the command ---------------------------------------------------------------------------------

_RUN = """
import json, sys
from lpim.cli import main
code = main(json.loads(sys.argv[1]))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "hypothesis", "numpy"))
print("LOADED", json.dumps([code, loaded]))
"""


def _command_loads(argv: list[str]) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(argv)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = [line for line in result.stdout.splitlines() if line.startswith("LOADED ")]
    assert last, result.stdout + result.stderr
    code, loaded = json.loads(last[-1].removeprefix("LOADED "))
    return code, loaded


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--help"], 0),
        (["--version"], 0),
        (["check", "--help"], 0),
        (["check-consumer", "--help"], 0),
        (["vendor", "--help"], 0),
        (["sanitize", "--help"], 0),
        (["check", "--min-points", "0"], 2),
        (["check", "--num-points", "2", "--min-points", "3"], 2),
        (["check", "--json", "."], 2),
        (["frobnicate"], 2),
        (["check", "--no-such-flag"], 2),
    ],
)
def test_help_and_argument_errors_import_no_torch(argv: list[str], status: int) -> None:
    code, loaded = _command_loads(argv)
    assert code == status
    assert loaded == [], f"lpim {' '.join(argv)} imported {loaded[:5]}"


def test_vendor_imports_no_torch_itself(tmp_path: Path) -> None:
    """The copy is checked in a subprocess of its own; the command never imports the encoder."""
    code, loaded = _command_loads(["vendor", str(tmp_path)])
    assert code == 0 and (tmp_path / "encoder.py").is_file()
    assert "torch" not in loaded


def test_conventions_imports_torch_because_the_registry_is_read_from_lpim_masks() -> None:
    """Documented: `lpim conventions` reads `lpim.masks.CONVENTIONS`, and importing `lpim.masks`
    imports its converters (torch). When that changes, make this test say so."""
    code, loaded = _command_loads(["conventions"])
    assert code == 0 and "torch" in loaded
