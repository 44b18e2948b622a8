"""The files in examples/ run as a user runs them, and do what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_user_encoder_example_passes_under_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.copy_example(str(EXAMPLES / "test_my_encoder.py"))
    result = pytester.runpytest_subprocess("--hypothesis-profile", "lpim-dev")
    result.assert_outcomes(passed=3)


def test_vendored_encoder_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "vendored_encoder.py")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(bit for bit)" in result.stdout and "0 failed" in result.stdout
