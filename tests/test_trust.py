"""First contact: verdicts that neither overclaim nor cry wolf (the driver, precision, contract).

- the whole matrix runs after a failure, every failure is on ``.failures`` with a reproducer;
- a crash is its own ``runs`` row, and the property it interrupted still gets a verdict;
- a dtype the encoder cannot run is ``unsupported`` (a hint, exit 0), while a fill value that
  overflows the dtype and a crash that needs padding stay failures;
- ``precision="autocast"`` runs what ``cast`` cannot;
- the data contract narrows what is drawn, and the report says which contract was checked;
- headlines count what happened; ``strict=True`` fails on rows not run;
- the gradient property under garbage, the largest error over all examples, empty lanes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lpim import LaneBatch
from lpim.cli import main
from lpim.strategies import lane_batches
from lpim.testing import (
    CheckReport,
    DataContract,
    EncoderPropertyError,
    IncompleteCheckError,
    PropertyResult,
    check_encoder,
    check_lane_consumer,
)
from lpim.zoo import BUGS, CONSUMER_BUGS, CORRECT
from lpim.zoo.contracts import Float32Internal, GruPackedRightPadding

HAS_CUDA = torch.cuda.is_available()
FAST = settings(max_examples=8, deadline=None, database=None, derandomize=True)


# -- the whole matrix ----------------------------------------------------------------------------


def test_a_bug_with_two_failing_properties_shows_both_rows_and_both_reproducers() -> None:
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(BUGS["repeat_head_order"].factory(), dtype=torch.float32, settings=FAST)
    failure = info.value
    failed = [f.property_name for f in failure.failures]
    assert failed[0] == "matches_unpadded" and "lanes_independent" in failed, failed
    assert all(f.reproducer and f.report is failure.report for f in failure.failures)
    rows = {r.property_name: r.verdict for r in failure.report.results}  # type: ignore[union-attr]
    assert rows["matches_unpadded"] == rows["lanes_independent"] == "FAIL"
    assert rows["finite"] == rows["ignores_padding"] == "pass"  # ran after the first failure
    message = str(failure)
    assert "more failure(s) in this check" in message and "lanes_independent at float32" in message


def test_a_crash_is_its_own_runs_row_and_the_interrupted_property_still_decides() -> None:
    class CrashesOnOnePointLanes(torch.nn.Module):
        """Mean-pools over slots (a bug) and cannot take a lane of one point."""

        in_dim = 2

        def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
            lengths = point_mask.sum(-1)
            if bool((lengths == 1).any()):
                raise ValueError("a lane of one point has no direction")
            return torch.where(point_mask[..., None], points, 0).mean(2)  # BUG: over slots

    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(
            CrashesOnOnePointLanes(),
            dtype=torch.float64,
            properties=["finite", "matches_unpadded"],
            settings=FAST,
        )
    rows = info.value.report.results  # type: ignore[union-attr]
    verdicts = [(r.property_name, r.verdict) for r in rows]
    assert ("runs", "FAIL") in verdicts, verdicts
    assert ("matches_unpadded", "FAIL") in verdicts, verdicts  # the wrong answer, not the crash
    assert [r.property_name for r in rows].count("runs") == 1
    # With the contract its loader keeps, the crash is gone and the real bug is what fails.
    with pytest.raises(EncoderPropertyError) as narrowed:
        check_encoder(
            CrashesOnOnePointLanes(),
            dtype=torch.float64,
            properties=["finite", "matches_unpadded"],
            settings=FAST,
            min_points=2,
        )
    assert [f.property_name for f in narrowed.value.failures] == ["matches_unpadded"]


# -- precision -----------------------------------------------------------------------------------


def test_float32_internal_encoder_is_unsupported_under_cast_with_a_hint_and_passes() -> None:
    report = check_encoder(Float32Internal().eval(), settings=FAST)
    assert report.passed, str(report)
    by_dtype = {(r.property_name, r.dtype): r for r in report.results}
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        row = by_dtype[("matches_unpadded", dtype)]
        assert row.verdict == "unsupported", str(report)
        # decided by experiment: the op that raised saw tensors of two dtypes
        assert "tensors meet in aten." in row.note and "another dtype internally" in row.note
    # the advice names the option as this door spells it (a keyword here; a flag for lpim check)
    assert "precision='autocast'" in by_dtype[("finite", torch.bfloat16)].note
    assert by_dtype[("matches_unpadded", torch.float32)].verdict == "pass"
    assert "all properties hold" not in str(report)
    assert "unsupported" in report.headline
    assert any("no float64 reference" in note for note in report.notes)


def test_float32_internal_encoder_runs_every_low_precision_row_under_autocast() -> None:
    report = check_encoder(
        Float32Internal().eval(),
        dtype=[torch.float32, torch.bfloat16, torch.float16],
        precision="autocast",
        settings=FAST,
    )
    ran = [r for r in report.results if r.property_name != "devices_agree"]
    assert ran and all(r.verdict == "pass" for r in ran), str(report)


def test_an_overflowing_fill_stays_a_runs_failure_not_unsupported() -> None:
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(BUGS["fill_minus_1e9_fp16"].factory(), dtype=torch.float16, settings=FAST)
    assert info.value.property_name == "runs"
    assert not any(r.verdict == "unsupported" for r in info.value.report.results)  # type: ignore[union-attr]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_the_seed_crash_stays_caught_at_every_dtype_in_both_precisions(dtype: torch.dtype) -> None:
    for precision in ("cast", "autocast"):
        with pytest.raises(EncoderPropertyError) as info:
            check_encoder(
                BUGS["seed_crash_3d_mask"].factory(),
                dtype=dtype,
                precision=precision,
                properties=["finite"],
                settings=FAST,
            )
        assert info.value.property_name == "runs", precision


def test_a_float64_reference_that_cannot_run_is_not_blamed_on_float32() -> None:
    report = check_encoder(Float32Internal().eval(), dtype=torch.float32, settings=FAST)
    assert all(r.verdict in ("pass", "skipped") for r in report.results), str(report)
    notes = [r.note for r in report.results if r.property_name == "matches_unpadded"]
    assert notes and notes[0].startswith("no float64 reference")


# -- the data contract ---------------------------------------------------------------------------


def test_gru_over_packed_sequences_passes_with_right_padding_and_fails_without() -> None:
    gru = GruPackedRightPadding().eval()
    report = check_encoder(gru, dtype=torch.float64, layout="right", settings=FAST)
    assert report.passed and "right padding only" in str(report)
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(gru, dtype=torch.float64, settings=FAST)
    assert info.value.property_name == "matches_unpadded"


@settings(max_examples=60, deadline=None)
@given(
    contract=st.builds(
        DataContract.of,
        layout=st.sampled_from(["right", "left", ["left", "scattered"]]),
        garbage=st.sampled_from(["finite", "zeros", "repeat_last"]),
        min_points=st.integers(1, 3),
        empty_lanes=st.booleans(),
    ),
    data=st.data(),
)
def test_batches_drawn_under_a_contract_keep_it(
    contract: DataContract, data: st.DataObject
) -> None:
    batch = data.draw(
        contract.batches(
            point_dim=2,
            dtype=torch.float64,
            device=torch.device("cpu"),
            garbage=contract.garbage if contract.garbage != "finite" else ["finite"],
        )
    )
    lengths = batch.lengths
    assert bool(((lengths == 0) | (lengths >= contract.min_points)).all())
    if not contract.empty_lanes:
        assert bool((lengths > 0).all())
    padded = batch.points[~batch.point_mask]
    assert bool(padded.isfinite().all())
    if contract.garbage == "zeros":
        assert bool((padded == 0).all())
    if "left" not in contract.layout and "scattered" not in contract.layout:
        assert batch.layout in ("right", "none", "full", "empty")


def test_repeat_last_padding_holds_each_lanes_last_real_point() -> None:
    @settings(max_examples=30, deadline=None)
    @given(lane_batches(garbage="repeat_last", layout=["right", "left"], dtype=torch.float64))
    def check(batch: LaneBatch) -> None:
        for b, m in torch.ones(batch.shape[:2]).nonzero().tolist():
            real = batch.point_mask[b, m]
            padded = batch.points[b, m][~real]
            expected = batch.points[b, m][real][-1] if bool(real.any()) else torch.zeros(2)
            assert bool((padded == expected).all())

    check()


def test_the_report_names_the_contract_checked() -> None:
    report = check_encoder(
        CORRECT["masked_mean"].factory(),
        dtype=torch.float32,
        layout="right",
        garbage="finite",
        min_points=2,
        settings=FAST,
    )
    text = str(report)
    assert "data contract: right padding only, finite garbage, >= 2 points a lane" in text
    rows = {r.property_name: r for r in report.results}
    assert rows["ignores_nonfinite_padding"].verdict == "excluded"
    assert "garbage='finite'" in rows["ignores_nonfinite_padding"].note


def test_finite_padding_only_encoder_passes_finite_and_is_named_for_nonfinite() -> None:
    encoder = BUGS["kpm_values_from_padding"].factory()
    report = check_encoder(encoder, dtype=torch.float64, garbage="finite", settings=FAST)
    assert report.passed, str(report)
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(encoder, dtype=torch.float64, settings=FAST)
    assert info.value.property_name == "ignores_nonfinite_padding"
    assert "loader must never write NaN/inf" in str(info.value)


def test_a_user_strategy_replaces_the_drawing() -> None:
    drawn: list[LaneBatch] = []
    strategy = lane_batches(batch_size=2, num_lanes=3, num_points=4, layout="right")

    def spy(points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        drawn.append(LaneBatch(points, point_mask))
        return torch.where(point_mask[..., None], points, 0).sum(2)

    check_encoder(
        spy, point_dim=2, dtype=torch.float64, strategy=strategy, properties="finite", settings=FAST
    )
    shapes = {b.shape[:3] for b in drawn}
    assert (2, 3, 4) in shapes and shapes <= {(2, 3, 4), (1, 1, 3)}  # (1, 1, 3): lpim's probe


def test_bad_contract_values_name_the_keyword() -> None:
    encoder = CORRECT["masked_mean"].factory()
    with pytest.raises(ValueError, match="garbage must be one of"):
        check_encoder(encoder, garbage="nans")
    with pytest.raises(ValueError, match="layout must be among"):
        check_encoder(encoder, layout="middle")
    with pytest.raises(ValueError, match="min_points must be >= 1"):
        check_encoder(encoder, min_points=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        check_encoder(encoder, precision="half")


# -- honest verdicts -----------------------------------------------------------------------------


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA, where devices_agree skips")
def test_a_check_where_every_row_is_skipped_does_not_say_all_properties_hold() -> None:
    report = check_encoder(
        CORRECT["masked_mean"].factory(), properties="devices_agree", settings=FAST
    )
    assert report.passed and not report.complete
    assert "all properties hold" not in str(report)
    assert report.headline.startswith("0 checks hold, 4 skipped (no CUDA device)")
    with pytest.raises(IncompleteCheckError, match="rows not run"):
        check_encoder(
            CORRECT["masked_mean"].factory(),
            properties="devices_agree",
            settings=FAST,
            strict=True,
        )


def test_headline_counts_every_verdict() -> None:
    report = CheckReport(
        "x",
        [
            PropertyResult("finite", torch.float32, "pass", 1, 0.0, 0.0),
            PropertyResult("finite", torch.float16, "unsupported", 0, 0.0, 0.0, "no kernel: x"),
            PropertyResult("devices_agree", torch.float32, "skipped", 0, 0.0, 0.0, "needs CUDA"),
            PropertyResult("matches_unpadded", torch.float32, "FAIL", 3, 0.0, 40.0, "x"),
        ],
    )
    assert report.headline == (
        "1 checks hold, 1 unsupported (no kernel), 1 skipped (no CUDA device), 1 failed"
    )
    all_pass = CheckReport("x", [PropertyResult("finite", torch.float32, "pass", 1, 0.0, 0.0)])
    assert all_pass.headline.startswith("all properties hold")


# -- blind spots ---------------------------------------------------------------------------------


def test_nan_poisoned_weight_gradients_are_caught_by_the_gradient_property_only() -> None:
    entry = BUGS["linear_on_every_slot"]
    assert entry.caught_by == "gradients_ignore_padding"
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(entry.factory(), dtype=torch.float32, settings=FAST)
    assert [f.property_name for f in info.value.failures] == ["gradients_ignore_padding"]
    assert "NaN or inf values" in info.value.detail


def test_the_report_gives_the_largest_error_next_to_the_shrunk_examples() -> None:
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(
            BUGS["mean_over_slots"].factory(),
            dtype=torch.float32,
            properties="matches_unpadded",
            settings=settings(FAST, max_examples=30),
        )
    failure = info.value
    assert failure.largest_ratio >= failure.error_ratio > 1.0
    row = failure.report.results[-1]  # type: ignore[union-attr]
    assert row.max_error_ratio == failure.largest_ratio
    if failure.largest_ratio > 1.5 * failure.error_ratio:
        assert "largest error seen" in str(failure)


def test_empty_lanes_are_described_and_zero_can_be_required() -> None:
    bias = BUGS["empty_lane_bias"]
    report = check_encoder(bias.factory(), dtype=torch.float64, settings=FAST)
    assert any("empty lanes give one constant vector" in note for note in report.notes)
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(bias.factory(), dtype=torch.float64, settings=FAST, **bias.contract)
    assert info.value.property_name == "empty_lanes_zero"
    zeros = check_encoder(
        CORRECT["masked_mean"].factory(), dtype=torch.float64, empty_lanes="zero", settings=FAST
    )
    assert any("exact zeros" in note for note in zeros.notes)


# -- consumers share the driver ------------------------------------------------------------------


def test_consumer_checks_run_the_whole_matrix_too() -> None:
    entry = CONSUMER_BUGS["unmasked_cross_attention"]
    with pytest.raises(AssertionError) as info:
        check_lane_consumer(
            entry.factory(), other_inputs=entry.other_inputs, dtype=torch.float32, settings=FAST
        )
    failed = {f.property_name for f in info.value.failures}  # type: ignore[attr-defined]
    assert {"ignores_appended_lanes", "ignores_padded_lanes"} <= failed


# -- the command ---------------------------------------------------------------------------------


def test_cli_contract_flags_precision_and_strict(capsys: pytest.CaptureFixture[str]) -> None:
    target = "lpim.zoo.contracts:GruPackedRightPadding"
    assert main(["check", target, "--dtype", "float64", "--layout", "right"]) == 0
    out = capsys.readouterr().out
    assert "right padding only" in out
    target = "lpim.zoo.contracts:Float32Internal"
    assert main(["check", target, "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "unsupported" in out and "--precision autocast" in out
    assert main(["check", target, "--dtype", "bfloat16", "--precision", "autocast"]) == 0
    assert "unsupported" not in capsys.readouterr().out.split("lpim check of")[-1]
    assert main(["check", target, "--dtype", "bfloat16", "--strict"]) == 1


def test_cli_reads_tool_lpim_from_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lpim]\nlayout = ["right"]\ngarbage = "finite"\nmin-points = 2\n'
    )
    monkeypatch.chdir(tmp_path)
    target = "lpim.zoo.contracts:GruPackedRightPadding"
    assert main(["check", target, "--dtype", "float64", "--max-examples", "5"]) == 0
    out = capsys.readouterr().out
    assert "pyproject.toml [tool.lpim]" in out
    assert "right padding only, finite garbage, >= 2 points" in out
    (tmp_path / "pyproject.toml").write_text("[tool.lpim]\nlayuot = 'right'\n")
    assert main(["check", target]) == 2
    assert "unknown keys in [tool.lpim]: ['layuot']" in capsys.readouterr().err


def test_threads_are_one_during_a_check_and_restored_after() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []

    def encoder(points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return torch.where(point_mask[..., None], points, 0).sum(2)

    check_encoder(encoder, point_dim=2, dtype=torch.float64, properties="finite", settings=FAST)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_nothing_is_written_to_the_folder_of_a_passing_cli_check(tmp_path: Path) -> None:
    target = "lpim.encoder:PriorEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32)"

    def lpim_check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lpim", "check", target, "--dtype", "float32"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")},
            check=False,
        )

    result = lpim_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    # derandomized: the same rows, verdicts and example counts twice (the error ratios depend
    # on the target's unseeded weights, not on the check)
    assert _verdicts(result.stdout) == _verdicts(lpim_check().stdout)


def _verdicts(out: str) -> list[tuple[str, ...]]:
    rows = [line.split() for line in out.splitlines() if re.search(r"\d+ examples", line)]
    return [tuple(row[:4]) for row in rows]
