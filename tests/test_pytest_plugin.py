"""The pytest plugin, driven through pytest itself with ``pytester``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import settings

from lpim.profiles import PROFILES
from lpim.testing import check_encoder
from lpim.zoo import CORRECT

HAS_CUDA = torch.cuda.is_available()

# In-process pytester runs put sys.modules back as they found it, dropping the modules first
# imported inside them. Some of torch's are imported lazily by what a check does on its first
# run (torch.testing.assert_close imports torch.distributed.tensor; entering the dtype probe's
# TorchDispatchMode imports torch._inductor.test_operators), and their operator registrations
# outlive the module: imported a second time, by a later test in this process, they fail ("Only
# a single TORCH_LIBRARY ..."), and the probe that hit it reads as a crash. One small check here,
# at float64 (the dtype probe runs) before any in-process run, loads them for good.
check_encoder(
    CORRECT["mha_key_padding_mask"].factory(),
    dtype=torch.float64,
    settings=settings(max_examples=2, database=None, deadline=None),
)

PROFILE_PROBE = """
from hypothesis import settings

def test_profile():
    current = settings()
    print(
        f"PROFILE {settings.get_current_profile_name()} {current.max_examples} "
        f"{current.derandomize} {current.deadline} {current.database is None}"
    )
"""


def _probe(result: pytest.RunResult) -> list[str]:
    lines = [line.partition("PROFILE ")[2] for line in result.outlines if "PROFILE " in line]
    assert len(lines) == 1, result.stdout.str()
    return lines[0].split()[:5]


@pytest.fixture(autouse=True)
def _restore_hypothesis_profile() -> Iterator[None]:
    # In-process pytester runs load profiles into this very process: put ours back after.
    name = settings.get_current_profile_name()
    yield
    settings.load_profile(name)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("lpim-dev", ["10", "False", "None", "False"]),
        ("lpim-ci", ["50", "True", "None", "True"]),
        ("lpim-thorough", ["500", "False", "None", "False"]),
    ],
)
def test_profiles_load_with_hypothesis_own_option(
    pytester: pytest.Pytester, profile: str, expected: list[str]
) -> None:
    pytester.makepyfile(PROFILE_PROBE)
    result = pytester.runpytest("-s", "--hypothesis-profile", profile)
    result.assert_outcomes(passed=1)
    assert _probe(result) == [profile, *expected]


def test_profiles_keep_their_settings_in_a_ci_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hypothesis loads its own `ci` profile when it sees CI set; a profile registered without
    # an explicit parent would then inherit derandomize=True and database=None from it.
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(PROFILE_PROBE)
    result = pytester.runpytest_subprocess("-s", "--hypothesis-profile", "lpim-dev")
    result.assert_outcomes(passed=1)
    assert _probe(result) == ["lpim-dev", "10", "False", "None", "False"]


def test_report_header_names_devices_and_profile(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--hypothesis-profile", "lpim-ci", "--lpim-device", "cpu")
    result.stdout.fnmatch_lines(["lpim: devices cpu; hypothesis profile lpim-ci"])
    assert set(PROFILES) == {"lpim-dev", "lpim-ci", "lpim-thorough"}


DEVICE_TEST = """
import torch

def test_device(lpim_device):
    assert isinstance(lpim_device, torch.device)
    x = torch.ones(3, device=lpim_device)
    assert x.device.type == lpim_device.type
"""


def test_device_fixture_defaults_to_cpu(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEVICE_TEST)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_device?cpu?*PASSED*"])


def test_device_fixture_all_runs_cpu_and_skips_cuda_with_a_reason(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(DEVICE_TEST)
    result = pytester.runpytest("--lpim-device", "all", "-rs")
    if HAS_CUDA:
        result.assert_outcomes(passed=1 + torch.cuda.device_count())
    else:
        result.assert_outcomes(passed=1, skipped=1)
        reason = (
            "CPU-only build" if torch.version.cuda is None else "torch.cuda.is_available() is False"
        )
        result.stdout.fnmatch_lines([f"SKIPPED*cuda requested by --lpim-device, but*{reason}*"])


def test_device_fixture_skips_a_missing_gpu_index(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEVICE_TEST)
    result = pytester.runpytest("--lpim-device", "cuda:7", "-rs")
    if HAS_CUDA and torch.cuda.device_count() > 7:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["SKIPPED*cuda:7 requested by --lpim-device*"])


def test_bad_device_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEVICE_TEST)
    result = pytester.runpytest("--lpim-device", "tpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--lpim-device: expected cpu, cuda, cuda:N or all; got 'tpu'*"])


CHECK_TESTS = """
import torch
from lpim import PriorEncoder
from lpim.zoo import BUGS


def small_reference():
    torch.manual_seed(0)
    return PriorEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32)


def test_reference_holds(lpim_check):
    report = lpim_check(small_reference, dtype=torch.float32, properties=["matches_unpadded"])
    assert report.passed
    assert [r.property_name for r in report.results] == ["matches_unpadded"]


def test_multiply_by_mask_fails(lpim_check):
    encoder = BUGS["multiply_by_mask"].factory()
    lpim_check(encoder, dtype=torch.float32, properties=["ignores_nonfinite_padding"])
"""


def test_lpim_check_passes_a_correct_encoder_and_reports_a_bug(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CHECK_TESTS)
    result = pytester.runpytest("--hypothesis-profile", "lpim-dev")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*EncoderPropertyError: property 'ignores_nonfinite_padding' failed*",
            "*example: LaneBatch(*",
            "*reproducer (paste into a file and run):*",
            "*assert_ignores_nonfinite_padding(encoder, LaneBatch(points, point_mask))*",
        ]
    )


def test_plugin_works_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEVICE_TEST + CHECK_TESTS.replace("import torch\n", "", 1))
    result = pytester.runpytest_subprocess("-n", "2", "--hypothesis-profile", "lpim-ci")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*property 'ignores_nonfinite_padding' failed*"])


CONSUMER_TESTS = """
import torch
from lpim.zoo import CONSUMER_BUGS, CONSUMER_CORRECT


def test_masked_fusion_holds(lpim_check_consumer):
    entry = CONSUMER_CORRECT["masked_cross_attention"]
    report = lpim_check_consumer(entry.factory, other_inputs=entry.other_inputs,
                                 dtype=torch.float32)
    assert report.passed


def test_unmasked_fusion_fails(lpim_check_consumer):
    entry = CONSUMER_BUGS["unmasked_cross_attention"]
    lpim_check_consumer(entry.factory, other_inputs=entry.other_inputs, dtype=torch.float32)
"""


def test_lpim_check_consumer_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CONSUMER_TESTS)
    result = pytester.runpytest("--hypothesis-profile", "lpim-dev")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*lane-consumer property 'ignores_appended_lanes' failed*"])


TABLE_TESTS = """
import torch
from lpim import PriorEncoder
from lpim.zoo import CONSUMER_CORRECT


def small_reference():
    torch.manual_seed(0)
    return PriorEncoder(d_model=16, nhead=2, num_layers=1, dim_feedforward=32)


def test_encoder_takes_the_table(lpim_check):
    report = lpim_check(small_reference, properties=["finite"])
    assert [r.dtype for r in report.results] == [torch.float32]
    assert "right padding only" in report.contract


def test_consumer_takes_the_table(lpim_check_consumer):
    entry = CONSUMER_CORRECT["masked_cross_attention"]
    report = lpim_check_consumer(entry.factory, other_inputs=entry.other_inputs,
                                 properties=["finite"])
    assert [r.dtype for r in report.results] == [torch.float32]


def test_keywords_override_the_table(lpim_check):
    report = lpim_check(small_reference, properties=["finite"], dtype=torch.float64)
    assert [r.dtype for r in report.results] == [torch.float64]
"""


def test_fixtures_read_tool_lpim_as_the_command_does(pytester: pytest.Pytester) -> None:
    """Before: `lpim_check` ignored `dtype = ["float32"]` of `[tool.lpim]`, which `lpim check`
    obeyed, and `lpim_check_consumer` read no table at all."""
    pytester.makepyfile(TABLE_TESTS)
    pytester.makefile(".toml", pyproject='[tool.lpim]\ndtype = ["float32"]\nlayout = "right"\n')
    result = pytester.runpytest("--hypothesis-profile", "lpim-dev")
    result.assert_outcomes(passed=3)


def test_a_broken_table_fails_the_fixture_naming_the_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TABLE_TESTS)
    pytester.makefile(".toml", pyproject='[tool.lpim]\nthreads = "2"\n')
    result = pytester.runpytest("--hypothesis-profile", "lpim-dev")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*pyproject.toml: [[]tool.lpim[]] threads must be an int*"])
