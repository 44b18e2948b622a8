"""A test failed by a sanitizer finding reads as the finding: the traceback ends at the user's
attention call, and neither torch's module machinery nor lpim's hooks show (issue 22, item 8)."""

from __future__ import annotations

import re

import pytest

TESTS = """
import torch
from torch import nn

H = 4
torch.manual_seed(0)
MHA = nn.MultiheadAttention(8, H, batch_first=True)
X = torch.randn(6, 5, 8)
PER_LANE = torch.zeros(6, 5, 5, dtype=torch.bool)
PER_LANE[0, :, 3:] = True  # lane 0 has padding, the others none


def attend(attn_mask):
    return MHA(X, X, X, attn_mask=attn_mask)  # the attention call


def test_head_major_module():
    attend(PER_LANE.repeat(H, 1, 1))


def test_float_mask_function():
    q = torch.randn(1, 2, 5, 4)
    torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(5, 5))


def test_fixture(lpim_sanitize):
    attend(PER_LANE.repeat(H, 1, 1))
"""

# what the failure must not show: torch's module call machinery, lpim's hooks and mode
INTERNALS = re.compile(r"torch[/\\]nn[/\\]|lpim[/\\]sanitizer[/\\]|_call_impl|_pre_hook|hook\(")


def _line_of(text: str, marker: str) -> int:
    return 1 + next(i for i, line in enumerate(text.splitlines()) if marker in line)


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_masks=TESTS)
    monkeypatch.setenv("COLUMNS", "400")  # short summary lines whole
    return pytester


def test_failure_ends_at_the_users_call_with_the_finding(run: pytest.Pytester) -> None:
    result = run.runpytest_subprocess("-p", "no:randomly", "--lpim-sanitize", "--tb=long")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert not INTERNALS.search(out), INTERNALS.search(out)
    written = (run.path / "test_masks.py").read_text()
    call = _line_of(written, "# the attention call")
    sdpa = _line_of(written, "scaled_dot_product_attention(q, q, q")
    # each failure's last source line is the attention call, with the finding right under it
    result.stdout.re_match_lines(
        [
            r">\s+return MHA\(X, X, X, attn_mask=attn_mask\)  # the attention call",
            r"\s+\^+",
            rf"E\s+lpim\.sanitizer\.MaskHazardError: head_major_3d_mask at test_masks\.py:{call} ",
        ],
        consecutive=True,
    )
    result.stdout.re_match_lines(
        [
            r">\s+torch\.nn\.functional\.scaled_dot_product_attention\(",
            r"E\s+lpim\.sanitizer\.MaskHazardError: "
            rf"float_mask_as_additive at test_masks\.py:{sdpa}",
        ],
        consecutive=True,
    )
    assert f"test_masks.py:{call}: MaskHazardError" in out  # the crash location: the user's line
    # the short summary starts with the finding, not the exception's dotted name
    result.stdout.fnmatch_lines(
        [
            f"FAILED test_masks.py::test_head_major_module - head_major_3d_mask at "
            f"test_masks.py:{call} *",
            f"FAILED test_masks.py::test_float_mask_function - float_mask_as_additive at "
            f"test_masks.py:{sdpa} *",
            f"FAILED test_masks.py::test_fixture - head_major_3d_mask at test_masks.py:{call} *",
        ]
    )


def test_full_trace_still_shows_everything(run: pytest.Pytester) -> None:
    """The control: what the plugin hides is there, and `--full-trace` shows it."""
    result = run.runpytest_subprocess(
        "-p", "no:randomly", "--lpim-sanitize", "--full-trace", "-k", "module"
    )
    result.assert_outcomes(failed=1, deselected=2)
    assert INTERNALS.search(result.stdout.str())
