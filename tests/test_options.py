"""One options object behind every door: the same option, default, check and sentence through
keywords, `lpim` flags, `[tool.lpim]` keys and the fixtures (issue 20).

The fuzz tests draw a mistake once and make it through each door; the message, with the
option's name as that door spells it replaced by `NAME`, must be the same sentence.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpim._errors import LpimError, UsageError, UsageTypeError, UsageValueError
from lpim.batch import LAYOUTS
from lpim.cli import main
from lpim.strategies import GARBAGE_CONTRACTS, bev_maps, lane_batches
from lpim.testing import (
    DEFAULT_DTYPES,
    EncoderPropertyError,
    check_encoder,
    check_lane_consumer,
)
from lpim.testing._options import (
    DTYPE_NAMES,
    GARBAGE_NAMES,
    LAYOUT_NAMES,
    OPTIONS,
    CheckOptions,
    Given,
    find_pyproject,
    options_for,
    options_of,
    read_pyproject,
    table_rows,
)
from lpim.testing._target import built
from lpim.zoo import BUGS, CONSUMER_BUGS, CORRECT

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=5, database=None, deadline=None)
DOORS_FUZZ = settings(
    max_examples=60,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- the registry --------------------------------------------------------------------------------


def test_the_names_options_take_agree_with_their_owners() -> None:
    assert DTYPE_NAMES == tuple(str(d).removeprefix("torch.") for d in DEFAULT_DTYPES)
    assert LAYOUT_NAMES == tuple(LAYOUTS)
    assert GARBAGE_NAMES == tuple(GARBAGE_CONTRACTS)


@pytest.mark.parametrize("module", ["lpim.testing._options", "lpim._validation"])
def test_declaring_and_checking_the_options_loads_no_torch(module: str) -> None:
    """`lpim --help` and argument errors need no torch: the options and the argument checks they
    share with every other door import it only inside the checks that read a device or a
    torch.dtype. Run in a fresh interpreter: what it loads is the point."""
    probe = (
        f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_every_option_has_a_field_a_help_and_a_default_that_passes_its_own_check() -> None:
    defaults = CheckOptions()
    for option in OPTIONS.values():
        assert option.help and option.sides
        value = getattr(defaults, option.keyword)
        if value is not None and option.keyword not in ("device",):
            assert option.check(value, option.keyword) == value, option.keyword


def test_the_cli_flags_are_the_declared_ones(capsys: pytest.CaptureFixture[str]) -> None:
    for command, side in (("check", "encoder"), ("check-consumer", "consumer")):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        flags = set(re.findall(r"(--[a-z][a-z-]+)", text)) - {"--help"}
        declared = {o.flag for o in options_for(side) if o.flag}  # type: ignore[arg-type]
        assert flags == declared, (command, flags ^ declared)


def test_the_options_table_has_a_row_per_option() -> None:
    rows = list(table_rows())
    assert len(rows) == len(OPTIONS)
    assert ("`min_points=`", "`--min-points`", "`min-points`") == rows[
        list(OPTIONS).index("min_points")
    ][:3]


# -- the same mistake, the same sentence, from every door ---------------------------------------

# Options a flag and a key can give, with values that read the same through all three doors: an
# int is an int as flag text ("0") and as TOML (0); a word is a string everywhere.
_DOOR_OPTIONS = [o for o in OPTIONS.values() if o.flag and o.key and not o.switch and not o.repeat]
_VALUES = st.integers(-3, 0) | st.sampled_from(["x", "half", "nowhere", "1-0", "-1"])


def _sentence(message: str, given: Given, option: Any, value: Any) -> str:
    """The message's first line with the option as this door spells it (with its value, as in
    a contradiction, or alone) replaced by NAME."""
    first = message.strip().splitlines()[0]
    first = re.sub(r"^lpim [a-z-]+: error: ", "", first)
    first = first.replace(given.spell(option, value), "NAME")
    first = first.replace(given.where(option), "NAME")
    return first.replace(option.spelled(given.door), "NAME")


def _keyword_error(side: str, keyword: str, value: Any) -> str:
    with pytest.raises(UsageError) as info:
        options_of(side, Given("keyword", {keyword: value}))  # type: ignore[arg-type]
    return str(info.value)


def _flag_error(command: str, flag: str, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([command, "lpim.zoo:NOT_IMPORTED_BEFORE_OPTIONS", f"{flag}={text}"]) == 2
    return capsys.readouterr().err


def _key_error(side: str, key: str, value: Any, folder: Path) -> str:
    toml = (
        "[" + ", ".join(json.dumps(v) for v in value) + "]"
        if isinstance(value, tuple)
        else repr(value)
        if isinstance(value, int | float)
        else f'"{value}"'
    )
    (folder / "pyproject.toml").write_text(f"[tool.lpim]\n{key} = {toml}\n")
    with pytest.raises(UsageError) as info:
        options_of(side, read_pyproject(folder / "pyproject.toml"))  # type: ignore[arg-type]
    assert str(folder / "pyproject.toml") in str(info.value)  # the file, named
    return str(info.value)


@DOORS_FUZZ
@given(option=st.sampled_from(_DOOR_OPTIONS), value=_VALUES, data=st.data())
def test_a_mistake_reads_the_same_through_keyword_flag_and_key(
    option: Any,
    value: Any,
    data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    side = data.draw(st.sampled_from([s for s in option.sides if s in option.key_sides]))
    command = "check" if side == "encoder" else "check-consumer"
    text = str(value)
    python_value = option.text(text)  # what the flag's text means
    try:
        options_of(side, Given("keyword", {option.keyword: python_value}))
    except UsageError:
        pass
    else:
        return  # not a mistake for this option (e.g. "-1" is no layout but 0 is a size)
    keyword, flag = Given("keyword", {}), Given("flag", {})
    by_keyword = _sentence(
        _keyword_error(side, option.keyword, python_value), keyword, option, python_value
    )
    by_flag = _sentence(_flag_error(command, option.flag, text, capsys), flag, option, text)
    folder = tmp_path_factory.mktemp("door")
    key = Given("key", {}, str(folder / "pyproject.toml"))
    by_key = _sentence(
        _key_error(side, option.key, python_value, folder), key, option, python_value
    )
    assert by_keyword == by_flag == by_key, (by_keyword, by_flag, by_key)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("threads", "2"), ("dtype", 5), ("garbage", ["finite"]), ("min_points", True)],
)
def test_a_wrongly_typed_key_is_named_as_written_in_the_file(
    keyword: str, value: Any, tmp_path: Path
) -> None:
    key = OPTIONS[keyword].key
    toml = {str: f'"{value}"', int: str(value), list: '["finite"]', bool: "true"}[type(value)]
    (tmp_path / "pyproject.toml").write_text(f"[tool.lpim]\n{key} = {toml}\n")
    with pytest.raises(UsageTypeError) as info:
        options_of("encoder", read_pyproject(tmp_path / "pyproject.toml"))
    message = str(info.value)
    assert f"[tool.lpim] {key} must be" in message and str(tmp_path) in message
    assert f"--{key}" not in message  # not the flag the table does not use


# -- contracts that cannot be met ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("keywords", "words"),
    [
        ({"min_points": 9}, ["min_points=9", "num_points (default (1, 8))"]),
        ({"min_points": 5, "num_points": (1, 3)}, ["min_points=5", "num_points=(1, 3)"]),
        ({"num_points": 0}, ["num_points=0", "nothing to check"]),
        ({"num_points": 0, "empty_lanes": False}, ["num_points=0"]),
        ({"batch_size": 0}, ["batch_size=0", "nothing to check"]),
        ({"num_lanes": (0, 0)}, ["num_lanes=(0, 0)", "nothing to check"]),
        ({"batch_size": 10**6}, ["batch_size=1000000", "cannot be drawn"]),
        ({"empty_lanes": False, "empty_samples": True}, ["empty_samples=True", "empty_lanes"]),
        ({"strategy": lane_batches(), "layout": "right"}, ["strategy=", "layout='right'"]),
    ],
)
def test_a_contract_that_cannot_be_met_is_refused_naming_the_options(
    keywords: dict[str, Any], words: list[str]
) -> None:
    """Before: `check_encoder(mean_over_slots, garbage="zeros", min_points=9)` drew only
    empty lanes and said "all properties hold". Now nothing runs."""
    bug = BUGS["mean_over_slots"].factory()
    with pytest.raises(UsageValueError) as info:
        check_encoder(bug, garbage="zeros", settings=FAST, **keywords)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("keywords", [{"batch_size": 0}, {"num_lanes": 0}, {"num_lanes": 10**5}])
def test_a_consumer_contract_that_cannot_be_met_is_refused(keywords: dict[str, Any]) -> None:
    entry = CONSUMER_BUGS["unmasked_cross_attention"]
    with pytest.raises(UsageValueError, match=next(iter(keywords))):
        check_lane_consumer(entry.factory(), other_inputs=entry.other_inputs, **keywords)


def test_the_command_refuses_a_contract_it_would_claim_without_checking(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: `lpim check --min-points 5 --num-points 1-3` exited 0 under a header claiming
    '>= 5 points a lane'."""
    assert main(["check", "--min-points", "5", "--num-points", "1-3"]) == 2
    err = capsys.readouterr().err
    assert "--min-points 5" in err and "--num-points 1-3" in err and "cannot be met" in err


# -- [tool.lpim]: one reader, no silent fallback -------------------------------------------------


def test_a_pyproject_that_is_not_toml_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    """Before: the broken file was skipped and the parent folder's table used instead."""
    (tmp_path / "pyproject.toml").write_text('[tool.lpim]\ndtype = ["float32"]\n')
    child = tmp_path / "project"
    child.mkdir()
    (child / "pyproject.toml").write_text('[tool.lpim]\ngarbage = "zeros\n')  # unterminated
    with pytest.raises(UsageValueError) as info:
        find_pyproject(child)
    message = str(info.value)
    assert str(child / "pyproject.toml") in message and "line 2" in message


def test_the_command_reports_a_broken_pyproject_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[tool.lpim]\ngarbage = "z\xff"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--dtype", "float32"]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_tool_lpim_must_be_a_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool]\nlpim = 5\n")
    with pytest.raises(UsageValueError, match=r"\[tool.lpim\] must be a table"):
        find_pyproject(tmp_path)


def test_one_table_serves_both_checks(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lpim]\ndtype = "float32"\nmin-points = 2\nembed-dim = 8\nbatch-size = [1, 2]\n'
    )
    layer = read_pyproject(tmp_path / "pyproject.toml")
    encoder = options_of("encoder", layer)
    consumer = options_of("consumer", layer)
    assert encoder.dtype == consumer.dtype == ("float32",)
    assert encoder.min_points == 2 and consumer.embed_dim == 8
    assert encoder.batch_size == consumer.batch_size == (1, 2)


def test_the_other_inputs_key_stays_the_consumers(tmp_path: Path) -> None:
    """A project's `[tool.lpim] other-inputs` (a consumer's BEV map) is never given to an
    encoder, which takes other_inputs by keyword or flag."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lpim]\nother-inputs = "lpim.strategies:bev_maps(16, 8, 8)"\n'
    )
    layer = read_pyproject(tmp_path / "pyproject.toml")
    assert options_of("encoder", layer).other_inputs is None
    assert options_of("consumer", layer).other_inputs is not None
    assert options_of("encoder", Given("keyword", {"other_inputs": bev_maps(16, 8, 8)}))


def test_keywords_are_refused_for_the_other_side() -> None:
    with pytest.raises(UsageTypeError, match="embed_dim is not an option of the encoder check"):
        options_of("encoder", Given("keyword", {"embed_dim": 4}))


# -- blame the right party -----------------------------------------------------------------------


def test_other_inputs_that_is_the_factory_itself_is_a_usage_error() -> None:
    entry = CONSUMER_BUGS["unmasked_cross_attention"]
    with pytest.raises(UsageValueError, match=r"other_inputs=.*raised InvalidArgument"):
        check_lane_consumer(entry.factory(), other_inputs=bev_maps, settings=FAST)

    def maps(height: Any = 4, width: Any = 4, channels: Any = 2) -> Any:  # a factory
        return bev_maps(4, 4, 2)

    with pytest.raises(UsageTypeError, match="the factory rather than what it builds"):
        check_lane_consumer(entry.factory(), other_inputs=maps, settings=FAST)


def test_other_inputs_that_raises_is_a_usage_error() -> None:
    def broken(batch_size: int, dtype: torch.dtype, device: torch.device) -> Any:
        raise RuntimeError("no such map")

    entry = CONSUMER_BUGS["unmasked_cross_attention"]
    with pytest.raises(UsageValueError, match=r"other_inputs=.*raised RuntimeError: no such map"):
        check_lane_consumer(entry.factory(), other_inputs=broken, settings=FAST)


def test_a_class_that_needs_arguments_reads_the_same_from_the_command_and_the_fixture(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One factory rule (`lpim.testing._target.built`): before, the command called the class and
    the fixture checked the class itself."""
    with pytest.raises(UsageValueError) as info:
        built(torch.nn.Linear, "encoder")
    assert main(["check", "torch.nn:Linear"]) == 2
    assert str(info.value).split("needs")[1] in capsys.readouterr().err


@pytest.mark.parametrize(
    ("keyword", "value"), [("strict", "yes"), ("progress", 5), ("threads", 0), ("settings", 3)]
)
@pytest.mark.parametrize("check", [check_encoder, check_lane_consumer])
def test_both_checks_refuse_the_same_run_options(check: Any, keyword: str, value: Any) -> None:
    subject = CORRECT["masked_mean"].factory()
    with pytest.raises(UsageError) as info:
        check(subject, embed_dim=4, **{keyword: value}) if check is check_lane_consumer else (
            check(subject, **{keyword: value})
        )
    assert str(info.value).startswith(keyword)


def test_errors_are_one_family() -> None:
    assert issubclass(UsageTypeError, TypeError) and issubclass(UsageValueError, ValueError)
    assert issubclass(EncoderPropertyError, LpimError) and issubclass(
        EncoderPropertyError, AssertionError
    )


# -- no raw traceback through the command's flags or the table's keys -----------------------------

_TEXTS = st.sampled_from(
    [
        "0",
        "-1",
        "1",
        "3-1",
        "1-3",
        "x",
        "",
        "1e9",
        "99999999999",
        "nan",
        "inf",
        "float8",
        "yes",
        "no",
        "zero",
        "cuda:7",
        "mps",
        "xpu",
        "meta",
        "a:b",
        "lpim:__version__",
        "none",
    ]
)


@DOORS_FUZZ
@given(
    command=st.sampled_from(["check", "check-consumer"]),
    picks=st.lists(st.tuples(st.sampled_from(list(OPTIONS.values())), _TEXTS), max_size=3),
)
def test_any_flags_give_a_verdict_or_one_line_of_usage_error(
    command: str, picks: list[tuple[Any, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Any flag values: exit 2 with one `lpim <command>: error:` line (the target does not
    exist, so options that pass lead to its import error), never a traceback."""
    side = "encoder" if command == "check" else "consumer"
    argv = [command, "no_such_module_for_lpim_fuzz:X"]
    for option, text in picks:
        if option.flag is None or side not in option.sides:
            continue
        argv += [option.flag] if option.switch else [f"{option.flag}={text}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lpim {command}: error: ") and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err


_TOML_VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=8).filter(lambda t: '"' not in t and "\\" not in t and "\n" not in t),
    st.lists(st.integers(-3, 10), max_size=3),
)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@DOORS_FUZZ
@given(
    side=st.sampled_from(["encoder", "consumer"]),
    table=st.dictionaries(
        st.sampled_from([o.key for o in OPTIONS.values() if o.key] + ["no-such-key"]),
        _TOML_VALUES,
        max_size=3,
    ),
)
def test_any_table_gives_options_or_a_usage_error_naming_the_file(
    side: str, table: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("table")
    lines = [f"{key} = {_toml(value)}" for key, value in table.items()]
    (folder / "pyproject.toml").write_text("[tool.lpim]\n" + "\n".join(lines) + "\n")
    try:
        options_of(side, read_pyproject(folder / "pyproject.toml"))  # type: ignore[arg-type]
    except UsageError as error:
        assert str(folder / "pyproject.toml") in str(error)


def test_a_strategy_that_draws_no_lane_batch_is_a_usage_error() -> None:
    with pytest.raises(UsageTypeError, match=r"strategy must draw lpim\.LaneBatch examples"):
        check_encoder(
            CORRECT["masked_mean"].factory(),
            strategy=st.integers(),
            dtype=torch.float32,
            settings=FAST,
        )
