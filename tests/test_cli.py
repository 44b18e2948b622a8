"""The `lpim` command: conventions table, vendor, exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lpim import masks
from lpim.cli import main


def test_conventions_lists_every_convention(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conventions"]) == 0
    out = capsys.readouterr().out
    for convention in masks.CONVENTIONS.values():
        assert convention.name in out and convention.meaning in out
    assert "True = ignore" in out and "True = attend" in out


def test_conventions_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conventions", "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| convention") and set(lines[1]) <= {"|", "-"}
    assert len(lines) == 2 + len(masks.CONVENTIONS)


def test_vendor_writes_a_standalone_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["vendor", str(tmp_path)]) == 0
    written = tmp_path / "encoder.py"
    text = written.read_text()
    assert text.startswith("# Vendored from lpim ")
    assert "\nimport lpim" not in text and "\nfrom lpim" not in text
    # it runs from a directory where lpim is shadowed by nothing but its own file
    check = subprocess.run(
        [sys.executable, "-c", "import encoder, torch; encoder.PriorEncoder(d_model=8, nhead=2)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert main(["vendor", str(written)]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert main(["vendor", str(written), "--force"]) == 0


@pytest.mark.parametrize("dest", ["new/dir/encoder.py", "new/dir/", "new/dir"])
def test_vendor_makes_missing_folders(tmp_path: Path, dest: str) -> None:
    assert main(["vendor", str(tmp_path / dest)]) == 0
    assert (tmp_path / "new" / "dir" / "encoder.py").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["vendor", "/proc/version/encoder.py"], "is a file, not a folder"),
        (["vendor", "notes.txt"], "a folder (existing, or ending in '/') or a .py file"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_console_script_and_module_entry_points() -> None:
    for command in (["lpim", "conventions"], [sys.executable, "-m", "lpim", "conventions"]):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0 and "key_padding_mask" in result.stdout


# -- lpim check ------------------------------------------------------------------------------------


def test_check_passes_the_reference_encoder(capsys: pytest.CaptureFixture[str]) -> None:
    target = "lpim.encoder:PriorEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32)"
    assert main(["check", target, "--dtype", "float32", "--max-examples", "5"]) == 0
    out = capsys.readouterr().out
    assert "matches_unpadded" in out and "0 failed" in out
    if not torch.cuda.is_available():  # devices_agree cannot run: never "all properties hold"
        assert "all properties hold" not in out and "skipped (no CUDA device)" in out


def test_check_fails_with_exit_1_and_writes_the_reproducer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "tests.test_testing:MaskedMean(bug='slots')"
    argv = ["check", target, "--dtype", "float64", "--reproducer-dir", str(tmp_path)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "property 'matches_unpadded' failed" in out
    written = tmp_path / "matches_unpadded_float64.py"
    assert f"python {written}" in out
    root = str(Path(__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    result = subprocess.run([sys.executable, str(written)], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "property 'matches_unpadded' failed" in result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Encoder", "cannot import 'no_such_module_xyz'"),
        ("lpim.encoder", "MODULE:FACTORY"),
        ("lpim.encoder:NoSuchThing", "cannot build the encoder"),
        ("lpim:__version__", "not a callable encoder"),
    ],
)
def test_check_usage_errors_exit_2(
    target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", target]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_check_without_point_dim_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "torch:nn.Identity"]) == 2
    assert "pass --point-dim D" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [[], ["--progress"]])
def test_check_prints_each_row_once_in_a_log_and_progress_on_request(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    target = "lpim.encoder:PriorEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32)"
    argv = ["check", target, "--dtype", "float32", "--profile", "lpim-dev", *flag]
    argv += ["--property", "finite", "--property", "matches_unpadded"]
    assert main(argv) == 0
    out = capsys.readouterr().out  # not a terminal: a log
    lines = out.splitlines()
    # a progress line is indented by two; a footnote's wrapped lines by four
    progress = [line.split() for line in lines if line.startswith("  ") and line[2] != " "]
    table = [line.split() for line in lines if line.startswith(("finite ", "matches_unpadded "))]
    # the table's rows; lpim-dev runs 10 examples each
    assert [row[:3] for row in table] == [
        ["finite", "float32", "10"],
        ["matches_unpadded", "float32", "10"],
    ]
    if flag:  # one finished line per property, before the table
        assert [row[:4] for row in progress] == [
            ["finite", "float32", "pass", "10"],
            ["matches_unpadded", "float32", "pass", "10"],
        ]
        assert out.index("  finite") < out.index("lpim check of")
    else:
        assert progress == [] and out.count("matches_unpadded") == 1
        assert "\r" not in out and "\x1b" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "no-such-profile"], "--profile no-such-profile: unknown Hypothesis profile"),
        (["--device", "tpu"], "--device must be one torch knows (cpu, cuda, ...); got 'tpu'"),
        (["--max-examples", "0"], "--max-examples must be >= 1; got 0"),
    ],
)
def test_check_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is missing")
def test_check_on_missing_cuda_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


# -- lpim diagnose ---------------------------------------------------------------------------------


@pytest.fixture
def seed_point_mask(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    point_mask = torch.rand(2, 3, 4, generator=generator) > 0.4  # [B, M, N], True = real
    point_mask[0, 0] = True
    path = tmp_path / "point_mask.pt"
    torch.save(point_mask, path)
    return path


def test_diagnose_accepts_a_right_mask_and_names_a_mistake(
    tmp_path: Path, seed_point_mask: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    point_mask = torch.load(seed_point_mask)
    right = masks.to_attn_mask_3d(point_mask, num_heads=4, query_tokens=1)
    kpm = masks.to_key_padding_mask(point_mask, query_tokens=1)  # (B*M, 1 + N)
    wrong = kpm[:, None, :].expand(-1, 5, -1).repeat(4, 1, 1)  # head-major: the `repeat` "fix"
    torch.save(right, tmp_path / "right.pt")
    torch.save(wrong, tmp_path / "wrong.pt")
    common = ["--point-mask", str(seed_point_mask), "--num-heads", "4", "--query-tokens", "1"]

    assert main(["diagnose", str(tmp_path / "right.pt"), *common]) == 0
    assert "attn_mask_3d" in capsys.readouterr().out

    assert main(["diagnose", str(tmp_path / "wrong.pt"), *common]) == 1
    out = capsys.readouterr().out
    assert out.startswith("head_major_3d_mask") and "repeat_interleave" in out


def test_diagnose_usage_errors_exit_2(
    tmp_path: Path, seed_point_mask: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_tensor = tmp_path / "dict.pt"
    torch.save({"mask": torch.ones(2)}, not_tensor)
    text = tmp_path / "notes.pt"
    text.write_text("not a torch file")
    for mask_path, message in [
        (tmp_path / "missing.pt", "no such file"),
        (not_tensor, "holds a dict, expected one tensor"),
        (text, "cannot read"),
    ]:
        assert main(["diagnose", str(mask_path), "--point-mask", str(seed_point_mask)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


# -- lpim check --json, --verbose ------------------------------------------------------------------

_TYPES = {
    "string": str,
    "int": int,
    "bool": bool,
    "number": (int, float),
    "object": dict,
    "list of objects": list,
    "list of strings": list,
}


def _documented_json_fields() -> dict[str, str]:
    """`field -> type` from the table of docs/reference/cli.md's "The JSON report"."""
    text = (Path(__file__).parent.parent / "docs" / "reference" / "cli.md").read_text()
    section = text.split("### The JSON report", 1)[1].split("\n## ", 1)[0]
    fields = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            fields[cells[0].strip("`")] = cells[1]
    return fields


def _flattened(document: dict[str, object], prefix: str = "") -> dict[str, object]:
    """`{"a": {"b": 1}, "rows": [{"c": 2}]}` -> `{"a": ..., "a.b": 1, "rows": ..., "rows[].c": 2}`
    (every element of a list of objects)."""
    found: dict[str, object] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        found[name] = value
        if isinstance(value, dict):
            found.update(_flattened(value, f"{name}."))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    found.update(_flattened(item, f"{name}[]."))
    return found


def _matches(value: object, documented: str) -> bool:
    kind, _, nullable = documented.partition(" or ")
    if value is None:
        return nullable == "null"
    if isinstance(value, bool) and kind != "bool":
        return False
    return isinstance(value, _TYPES[kind])


def test_json_report_of_a_failing_check_follows_the_documented_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = "lpim.zoo:BUGS['multiply_by_mask'].factory"
    argv = ["check", target, "--dtype", "float32", "--max-examples", "5", "--json", "out.json"]
    assert main(argv) == 1
    capsys.readouterr()
    report = json.loads((tmp_path / "out.json").read_text())
    documented = _documented_json_fields()
    found = _flattened(report)
    assert set(found) == set(documented), set(found) ^ set(documented)
    for name, value in found.items():
        assert _matches(value, documented[name]), (name, value, documented[name])
    assert report["schema"] == "lpim-check-report/1" and report["exit_status"] == 1
    assert not report["passed"] and report["target"] == target
    (failure,) = report["failures"]
    assert failure["property"] == "ignores_nonfinite_padding" and failure["dtype"] == "float32"
    reproducer = Path(failure["reproducer"])
    assert reproducer.is_file() and reproducer.parent == tmp_path / "lpim-reproducers"
    verdicts = {(r["property"], r["verdict"]) for r in report["rows"]}
    assert ("ignores_nonfinite_padding", "FAIL") in verdicts
    assert report["versions"]["torch"] == torch.__version__


def test_json_report_of_a_pass_and_the_verbose_start_up_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "lpim.encoder:PriorEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32)"
    out_json = tmp_path / "deep" / "report.json"  # its folder is made
    argv = ["check", target, "--dtype", "float32", "--max-examples", "3", "--verbose"]
    argv += ["--property", "finite", "--json", str(out_json)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (startup,) = [line for line in out.splitlines() if line.startswith("start-up: ")]
    assert "import torch" in startup and "first property result" in startup
    report = json.loads(out_json.read_text())
    assert report["exit_status"] == 0 and report["failures"] == [] and report["passed"]
    assert [r["property"] for r in report["rows"]] == ["finite"]
    assert report["timings"]["startup"]["first_result_seconds"] is not None


def test_json_to_a_file_that_cannot_be_written_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    target = "lpim.encoder:PriorEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32)"
    argv = ["check", target, "--dtype", "float32", "--max-examples", "2", "--property", "finite"]
    assert main([*argv, "--json", str(blocker / "report.json")]) == 2
    assert "--json" in capsys.readouterr().err
