"""The sanitizer in pytest (``--lpim-sanitize``, ``lpim_sanitize``) and in the shell."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lpim.cli import main

TESTS = """
import torch
from torch import nn

H = 4
torch.manual_seed(0)
MHA = nn.MultiheadAttention(8, H, batch_first=True)
X = torch.randn(6, 5, 8)
PER_LANE = torch.zeros(6, 5, 5, dtype=torch.bool)
PER_LANE[0, :, 3:] = True  # lane 0 has padding, the others none


def test_head_major():
    MHA(X, X, X, attn_mask=PER_LANE.repeat(H, 1, 1))


def test_interleaved():
    MHA(X, X, X, attn_mask=PER_LANE.repeat_interleave(H, 0))
"""


def test_option_runs_every_test_under_raise(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_masks=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--lpim-sanitize")
    result.assert_outcomes(passed=1, failed=1)
    written = (pytester.path / "test_masks.py").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(written) if ".repeat(H, 1, 1)" in text)
    result.stdout.fnmatch_lines([f"*MaskHazardError: head_major_3d_mask at test_masks.py:{line} *"])
    # without the option the silent bug stays silent
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=2)


def test_fixture_for_one_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fixture=TESTS
        + """

def test_with_fixture(lpim_sanitize):
    MHA(X, X, X, attn_mask=PER_LANE.repeat_interleave(H, 0))
    assert lpim_sanitize.calls == 1 and lpim_sanitize.ok


def test_with_fixture_fails(lpim_sanitize):
    MHA(X, X, X, key_padding_mask=PER_LANE[:, 0].float())
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-k", "with_fixture")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*MaskHazardError: float_mask_as_additive*"])


SEED = """
import sys
import torch
from torch import nn

import lpim

B, M, N, H = 8, 200, 20, 8
FIX = sys.argv[1]
torch.manual_seed(0)
point_mask = torch.zeros(B, M, N, dtype=torch.bool)
point_mask[:, :10] = torch.arange(N) < torch.randint(5, N + 1, (B, 10, 1))
mha = nn.MultiheadAttention(32, H, batch_first=True)
tokens = torch.randn(B * M, N + 1, 32)  # a query token + N points per lane
kpm = lpim.masks.to_key_padding_mask(point_mask, query_tokens=1)  # [B*M, 1+N], True = ignore
if FIX == "repeat":
    attn_mask = kpm[:, None, :].expand(-1, N + 1, -1).repeat(H, 1, 1)
    out = mha(tokens, tokens, tokens, attn_mask=attn_mask)
else:
    out = mha(tokens, tokens, tokens, key_padding_mask=kpm)
print("ran", sys.argv[1:], __name__)
"""


def test_cli_runs_a_script_under_the_sanitizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "train_step.py"
    script.write_text(SEED)
    monkeypatch.chdir(tmp_path)
    argv_before, path_before = list(sys.argv), list(sys.path)
    assert main(["sanitize", str(script), "repeat"]) == 1
    out = capsys.readouterr().out
    assert "ran ['repeat'] __main__" in out
    line = 1 + SEED.splitlines().index("    out = mha(tokens, tokens, tokens, attn_mask=attn_mask)")
    assert "head_major_3d_mask" in out and f"train_step.py:{line}" in out, out
    assert main(["sanitize", str(script), "kpm"]) == 0
    out = capsys.readouterr().out
    assert "no findings in 1 attention call(s)" in out
    assert sys.argv == argv_before and sys.path == path_before


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seed_training_step.py"


@pytest.mark.parametrize(
    ("mask_style", "status", "kind"),
    [("crash", 1, "missing_head_rows"), ("repeat", 1, "head_major_3d_mask"), ("kpm", 0, None)],
)
def test_seed_example_under_the_cli(
    mask_style: str, status: int, kind: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sanitize", str(EXAMPLE), mask_style]) == status
    out = capsys.readouterr().out
    if kind is None:
        assert "no findings in 2 attention call(s)" in out, out
    else:
        call = (
            "src_mask=per_lane)" if mask_style == "crash" else "src_mask=per_lane.repeat(H, 1, 1))"
        )
        line = 1 + next(i for i, t in enumerate(EXAMPLE.read_text().splitlines()) if call in t)
        assert f"{kind}  " in out and f"seed_training_step.py:{line}" in out, out


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sanitize", str(tmp_path / "missing.py")]) == 2
    assert "no such script" in capsys.readouterr().err
    assert main(["sanitize"]) == 2


def test_cli_script_that_raises_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "broken.py"
    script.write_text("raise ValueError('boom')\n")
    assert main(["sanitize", str(script)]) == 1
    assert "ValueError: boom" in capsys.readouterr().err


def test_cli_script_sys_exit(tmp_path: Path) -> None:
    script = tmp_path / "exits.py"
    script.write_text("import sys\nsys.exit(3)\n")
    assert main(["sanitize", str(script)]) == 3


def test_cli_fail_on_no_attention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "no_attention.py"
    script.write_text("import torch\ntorch.randn(3).softmax(-1)\n")
    assert main(["sanitize", str(script)]) == 0
    assert "saw no attention call" in capsys.readouterr().out
    assert main(["sanitize", "--fail-on-no-attention", str(script)]) == 1
    attention = tmp_path / "attention.py"
    attention.write_text(
        "import torch\nq = torch.randn(1, 2, 3, 4)\n"
        "torch.nn.functional.scaled_dot_product_attention(q, q, q)\n"
    )
    assert main(["sanitize", "--fail-on-no-attention", str(attention)]) == 0
