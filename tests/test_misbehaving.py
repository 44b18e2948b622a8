"""Misbehaving encoders (lpim.zoo.misbehaving): each reported clearly, never a crash of the checker.

Every entry of ``MISBEHAVING`` is checked twice, through ``check_encoder`` and through
``lpim check``: the first must raise ``EncoderPropertyError`` naming the entry's property and
matching its message, the second must exit 1 and print the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from lpim.cli import main
from lpim.testing import EncoderPropertyError, check_encoder
from lpim.testing._protocol import training_modules
from lpim.zoo.misbehaving import MISBEHAVING, DropoutMean, Misbehaviour, Slow, TrainingWrapper

# Small and quick: every misbehaviour shows on the simplest batches.
FAST = settings(max_examples=10, database=None, deadline=None)
SIZES = {"batch_size": (1, 2), "num_lanes": (1, 3), "num_points": (1, 4)}


@pytest.mark.parametrize("entry", list(MISBEHAVING.values()), ids=list(MISBEHAVING))
def test_check_encoder_reports_each_misbehaviour(entry: Misbehaviour) -> None:
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(
            entry.factory(),
            dtype=torch.float32,
            settings=FAST,
            deadline=entry.deadline,
            **SIZES,  # type: ignore[arg-type]
        )
    failure = info.value
    assert failure.property_name == entry.reported_as, str(failure)
    assert re.search(entry.message, str(failure), re.DOTALL), str(failure)
    assert failure.reproducer, "a misbehaviour must come with a reproducer"
    rows = [r for r in failure.report.results if r.verdict == "FAIL"]  # type: ignore[union-attr]
    assert rows and rows[0].property_name == entry.reported_as
    assert rows[0].note.startswith(f"{entry.reported_as}: ")


@pytest.mark.parametrize("name", list(MISBEHAVING))
def test_lpim_check_exits_1_with_a_clear_message(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = MISBEHAVING[name]
    target = f"lpim.zoo.misbehaving:MISBEHAVING[{name!r}].factory"
    argv = ["check", target, "--dtype", "float32", "--max-examples", "5"]
    argv += ["--reproducer-dir", str(tmp_path)]
    if entry.deadline is not None:
        argv += ["--deadline", str(entry.deadline)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"property {entry.reported_as!r} failed" in out
    assert re.search(entry.message, out, re.DOTALL), out
    assert "Traceback" not in out
    written = list(tmp_path.glob(f"{entry.reported_as}_float32.py"))
    assert written and written[0].read_text().startswith("# lpim ")


def test_slow_encoder_passes_without_a_deadline() -> None:
    class Quick(Slow):
        seconds = 0.001

    report = check_encoder(
        Quick(), dtype=torch.float64, settings=FAST, properties=["deterministic"], **SIZES
    )  # type: ignore[arg-type]
    assert report.passed
    with pytest.raises(EncoderPropertyError, match="deadline is 1e-06 s") as info:
        check_encoder(
            Quick(),
            dtype=torch.float64,
            settings=FAST,
            properties=["deterministic"],
            deadline=1e-6,
            **SIZES,  # type: ignore[arg-type]
        )
    assert info.value.property_name == "deadline"


def test_a_module_left_in_train_mode_is_checked_in_eval_mode() -> None:
    """check_encoder copies a module and calls .eval(): dropout in train mode is not a failure,
    and the caller's module stays in train mode."""
    module = DropoutMean().train()
    report = check_encoder(
        module, dtype=torch.float32, settings=FAST, properties=["deterministic"], **SIZES
    )  # type: ignore[arg-type]
    assert report.passed and module.training


def test_training_modules_finds_dropout_inside_a_wrapper() -> None:
    wrapper = TrainingWrapper()
    assert training_modules(wrapper) == ["encoder.model.dropout (Dropout, p=0.5)"]
    wrapper.model.eval()
    assert training_modules(wrapper) == []
    closure_model = DropoutMean().train()

    def closure(points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = closure_model(points, point_mask)
        return out

    assert training_modules(closure) == ["encoder<closure 0>.dropout (Dropout, p=0.5)"]


def test_the_callers_tensors_are_never_modified() -> None:
    """The in-place encoder writes into the copies the checker hands it, never into a batch the
    caller holds: the shrunk example still holds its original coordinates."""
    entry = MISBEHAVING["mutates_inputs"]
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(entry.factory(), dtype=torch.float32, settings=FAST, **SIZES)  # type: ignore[arg-type]
    example = info.value.example
    encoder = entry.factory()
    points = example.points.clone()
    encoder(points, example.point_mask.clone())
    assert not torch.equal(points, example.points)  # the encoder does mutate what it gets
