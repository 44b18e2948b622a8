"""Every option of every check, declared once: its keyword, flag, `[tool.lpim]` key, default,
check and help.

The doors into the checks (`check_encoder` / `check_lane_consumer` keywords, the `lpim check`
/ `lpim check-consumer` flags, the `[tool.lpim]` table of `pyproject.toml`, the `lpim_check` /
`lpim_check_consumer` fixtures) all build one frozen
[`CheckOptions`][lpim.testing.CheckOptions] here, so an option has one meaning, one
default and one check, and a mistake gets the same sentence from every door, naming the option
as the user wrote it (`min_points`, `--min-points`, or `min-points` in
`/path/pyproject.toml [tool.lpim]`). Options that contradict each other (a contract that cannot
be met, sizes too large to draw) are refused here, before anything of the user's runs.

Declaring the options imports no torch: `lpim --help` and argument errors stay instant. Checks
that need torch (a device, a `torch.dtype`) import it when they run.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lpim._errors import UsageError, UsageTypeError, UsageValueError
from lpim._validation import check_bool, check_int, check_size, shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the same parser, from PyPI, before Python 3.11
    import tomli as tomllib

__all__ = [
    "CHANNEL_POLARITIES",
    "DTYPE_NAMES",
    "GARBAGE_NAMES",
    "LAYOUT_NAMES",
    "MASK_CONVENTIONS",
    "OPTIONS",
    "PRECISIONS",
    "CheckOptions",
    "Door",
    "Given",
    "Option",
    "Side",
    "add_flags",
    "find_pyproject",
    "flags_given",
    "mask_channel",
    "options_for",
    "options_of",
    "pyproject_layers",
    "read_pyproject",
    "table_rows",
]

Side = Literal["encoder", "consumer"]
"""The two checks: `check_encoder` and `check_lane_consumer`."""
Door = Literal["keyword", "flag", "key"]
"""How an option was given: a Python keyword (`check_encoder`, the fixtures), a flag of the
`lpim` command, or a key of `[tool.lpim]`."""

# The names an option may take, as plain strings (their owners import torch; tests/test_options.py
# checks that these agree with `lpim.batch.LAYOUTS`, `lpim.strategies.GARBAGE_CONTRACTS` and
# `lpim.testing._engine.DEFAULT_DTYPES`).
DTYPE_NAMES = ("float64", "float32", "bfloat16", "float16")
"""The dtypes a check runs, by name, in the order it runs them (default: all four)."""
LAYOUT_NAMES = ("right", "left", "contiguous", "scattered")
"""The padding layouts of a data contract."""
GARBAGE_NAMES = ("any", "finite", "any_finite", "zeros", "repeat_last")
"""What a data contract lets padded slots hold."""
MASK_CONVENTIONS = ("point_mask", "key_padding_mask", "attention_mask", "lengths")
"""How an encoder may take the mask of its points as an argument (option `point_mask_as`)."""
CHANNEL_POLARITIES = ("valid_channel", "padded_channel")
"""How an encoder may take it inside `points` instead, as one more channel: `valid_channel`
(1.0 = real point, 0.0 = padded slot) or `padded_channel` (1.0 = padded slot), written
`valid_channel:K` with `K` the channel's index among the encoder's `D + 1` (default -1, last)."""
PRECISIONS = ("cast", "autocast")
"""How a low-precision dtype is run: `cast` copies the module with `.to(dtype)` and feeds
it points of that dtype; `autocast` keeps parameters and points in float32 and runs under
`torch.autocast(device_type, dtype)`, as mixed-precision training does (bfloat16 and
float16 only; float64 and float32 rows run as cast)."""

_BOTH: tuple[Side, ...] = ("encoder", "consumer")

# Hypothesis draws at most 8192 choices for one example (`BUFFER_SIZE`); a lane costs about four
# (its padded count, its empty flag, the list's bookkeeping) plus one per slot when scattered.
# Sizes whose largest batch needs more are never drawn: Hypothesis gives up after minutes
# ("too large to finish generating"), or silently keeps only the small layouts (measured: 4 x 200
# x 20 scattered and 1 x 4000 x 1 right fail; 1 x 1 x 8000 right and 8 x 200 x 20 right draw).
_CHOICES_PER_EXAMPLE = 8192
_CHOICES_PER_LANE = 4


# -- one option ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option of the checks, as every door spells it.

    Attributes:
        keyword: the Python keyword (`check_encoder(min_points=...)`) and the attribute of
            [`CheckOptions`][lpim.testing.CheckOptions].
        flag: the `lpim` flag (`--min-points`), or None when the command has none.
        key: the `[tool.lpim]` key (`min-points`), or None when the table has none.
        sides: the checks that take it: `"encoder"`, `"consumer"` or both.
        key_sides: the checks that read its `[tool.lpim]` key (one table serves both checks):
            `sides` unless an option means something else to each check, as `other_inputs`
            does (a consumer's BEV map is no encoder's context: the key stays the consumer's).
        help: one line, for `--help` and the options table.
        metavar: how `--help` shows the flag's value.
        python: whether the Python doors (the check functions, the fixtures) take it.
        repeat: the flag may be given several times (a list).
        switch: the flag takes no value (it sets True).
    """

    keyword: str
    flag: str | None
    key: str | None
    sides: tuple[Side, ...]
    help: str
    check: Callable[[Any, str], Any] = field(repr=False)
    key_sides: tuple[Side, ...] = _BOTH
    text: Callable[[str], Any] = field(repr=False, default=lambda text: text)
    toml: Callable[[Any], Any] = field(repr=False, default=lambda value: value)
    metavar: str | None = None
    python: bool = True
    repeat: bool = False
    switch: bool = False

    def spelled(self, door: Door) -> str:
        """The option's name through `door` (`min_points`, `--min-points`, `min-points`)."""
        name = {"keyword": self.keyword, "flag": self.flag, "key": self.key}[door]
        return name or self.keyword


def _option(
    default: Any,
    *,
    help: str,
    check: Callable[[Any, str], Any],
    flag: str | None = "",
    key: str | None = "",
    sides: tuple[Side, ...] = _BOTH,
    key_sides: tuple[Side, ...] | None = None,
    text: Callable[[str], Any] | None = None,
    toml: Callable[[Any], Any] | None = None,
    metavar: str | None = None,
    python: bool = True,
    repeat: bool = False,
    switch: bool = False,
) -> Any:
    """A [`CheckOptions`][lpim.testing.CheckOptions] field declaring its option.

    `flag` / `key` default to the keyword with dashes (`""`); None: that door has none.
    """
    declared = dict(
        flag=flag,
        key=key,
        sides=sides,
        key_sides=sides if key_sides is None else key_sides,
        help=help,
        check=check,
        text=text,
        toml=toml,
        metavar=metavar,
        python=python,
        repeat=repeat,
        switch=switch,
    )
    return field(default=default, metadata={"option": declared})


# -- the checks of one value, each taking the option's name as the user spelled it ---------------


def _int(minimum: int, *, none: bool = False) -> Callable[[Any, str], int | None]:
    """`check_int` at `minimum`, as an option's check (None allowed where `none`)."""

    def check(value: Any, name: str) -> int | None:
        return None if value is None and none else check_int(value, name, minimum=minimum)

    return check


def _size(value: Any, name: str) -> int | tuple[int, int]:
    """`check_size`, keeping the option's form: an int stays an int, a range a tuple."""
    low, high = check_size(value, name)
    return (low, high) if isinstance(value, tuple) else low


_bool = check_bool


def _one_of(choices: Sequence[str]) -> Callable[[Any, str], str]:
    def check(value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise UsageTypeError(f"{name} must be one of {list(choices)}; got {shown(value)}")
        if value not in choices:
            raise UsageValueError(f"{name} must be one of {list(choices)}; got {value!r}")
        return value

    return check


def _some_of(choices: Sequence[str]) -> Callable[[Any, str], tuple[str, ...] | None]:
    def check(value: Any, name: str) -> tuple[str, ...] | None:
        if value is None:
            return None
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list | tuple):
            raise UsageTypeError(
                f"{name} must be one of {list(choices)} or a list of them; got {shown(value)}"
            )
        if not names:
            raise UsageValueError(f"{name} must name at least one of {list(choices)}; got none")
        for one in names:
            if not isinstance(one, str):
                raise UsageTypeError(
                    f"{name} must be one of {list(choices)} or a list of them; got {shown(one)}"
                )
            if one not in choices:
                raise UsageValueError(f"{name} must be among {list(choices)}; got {one!r}")
        return tuple(dict.fromkeys(names))

    return check


def _dtypes(value: Any, name: str) -> tuple[str, ...] | None:
    """Names, from names or `torch.dtype`s (torch is imported by whoever holds one)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        elif isinstance(value, list | tuple):
            value = [
                str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else v for v in value
            ]
    return _some_of(DTYPE_NAMES)(value, name)


def _device(value: Any, name: str) -> Any:
    from lpim._validation import check_device

    return check_device(value, name=name, why_data="the checks compare values")


def _settings(value: Any, name: str) -> Any:
    from hypothesis import settings as Settings

    if value is not None and not isinstance(value, Settings):
        raise UsageTypeError(
            f"{name} must be a hypothesis.settings (e.g. settings.get_profile('lpim-ci') or "
            f"settings(max_examples=...)); got {shown(value)}"
        )
    return value


def _empty_lanes(value: Any, name: str) -> bool | str:
    if value not in (True, False, "zero") or not isinstance(value, bool | str):
        raise UsageValueError(f"{name} must be True, False or 'zero'; got {shown(value)}")
    return value


def _deadline(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageTypeError(
            f"{name} must be seconds (a number) or a timedelta; got {shown(value)}"
        )
    if not (value > 0 and math.isfinite(value)):
        raise UsageValueError(f"{name} must be a positive finite number of seconds; got {value!r}")
    return float(value)


def _callable(signature: str) -> Callable[[Any, str], Any]:
    def check(value: Any, name: str) -> Any:
        if value is not None and not callable(value):
            raise UsageTypeError(f"{name} must be callable as {signature}; got {shown(value)}")
        return value

    return check


def _factory(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageTypeError(f"{name} must be a 'module:expression' string; got {shown(value)}")
    module, colon, expression = value.partition(":")
    if not (module and colon and expression):
        raise UsageValueError(
            f"{name} must be 'module:expression' (e.g. 'lpim.encoder:PriorEncoder'); got {value!r}"
        )
    return value


def _strategy(value: Any, name: str) -> Any:
    from hypothesis import strategies as st

    if value is not None and not isinstance(value, st.SearchStrategy):
        raise UsageTypeError(
            f"{name} must be a Hypothesis strategy of LaneBatch; got {shown(value)}"
        )
    return value


class _Target(str):
    """A `MODULE:FUNCTION` string given by a flag or a key, to be imported (a plain string
    given as a keyword is not callable, and is refused as such)."""

    __slots__ = ()


def _target_text(text: Any) -> Any:
    return _Target(text) if isinstance(text, str) else text


def _other_inputs(value: Any, name: str) -> Any:
    """A function `(batch_size, dtype, device) -> SearchStrategy`, or `"module:function"`
    naming one (the flag's and the key's form), loaded here."""
    if isinstance(value, _Target):
        from lpim.testing._target import load_target

        value = load_target(value, "other-inputs function", option=name)
    return _callable("other_inputs(batch_size, dtype, device)")(value, name)


def _properties(value: Any, name: str) -> tuple[str, ...] | None:
    """Property names (which side's is checked by `options_of`, which knows the side)."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise UsageTypeError(
            f"{name} must be a property name or a list of them; got {shown(value)}"
        )
    if not names:
        raise UsageValueError(f"{name} must name at least one property; got none")
    return tuple(dict.fromkeys(names))


def _output(value: Any, name: str) -> int | str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise UsageTypeError(
        f"{name} must name the lane embedding among the encoder's outputs: an index (int), a key "
        f"or an attribute (str); got {shown(value)}"
    )


def mask_channel(point_mask_as: str) -> tuple[str, int] | None:
    """`(polarity, index)` of a validity channel (`"valid_channel:-1"` -> `("valid_channel",
    -1)`; no index: -1), or None for a mask given as an argument (`MASK_CONVENTIONS`).

    Raises:
        ValueError: a channel whose index is not an int.
    """
    polarity, colon, index = point_mask_as.partition(":")
    if polarity not in CHANNEL_POLARITIES:
        return None
    return polarity, int(index) if colon else -1


def _point_mask_as(value: Any, name: str) -> str:
    expected = (
        f"one of {list(MASK_CONVENTIONS)}, or a channel of points: valid_channel[:K] (1.0 = "
        "real) or padded_channel[:K] (1.0 = padded), K its index among the encoder's D + 1 "
        "channels (default -1, the last)"
    )
    if not isinstance(value, str):
        raise UsageTypeError(f"{name} must be {expected}; got {shown(value)}")
    if value in MASK_CONVENTIONS:
        return value
    try:
        channel = mask_channel(value)
    except ValueError:
        channel = None
    if channel is None:
        raise UsageValueError(f"{name} must be {expected}; got {value!r}")
    return value


def _argument_names(value: Any, name: str) -> tuple[str, str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, str) and v.isidentifier() for v in value)
        or value[0] == value[1]
    ):
        raise UsageValueError(
            f"{name} must be the two argument names (points, mask), e.g. "
            f"('polylines', 'polylines_mask'); got {shown(value)}"
        )
    return value


def _path(value: Any, name: str) -> str:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise UsageTypeError(f"{name} must be a folder path; got {shown(value)}")
    return str(value)


def _file(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise UsageTypeError(f"{name} must be a file path; got {shown(value)}")
    if Path(value).is_dir():
        raise UsageValueError(f"{name} must be a file path; got the folder {str(value)!r}")
    return str(value)


def _profile(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise UsageTypeError(f"{name} must be a Hypothesis profile's name; got {shown(value)}")
    return value


# -- how a flag's text and a TOML value become Python values --------------------------------------


def _int_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text  # the check names it: "--min-points must be an int >= 1; got 'x' (str)"


def _float_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _size_text(text: str) -> Any:
    """`"8"` -> 8, `"1-50"` -> (1, 50)."""
    low, dash, high = text.partition("-")
    try:
        return (int(low), int(high)) if dash else int(low)
    except ValueError:
        return text


def _size_toml(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _yes_no_text(text: str) -> Any:
    return {"yes": True, "no": False}.get(text, text)


def _empty_lanes_text(text: str) -> Any:
    return {"yes": True, "no": False, "zero": "zero"}.get(text, text)


# -- the options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOptions:
    """The options of one check, checked, whatever door they came through.

    Build it with `lpim.testing._options.options_of`; every attribute is one
    option (its keyword; `OPTIONS` has the flag, the key, the help), and `spelled` says how each
    option was given, for messages that name it as the user wrote it.

    Attributes:
        side: `"encoder"` (`check_encoder`) or `"consumer"` (`check_lane_consumer`).
        door: the door the options came through, the last layer: `"keyword"` or `"flag"`.
        spelled: option keyword -> how the user gave it (`"--min-points 5"`, `"min_points=5"`,
            `"min-points = 5 in /p/pyproject.toml [tool.lpim]"`); defaults are absent.
        pyproject: the `pyproject.toml` whose `[tool.lpim]` was read ('' when none).
    """

    side: Side = "encoder"
    door: Door = "keyword"
    spelled: Mapping[str, str] = field(default_factory=dict)
    pyproject: str = ""

    # what runs
    dtype: tuple[str, ...] | None = _option(
        None,
        help="the dtypes checked (default all four: float64, float32, bfloat16, float16)",
        check=_dtypes,
        metavar="DTYPE",
        repeat=True,
    )
    device: Any = _option(
        "cpu",
        help="where to run: cpu (default), cuda or cuda:N",
        check=_device,
        key=None,
    )
    properties: tuple[str, ...] | None = _option(
        None,
        help="check only these properties (default all)",
        check=_properties,
        flag="--property",
        metavar="NAME",
        repeat=True,
    )
    settings: Any = _option(
        None,
        help="Hypothesis settings (a profile's); default: 15 examples a property",
        check=_settings,
        flag=None,
        key=None,
    )
    profile: str | None = _option(
        None,
        help="Hypothesis settings profile (lpim-dev, lpim-ci, lpim-thorough, or yours); default: "
        "lpim's own, 15 examples a property, derandomized (the same verdict every run)",
        check=_profile,
        python=False,
        key=None,
    )
    max_examples: int | None = _option(
        None,
        help="Hypothesis examples per property (overrides the profile's)",
        check=_int(1, none=True),
        text=_int_text,
        metavar="N",
        python=False,
        key=None,
    )
    strict: bool = _option(
        False,
        help="fail when a row was skipped or unsupported, not only when one failed",
        check=_bool,
        switch=True,
    )
    threads: int | None = _option(
        1,
        help="torch intra-op threads during the check (default 1: tiny forwards gain nothing from "
        "more, and lose much on a busy machine); None: torch's own",
        check=_int(1, none=True),
        text=_int_text,
        metavar="N",
    )
    deadline: float | None = _option(
        None,
        help="seconds one call may take on one batch (timed twice before it counts; a call that "
        "never returns is stopped); default: no limit",
        check=_deadline,
        text=_float_text,
        metavar="SECONDS",
        sides=("encoder",),  # consumers have no deadline property yet
    )
    factory: str | None = _option(
        None,
        help="'module:expression' that rebuilds what is checked, for the reproducer",
        check=_factory,
        flag=None,
        key=None,
    )
    progress: Any = _option(
        None,
        help="progress(property_name, dtype, result or None): a live display",
        check=_callable("progress(property_name, dtype, result)"),
        flag=None,
        key=None,
    )
    show_progress: bool = _option(
        False,
        help="print a line per property and dtype as it finishes even when the output is not a "
        "terminal (then the report's table repeats them); default: on a terminal only",
        check=_bool,
        flag="--progress",
        switch=True,
        python=False,
        key=None,
    )
    verbose: bool = _option(
        False,
        help="also print how long the command took to start: its imports (torch, the checks, "
        "the target) and the time to the first property's result",
        check=_bool,
        switch=True,
        python=False,
        key=None,
    )
    json_report: str | None = _option(
        None,
        help="also write the report as JSON to FILE (rows, failures and their reproducers, "
        "timings, versions; schema lpim-check-report/1)",
        check=_file,
        flag="--json",
        metavar="FILE",
        python=False,
        key=None,
    )
    reproducer_dir: str = _option(
        "lpim-reproducers",
        help="where failures' reproducers are written (default ./lpim-reproducers)",
        check=_path,
        metavar="DIR",
        python=False,
        key=None,
    )
    # the data contract
    batch_size: int | tuple[int, int] = _option(
        (1, 3),
        help="B, samples per batch: N or LO-HI (default 1-3)",
        check=_size,
        text=_size_text,
        toml=_size_toml,
        metavar="B|LO-HI",
    )
    num_lanes: int | tuple[int, int] = _option(
        (1, 6),
        help="M, lane slots per sample: N or LO-HI (default 1-6)",
        check=_size,
        text=_size_text,
        toml=_size_toml,
        metavar="M|LO-HI",
    )
    num_points: int | tuple[int, int] = _option(
        (1, 8),
        help="N, point slots per lane: N or LO-HI (default 1-8)",
        check=_size,
        text=_size_text,
        toml=_size_toml,
        metavar="N|LO-HI",
        sides=("encoder",),
    )
    layout: tuple[str, ...] = _option(
        LAYOUT_NAMES,
        help="padding layouts that occur: right, left, contiguous (one run of real points, "
        "padding at either end or both), scattered (default all)",
        check=_some_of(LAYOUT_NAMES),
        metavar="LAYOUT",
        repeat=True,
        sides=("encoder",),
    )
    garbage: str = _option(
        "any",
        help="what padded slots hold: any (huge, inf, NaN too; default), finite (within the "
        "coordinates' range), any_finite (finite, any magnitude), zeros, repeat_last (each "
        "lane's last real point)",
        check=_one_of(GARBAGE_NAMES),
        metavar="KIND",
        sides=("encoder",),
    )
    min_points: int = _option(
        1,
        help="the fewest real points in a non-empty lane (default 1)",
        check=_int(1),
        text=_int_text,
        metavar="N",
        sides=("encoder",),
    )
    empty_lanes: bool | str = _option(
        True,
        help="do lanes without a real point occur (default yes); zero: yes, and they must give "
        "an all-zero lane_embedding",
        check=_empty_lanes,
        text=_empty_lanes_text,
        metavar="yes|no|zero",
        sides=("encoder",),
    )
    empty_samples: bool = _option(
        True,
        help="do samples without a real lane occur (default yes)",
        check=_bool,
        text=_yes_no_text,
        metavar="yes|no",
        sides=("encoder",),
    )
    strategy: Any = _option(
        None,
        help="a Hypothesis strategy of LaneBatch drawn instead of the contract's batches",
        check=_strategy,
        flag=None,
        key=None,
        sides=("encoder",),
    )
    # what the encoder is
    point_dim: int | None = _option(
        None,
        help="D, coordinates per point (default: read from the encoder)",
        check=_int(1, none=True),
        text=_int_text,
        metavar="D",
        sides=("encoder",),
    )
    output: int | str | None = _option(
        None,
        help="which part of the encoder's output is the lane embedding: an index (tuple, list), "
        "a key (dict) or an attribute; default: the output if a tensor, its .lane_embedding, or "
        "the one [B, M, C] tensor among its parts",
        check=_output,
        text=_int_text,
        metavar="INDEX|NAME",
        sides=("encoder",),
    )
    point_mask_as: str = _option(
        "point_mask",
        help="how the encoder takes the mask of its points: point_mask (bool, True = real; "
        "default), key_padding_mask (bool, True = padded slot), attention_mask (int, 1 = real), "
        "lengths (int [B, M]; right padding only), or inside the points as one more channel, "
        "with no mask argument: valid_channel[:K] (1.0 = real point, 0.0 = padded) or "
        "padded_channel[:K] (1.0 = padded), K the channel's index (default -1, the last)",
        check=_point_mask_as,
        metavar="CONVENTION",
        sides=("encoder",),
    )
    argument_names: tuple[str, str] | None = _option(
        None,
        help="the names of the encoder's two arguments when it takes them by keyword "
        "(forward(polylines=..., polylines_mask=...)): POINTS,MASK; default: positionally",
        check=_argument_names,
        text=lambda text: tuple(text.split(",")),
        toml=lambda value: tuple(value) if isinstance(value, list) else value,
        metavar="POINTS,MASK",
        sides=("encoder",),
    )
    precision: str = _option(
        "cast",
        help="bfloat16/float16 rows: cast copies the module to the dtype (default); autocast "
        "keeps float32 weights and runs under torch.autocast, as mixed-precision training does",
        check=_one_of(PRECISIONS),
        metavar="MODE",
        sides=("encoder",),
    )
    # what the consumer is
    embed_dim: int | None = _option(
        None,
        help="C, the lane embedding width (default: read from the consumer)",
        check=_int(1, none=True),
        text=_int_text,
        metavar="C",
        sides=("consumer",),
    )
    other_inputs: Any = _option(
        None,
        help="FUNCTION(batch_size, dtype, device) -> a Hypothesis strategy of the other inputs "
        "(a tuple, passed after the mask, or a dict of keywords): an encoder's per-sample "
        "context, every tensor [B, ...] (each lane alone gets its sample's rows), or a "
        "consumer's; flag and key: MODULE:FUNCTION, e.g. 'lpim.strategies:bev_maps(16, 8, 8)'; "
        "the key is read by the consumer check only",
        check=_other_inputs,
        key_sides=("consumer",),
        text=_target_text,
        toml=_target_text,
        metavar="MODULE:FUNCTION",
    )
    order_invariant: bool = _option(
        False,
        help="declare that the output must not depend on the order of the lane slots",
        check=_bool,
        switch=True,
        sides=("consumer",),
    )

    def given(self, keyword: str) -> bool:
        """True when the user gave option `keyword` (through any door)."""
        return keyword in self.spelled

    def name(self, keyword: str) -> str:
        """Option `keyword` as the user gave it, or as this door spells it when it was left
        at its default (`"num_points (default (1, 8))"`)."""
        if keyword in self.spelled:
            return self.spelled[keyword]
        option = OPTIONS[keyword]
        default = getattr(CheckOptions(), keyword)
        return f"{option.spelled(self.door)} (default {_shown(default)})"

    def option_name(self, keyword: str) -> str:
        """Option `keyword`'s bare name through the door the user is at (`--num-points` or
        `num_points`)."""
        return OPTIONS[keyword].spelled(self.door)

    def how_to_pass(self, keyword: str, value: Any, *, placeholder: bool = False) -> str:
        """How to give option `keyword` the value `value` through this door, to say what to
        pass: `--precision autocast` or `precision='autocast'`; with `placeholder`, `value`
        stands for what the user fills in (`--point-dim D`, `point_dim=D`)."""
        flag = OPTIONS[keyword].flag
        if self.door == "flag" and flag:
            return f"{flag} {value}"
        return f"{keyword}={value if placeholder else repr(value)}"


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return str(value)


def _declared() -> dict[str, Option]:
    found: dict[str, Option] = {}
    for declared in dataclasses.fields(CheckOptions):
        if "option" not in declared.metadata:
            continue
        spec = dict(declared.metadata["option"])
        dashed = declared.name.replace("_", "-")
        flag = f"--{dashed}" if spec["flag"] == "" else spec["flag"]
        key = dashed if spec["key"] == "" else spec["key"]
        found[declared.name] = Option(
            keyword=declared.name,
            flag=flag,
            key=key,
            sides=spec["sides"],
            key_sides=spec["key_sides"],
            help=spec["help"],
            check=spec["check"],
            text=spec["text"] or (lambda text: text),
            toml=spec["toml"] or (lambda value: value),
            metavar=spec["metavar"],
            python=spec["python"],
            repeat=spec["repeat"],
            switch=spec["switch"],
        )
    return found


OPTIONS: Mapping[str, Option] = _declared()
"""Every option, by keyword, in declaration order: the one registry the doors read."""
_BY_KEY = {o.key: o for o in OPTIONS.values() if o.key}


def options_for(side: Side) -> list[Option]:
    """The options check `side` takes, in declaration order."""
    return [o for o in OPTIONS.values() if side in o.sides]


# -- building the options from layers --------------------------------------------------------------


@dataclass(frozen=True)
class Given:
    """One layer of options, as they came through one door.

    Attributes:
        door: how they were given.
        values: option keyword -> value as given (flag text already converted by the option's
            `text`, TOML values by its `toml`).
        source: where they came from, for messages (the pyproject's path for keys).
    """

    door: Door
    values: Mapping[str, Any]
    source: str = ""

    @classmethod
    def keywords(cls, arguments: Mapping[str, Any], *, skip: Sequence[str] = ()) -> Given:
        """Python keyword arguments as a layer: None leaves an option at its default, except
        for `threads`, whose None means torch's own setting; the names in `skip` (the subject,
        `__tracebackhide__`, ...) are not options."""
        return cls(
            "keyword",
            {
                keyword: value
                for keyword, value in arguments.items()
                if keyword not in skip and (value is not None or keyword == "threads")
            },
        )

    def spell(self, option: Option, value: Any) -> str:
        """How the user gave `option`: `--min-points 5`, `min_points=5`, `min-points = 5 in
        /p/pyproject.toml [tool.lpim]`."""
        name = option.spelled(self.door)
        if self.door == "flag":
            return name if option.switch else f"{name} {_shown_flag(value)}"
        if self.door == "key":
            return f"{name} = {value!r} in {self.source} [tool.lpim]"
        return f"{name}={value!r}"

    def where(self, option: Option) -> str:
        """The name to put in a message about this layer's `option`."""
        name = option.spelled(self.door)
        return f"{self.source}: [tool.lpim] {name}" if self.door == "key" else name


def _shown_flag(value: Any) -> str:
    if isinstance(value, list | tuple):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{value[0]}-{value[1]}"
        return " ".join(str(v) for v in value)
    return str(value)


def options_of(side: Side, *layers: Given) -> CheckOptions:
    """The options of a check of `side`: defaults, then each layer in order (a later one wins:
    `[tool.lpim]`, then flags or keywords), each value checked and named as it was given, then
    the options checked against each other.

    Raises:
        UsageTypeError: a value of the wrong type, naming the option as given.
        UsageValueError: a value out of range, an option this side does not take, or options
            that contradict each other (a contract that cannot be met, sizes too large to draw).
    """
    chosen: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    pyproject = ""
    door: Door = "keyword"
    for layer in layers:
        if layer.door == "key":
            pyproject = layer.source
        else:
            door = layer.door
        for keyword, value in layer.values.items():
            option = OPTIONS.get(keyword)
            if option is None:
                raise UsageTypeError(
                    f"unknown option {keyword!r}; expected some of {list(OPTIONS)}"
                )
            if side not in (option.key_sides if layer.door == "key" else option.sides):
                if layer.door == "key":
                    continue  # one table serves both checks: the other side's keys are its own
                raise UsageTypeError(f"{layer.where(option)} is not an option of the {side} check")
            try:
                chosen[keyword] = option.check(value, layer.where(option))
            except UsageError:
                raise
            spelled[keyword] = layer.spell(option, value)
    options = CheckOptions(side=side, door=door, spelled=spelled, pyproject=pyproject, **chosen)
    _check_together(options)
    return options


def _check_together(options: CheckOptions) -> None:
    """Refuse options that contradict each other: a pass under them would claim a check that
    never ran."""
    name = options.name
    if options.properties is not None:
        from lpim._property_registry import property_names

        known = property_names(options.side)
        unknown = [p for p in options.properties if p not in known]
        if unknown:
            raise UsageValueError(
                f"{name('properties')}: unknown properties for the {options.side} check: got "
                f"{unknown}; expected some of {list(known)}"
            )
    batch = _high(options.batch_size)
    lanes = _high(options.num_lanes)
    for keyword, high in (("batch_size", batch), ("num_lanes", lanes)):
        if high == 0:
            raise UsageValueError(
                f"nothing to check: {name(keyword)} allows no "
                f"{'sample' if keyword == 'batch_size' else 'lane'} at all; allow at least 1"
            )
    if options.side == "consumer":
        _check_drawable(options, lanes * batch * _CHOICES_PER_LANE, ("batch_size", "num_lanes"))
        return
    if mask_channel(options.point_mask_as) is not None and options.argument_names is not None:
        raise UsageValueError(
            f"{name('point_mask_as')} puts the mask inside the points, so the encoder takes one "
            f"input, but {name('argument_names')} names two (points, mask); leave "
            f"{options.option_name('argument_names')} out"
        )
    if options.strategy is not None:
        narrowed = [
            k
            for k in (
                "layout",
                "min_points",
                "empty_lanes",
                "empty_samples",
                "batch_size",
                "num_lanes",
                "num_points",
            )
            if options.given(k)
        ]
        if narrowed:
            raise UsageValueError(
                f"{name('strategy')} draws the batches itself, so "
                f"{', '.join(name(k) for k in narrowed)} would be ignored: narrow the strategy "
                "instead, or leave strategy out"
            )
        return
    points = _high(options.num_points)
    if points == 0:
        raise UsageValueError(
            f"nothing to check: {name('num_points')} allows no point slot, so every lane is "
            "empty; allow at least 1"
        )
    if options.min_points > points:
        raise UsageValueError(
            f"the data contract cannot be met: {name('min_points')} asks for lanes of at least "
            f"{options.min_points} real points, but {name('num_points')} allows at most {points} "
            f"point slots a lane; raise {options.option_name('num_points')} or lower "
            f"{options.option_name('min_points')}"
        )
    if (
        options.empty_lanes is False
        and options.given("empty_samples")
        and options.empty_samples is True
    ):
        raise UsageValueError(
            f"the data contract cannot be met: {name('empty_samples')} needs empty lanes (a "
            f"sample without a real lane is all empty lanes), but {name('empty_lanes')} rules "
            "them out"
        )
    if options.point_mask_as == "lengths" and tuple(options.layout) != ("right",):
        raise UsageValueError(
            f"the data contract cannot be met: {name('point_mask_as')} can only say right "
            f"padding (the real points first), but {name('layout')} allows more; pass "
            f"{options.how_to_pass('layout', 'right')}"
        )
    per_lane = _CHOICES_PER_LANE + (points if "scattered" in options.layout else 0)
    _check_drawable(
        options,
        batch * lanes * per_lane,
        ("batch_size", "num_lanes", "num_points", "layout")
        if "scattered" in options.layout
        else ("batch_size", "num_lanes"),
    )


def _check_drawable(options: CheckOptions, choices: int, keywords: Sequence[str]) -> None:
    if choices <= _CHOICES_PER_EXAMPLE:
        return
    raise UsageValueError(
        f"batches this large cannot be drawn: {', '.join(options.name(k) for k in keywords)} "
        f"need about {choices} random choices for the largest batch, and Hypothesis draws at most "
        f"{_CHOICES_PER_EXAMPLE} for one example (it would give up, or silently draw only the "
        "small ones); lower the sizes' upper ends"
        + (" or leave out the scattered layout" if "layout" in keywords else "")
        + ". Mask bugs that show at scale show on small batches too: the properties compare "
        "each lane with itself alone"
    )


def _high(size: int | tuple[int, int]) -> int:
    return size[1] if isinstance(size, tuple) else size


# -- the [tool.lpim] table: read here, and only here --------------------------------------------


def find_pyproject(start: Path) -> Path | None:
    """The nearest `pyproject.toml` at or above `start` that has a `[tool.lpim]` table.

    Raises:
        UsageValueError: a `pyproject.toml` on the way that cannot be read as TOML (naming the
            file and the line): lpim cannot tell whether it holds `[tool.lpim]`, and never
            falls back to another file silently.
    """
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _table(candidate) is not None:
            return candidate
    return None


def _table(path: Path) -> Mapping[str, Any] | None:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise UsageValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise UsageValueError(
            f"{path}: is not UTF-8 text (byte {error.start}), so its [tool.lpim] cannot be read; "
            "TOML files are UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageValueError(
            f"{path}: is not valid TOML ({error}), so its [tool.lpim] cannot be read; fix the "
            "file (lpim reads no other pyproject.toml in its place)"
        ) from None
    tool = data.get("tool")
    if not isinstance(tool, Mapping) or "lpim" not in tool:
        return None
    table = tool["lpim"]
    if not isinstance(table, Mapping):
        raise UsageValueError(f"{path}: [tool.lpim] must be a table of options; got {shown(table)}")
    return table


def read_pyproject(path: Path) -> Given:
    """`[tool.lpim]` of `path`, as a layer of options (keys spelled as in the file).

    Raises:
        UsageValueError: the file is not UTF-8 TOML, or the table has a key lpim does not know
            (naming the file and the keys it may hold).
    """
    table = _table(path) or {}
    unknown = sorted(set(table) - set(_BY_KEY))
    if unknown:
        raise UsageValueError(
            f"{path}: unknown keys in [tool.lpim]: {unknown}; expected some of {sorted(_BY_KEY)}"
        )
    return Given(
        "key",
        {_BY_KEY[key].keyword: _BY_KEY[key].toml(value) for key, value in table.items()},
        str(path),
    )


def pyproject_layers(start: Path) -> list[Given]:
    """`[tool.lpim]` of the nearest `pyproject.toml` at or above `start` as a layer (none
    when there is no table)."""
    found = find_pyproject(start)
    return [read_pyproject(found)] if found is not None else []


# -- the command's flags ---------------------------------------------------------------------------


def add_flags(parser: Any, side: Side) -> None:
    """Add side `side`'s flags to an `argparse` parser (values are checked by `options_of`,
    so a wrong one reads as it does through every other door)."""
    for option in options_for(side):
        if option.flag is None:
            continue
        if option.switch:
            parser.add_argument(
                option.flag, dest=option.keyword, action="store_const", const=True, help=option.help
            )
        else:
            parser.add_argument(
                option.flag,
                dest=option.keyword,
                action="append" if option.repeat else "store",
                metavar=option.metavar,
                help=option.help + (" (repeatable)" if option.repeat else ""),
            )


def flags_given(side: Side, namespace: Any) -> Given:
    """The flags set in an `argparse` namespace (from `add_flags`), as a layer of options."""
    values: dict[str, Any] = {}
    for option in options_for(side):
        if option.flag is None:
            continue
        raw = getattr(namespace, option.keyword, None)
        if raw is None:
            continue
        values[option.keyword] = (
            raw
            if option.switch
            else [option.text(r) for r in raw]
            if option.repeat
            else option.text(raw)
        )
    return Given("flag", values)


def table_rows() -> Iterator[tuple[str, str, str, str, str, str]]:
    """`(keyword, flag, key, sides, default, help)` for every option: the options table."""
    defaults = CheckOptions()
    for option in OPTIONS.values():
        yield (
            f"`{option.keyword}=`" if option.python else "",
            f"`{option.flag}`" if option.flag else "",
            f"`{option.key}`" if option.key else "",
            " and ".join(option.sides),
            f"`{_shown(getattr(defaults, option.keyword))}`",
            option.help,
        )
