"""Failures reproduce: reproducers in a fresh process, lpim-ci twice, RNG state, the database.

- A reproducer written by ``check_encoder`` for each new verdict (``deterministic``,
  ``inputs_unchanged``, ``deadline``, a hang too) fails the same way in a fresh interpreter (the
  mask properties' reproducers are covered in ``test_testing.py`` and ``test_cli.py``).
- The ``lpim-ci`` profile gives the same shrunk example and the same report rows in two
  separate processes.
- ``check_encoder`` leaves torch's, Python's and NumPy's global RNG states as it found them,
  whether the check passes or fails and whatever the encoder draws; zoo factories too.
- A failure found once is saved in the example database given in the settings and replayed
  first next time.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from lpim.testing import EncoderPropertyError, check_encoder
from lpim.testing._engine import DATABASE_ENV, DEFAULT_SETTINGS, settings_of
from lpim.testing._options import Given, options_of
from lpim.zoo import BUGS
from lpim.zoo.misbehaving import MISBEHAVING, MaskedMeanEncoder, NoisyOutput

ROOT = Path(__file__).parent.parent
FAST = settings(max_examples=10, database=None, deadline=None)
SIZES = {"batch_size": (1, 2), "num_lanes": (1, 3), "num_points": (1, 4)}


_RUN_ALL = """
import runpy, sys
for path in sys.argv[1:]:
    try:
        runpy.run_path(path, run_name="__main__")
    except Exception as error:
        print(path, type(error).__name__, getattr(error, "property_name", "-"))
    else:
        print(path, "passed", "-")
"""


def test_reproducers_of_misbehaviours_fail_the_same_way_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    expected = {}
    for name in ("nondeterministic", "mutates_inputs", "slow", "hangs", "train_mode_dropout"):
        entry = MISBEHAVING[name]
        with pytest.raises(EncoderPropertyError) as info:
            check_encoder(
                entry.factory(),
                dtype=torch.float32,
                settings=FAST,
                deadline=entry.deadline,
                factory=f"lpim.zoo.misbehaving:MISBEHAVING[{name!r}].factory",
                **SIZES,  # type: ignore[arg-type]
            )
        assert info.value.property_name == entry.reported_as
        script = tmp_path / f"{name}.py"
        script.write_text(info.value.reproducer)
        expected[str(script)] = entry.reported_as
    # one fresh interpreter runs every reproducer (a process per script costs seconds each)
    command = [sys.executable, "-c", _RUN_ALL, *expected]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert seen == {path: f"EncoderPropertyError {name}" for path, name in expected.items()}


_CI_RUN = """
import json, torch
from hypothesis import settings
from lpim.profiles import register_profiles
from lpim.testing import EncoderPropertyError, check_encoder
from lpim.zoo import BUGS

register_profiles()
profile = settings(settings.get_profile("lpim-ci"), max_examples=20)
try:
    check_encoder(BUGS["mean_over_slots"].factory(), dtype=torch.float64, settings=profile,
                  properties=["matches_unpadded"])
except EncoderPropertyError as failure:
    rows = [[r.property_name, str(r.dtype), r.verdict, r.examples, r.note]
            for r in failure.report.results]
    print(json.dumps({"property": failure.property_name, "detail": failure.detail,
                      "points": failure.example.points.tolist(),
                      "point_mask": failure.example.point_mask.tolist(), "rows": rows}))
"""


def test_lpim_ci_profile_gives_identical_results_in_two_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", _CI_RUN]
    running = [  # two separate processes, side by side
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in running]
    first, second = (
        subprocess.CompletedProcess(command, process.returncode, out, err)
        for process, (out, err) in zip(running, outputs, strict=True)
    )
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip(), first.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["property"] == "matches_unpadded"
    assert one == two  # the same shrunk example, message and report rows (times left out)


def _rng_states() -> tuple[torch.Tensor, object, tuple[object, ...]]:
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def _same_states(
    before: tuple[torch.Tensor, object, tuple[object, ...]],
    after: tuple[torch.Tensor, object, tuple[object, ...]],
) -> bool:
    numpy_same = all(
        np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        for a, b in zip(before[2], after[2], strict=True)
    )
    return torch.equal(before[0], after[0]) and before[1] == after[1] and numpy_same


class DrawsEverywhere(MaskedMeanEncoder):
    """Draws from torch's, Python's and NumPy's global RNGs on every call (and is otherwise
    correct: the draws do not reach the output)."""

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        torch.rand(3)
        random.random()
        np.random.rand()
        return super().forward(points, point_mask)


@pytest.mark.parametrize("encoder", [DrawsEverywhere(), NoisyOutput()], ids=["passes", "fails"])
def test_check_encoder_leaves_global_rng_state_as_it_found_it(
    encoder: MaskedMeanEncoder,
) -> None:
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    before = _rng_states()
    try:
        check_encoder(encoder, dtype=torch.float32, settings=FAST, **SIZES)  # type: ignore[arg-type]
    except EncoderPropertyError as failure:
        assert failure.property_name == "deterministic"
    assert _same_states(before, _rng_states())


def test_zoo_factories_leave_global_rng_state_alone() -> None:
    before = _rng_states()
    for entry in [*BUGS.values(), *MISBEHAVING.values()]:
        entry.factory()
    assert _same_states(before, _rng_states())


class Recording:
    """A plain callable around a zoo bug that records every batch it is called with."""

    in_dim = 2

    def __init__(self) -> None:
        self.module = BUGS["mean_over_slots"].factory().double()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, points: torch.Tensor, point_mask: torch.Tensor) -> object:
        self.calls.append((points.clone(), point_mask.clone()))
        return self.module(points, point_mask)


def test_a_failure_found_once_is_replayed_first_from_the_database(tmp_path: Path) -> None:
    database = DirectoryBasedExampleDatabase(tmp_path / "examples")
    saving = settings(max_examples=50, database=database, deadline=None, derandomize=False)
    runs = []
    for _ in range(2):
        encoder = Recording()
        with pytest.raises(EncoderPropertyError) as info:
            check_encoder(
                encoder, dtype=torch.float64, settings=saving, properties=["matches_unpadded"]
            )
        runs.append((encoder, info.value))
    (first_encoder, first), (second_encoder, second) = runs
    assert first.property_name == second.property_name == "matches_unpadded"
    assert list((tmp_path / "examples").iterdir()), "the failure was not saved"

    # the first calls are lpim's probes (one unpadded lane of 3 points: the output check, the
    # dtype probe); the first call after them is the first batch Hypothesis hands the property
    def drawn(calls: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, ...]]:
        probes = 0
        while calls[probes][1].shape == (1, 1, 3) and bool(calls[probes][1].all()):
            probes += 1
        assert probes == 2, probes
        return calls[probes:]

    replayed_points, replayed_mask = drawn(second_encoder.calls)[0]
    assert torch.equal(replayed_mask, first.example.point_mask)
    assert torch.equal(replayed_points, first.example.points)
    first_batch_of_run_one = drawn(first_encoder.calls)[0][1]
    assert not torch.equal(first_batch_of_run_one, first.example.point_mask)  # found by search
    rows = [run.report.results[-1].examples for _, run in runs]  # type: ignore[attr-defined]
    assert rows[1] < rows[0], rows  # the second run starts from the failure


def test_database_location_follows_the_settings_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def chosen(side: str, door: str, **keywords: object) -> settings:
        return settings_of(options_of(side, Given(door, keywords)))  # type: ignore[arg-type]

    monkeypatch.delenv(DATABASE_ENV, raising=False)
    assert chosen("encoder", "keyword").database == DEFAULT_SETTINGS.database
    assert chosen("encoder", "flag").database is None  # the command writes no database
    monkeypatch.setenv(DATABASE_ENV, str(tmp_path / "db"))
    for side in ("encoder", "consumer"):  # one reader of the variable, for both checks
        for door in ("keyword", "flag"):
            database = chosen(side, door).database
            assert isinstance(database, DirectoryBasedExampleDatabase)
            assert Path(database.path) == tmp_path / "db"
    explicit = settings(database=None, max_examples=3)
    # settings passed win over the environment
    assert chosen("encoder", "keyword", settings=explicit).database is None
