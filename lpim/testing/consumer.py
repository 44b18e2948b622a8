"""Lane-set consumers: the mask bug one step downstream of the encoder.

A *lane-set consumer* reads the encoder's lane embeddings as a set: BEV queries cross-attending over
the `M` lanes, a pooled scene vector, a planner's map context. In a public LPIM
reimplementation the BEV queries attend over all `M` lane embeddings with no lane mask, so the
result changes with `M` and with whatever empty lanes hold. These checks catch that.

The consumer protocol
---------------------
A consumer is a callable `consumer(lane_embedding, lane_mask, *args, **kwargs)` with

- `lane_embedding [B, M, C]` floating, rows of padded lanes meaningless (any value, NaN too);
- `lane_mask [B, M]` bool, `True` = real lane (the library convention: pass
  `~lane_mask` as `nn.MultiheadAttention`'s `key_padding_mask`);
- `args` / `kwargs`: its other inputs (e.g. BEV queries `[B, Q, C]`), which must not depend
  on `M`.

It returns a tensor, or a tuple / list / dict (a `NamedTuple` is a tuple) of tensors, on the
input's device. **Every** returned tensor is compared, entirely: these are set-level outputs
(one per sample or per query), which must not change shape with `M`. Floating tensors are
compared under the tolerance rule, others (bool, int) exactly. Wrap a module with another
signature in a `lambda`. Per-lane outputs (`[B, M, ...]`) are not covered by these checks.

Properties
----------
`runs`, `finite`, `ignores_appended_lanes`, `ignores_padded_lanes` and (when the user
declares it) `lane_order_invariant`: see
[`CONSUMER_PROPERTIES`][lpim.testing.consumer.CONSUMER_PROPERTIES]. One `assert_*` per
property works on one [`LaneSet`][lpim.LaneSet] inside a user's own `@given` test;
[`check_lane_consumer`][lpim.testing.consumer.check_lane_consumer] runs them all with Hypothesis and
raises
[`LaneConsumerPropertyError`][lpim.testing.consumer.LaneConsumerPropertyError] (an `AssertionError`)
with the shrunk example and a pasteable
reproducer.

How the tolerance rule applies
------------------------------
Each property compares the consumer with itself on two inputs that must give the same output (`M`
lanes vs `M + k`, zeros vs garbage in padded lanes, one lane order vs another), at the same
dtype. The rule of [`lpim.tolerance`][lpim.tolerance] is used as for encoders: `y_s` is the output
on the
original input, `y_64` that of a float64 copy of the consumer (an `nn.Module`) on the same
input, and the floors take the reduction length ``K = max(M', C, widest nn.Linear input,
nn.MultiheadAttention embed_dim)` with `M'`` the larger lane count of the two runs (attention
and pooling over lanes sum `M'` terms), and `depth` = the matmul-bearing modules
([`lpim.tolerance.encoder_scale`][lpim.tolerance.encoder_scale]). Plain callables get the floors
alone, with `depth` 1.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from hypothesis import settings as Settings
from hypothesis.errors import HypothesisException

from lpim._validation import check_bool, check_callable, check_int, check_size
from lpim._version import __version__
from lpim.lane_set import LaneSet
from lpim.strategies import OtherInputs, garbage_fills, lane_sets
from lpim.testing.arguments import (
    checked_device,
    checked_dtypes,
    checked_factory,
    checked_properties,
    checked_settings,
    subject_name,
)
from lpim.testing.check import DEFAULT_SETTINGS
from lpim.testing.driver import Case, Driver, check_settings, global_rng_restored, torch_threads
from lpim.testing.errors import Cause, Property, PropertyError
from lpim.testing.properties import runs_as
from lpim.testing.protocol import ProtocolError, Subject
from lpim.testing.report import CheckReport, PropertyResult
from lpim.testing.reproducer import encoder_source
from lpim.tolerance import Tolerance, encoder_scale, tolerance

__all__ = [
    "APPENDED_LANES",
    "CONSUMER_PROPERTIES",
    "Consumer",
    "LaneConsumerPropertyError",
    "assert_consumer_finite",
    "assert_ignores_appended_lanes",
    "assert_ignores_padded_lanes",
    "assert_lane_order_invariant",
    "check_lane_consumer",
    "consumer_outputs",
    "consumer_reproducer",
    "lane_orders",
    "with_appended_lanes",
    "with_padded_lanes",
]

Consumer = Callable[..., Any]
"""Anything callable as `consumer(lane_embedding, lane_mask, *args, **kwargs)`."""

CONSUMER_PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in [
        Property(
            "runs",
            "(any)",
            "the consumer runs on every valid lane set and returns a tensor, or a tuple, list or "
            "dict of tensors, on the input's device",
            (
                Cause(
                    "an empty sample or batch the code never expected",
                    "",
                    frozenset({"empty_sample"}),
                ),
                Cause("an index built from M"),
            ),
        ),
        Property(
            "finite",
            "assert_consumer_finite",
            "no NaN or inf in any output for finite real lanes, including samples with no real "
            "lane and batches with none",
            (
                Cause(
                    "attention whose every key is masked, with need_weights=True",
                    "empty_sample_nan_need_weights",
                ),
                Cause("dividing by a zero lane count"),
            ),
        ),
        Property(
            "ignores_appended_lanes",
            "assert_ignores_appended_lanes",
            "appending padded lanes (M grows, lane_mask False there) changes no output",
            (
                Cause(
                    "attention over all M lanes with no key_padding_mask",
                    "unmasked_cross_attention",
                ),
                Cause("a mean over M slots instead of the real lanes", "zeroed_mean_over_slots"),
            ),
        ),
        Property(
            "ignores_padded_lanes",
            "assert_ignores_padded_lanes",
            "whatever padded lanes hold (zeros, huge values, inf, NaN) changes no output",
            (
                Cause(
                    "no lane mask at all", "unmasked_cross_attention", frozenset({"padded_lanes"})
                ),
                Cause(
                    "a key_padding_mask without selecting padded embeddings away: weight 0 "
                    "times a NaN value is NaN",
                    "kpm_values_not_cleaned",
                    frozenset({"padded_lanes"}),
                ),
                Cause("multiplying by the mask", "", frozenset({"padded_lanes"})),
            ),
        ),
        Property(
            "lane_order_invariant",
            "assert_lane_order_invariant",
            "(declared with order_invariant=True) reordering the lane slots, each lane with its "
            "mask, changes no output",
            (
                Cause(
                    "positional encodings of the lane slot index",
                    "lane_index_positions",
                    frozenset({"lanes"}),
                ),
                Cause("lanes sorted and read positionally", "", frozenset({"lanes"})),
            ),
        ),
    ]
}
"""Every consumer property, in the order
[`check_lane_consumer`][lpim.testing.consumer.check_lane_consumer] runs them."""


class LaneConsumerPropertyError(PropertyError[LaneSet]):
    """A lane-set consumer broke a property: the consumer-side sibling of
    [`EncoderPropertyError`][lpim.testing.EncoderPropertyError] (both are
    [`PropertyError`][lpim.testing.PropertyError]).

    Attributes:
        property_name: the property (a key of
            [`CONSUMER_PROPERTIES`][lpim.testing.consumer.CONSUMER_PROPERTIES]).
        example: the (shrunk, when raised by `check_lane_consumer`) [`LaneSet`][lpim.LaneSet].
        detail: what was seen: which output, which element, how far off.
        reproducer: pasteable Python that re-raises this error (set by `check_lane_consumer`;
            a bare assert leaves it empty).
        dtype: the dtype the failure was seen at.

    An exception raised by the consumer itself is wrapped as property `runs` with the
    original as `__cause__`.
    """

    properties = CONSUMER_PROPERTIES
    label = "lane-consumer property"

    @staticmethod
    def example_dtype(example: LaneSet) -> str:
        """`str(example.lane_embedding.dtype)`."""
        return str(example.lane_embedding.dtype)

    @staticmethod
    def example_features(example: LaneSet) -> frozenset[str]:
        """Several lanes, padded lanes, a sample without a lane (see `Cause.needs`)."""
        _, m, _ = example.shape
        found = {
            "lanes": m > 1,
            "padded_lanes": bool((~example.lane_mask).any()),
            "empty_sample": bool((~example.lane_mask.any(-1)).any()) if m else True,
        }
        return frozenset(name for name, present in found.items() if present)


# -- running the consumer --------------------------------------------------------------------------


def consumer_outputs(output: object, lanes: LaneSet) -> dict[str, torch.Tensor]:
    """Every tensor a consumer returned, by name (`output`, `output[0]`, `output['bev']`).

    Raises:
        ProtocolError: not a tensor, a tuple / list / dict of tensors, or a tensor on another
            device than `lanes.lane_embedding`.
    """
    if isinstance(output, torch.Tensor):
        named = {"output": output}
    elif isinstance(output, tuple | list):
        named = {f"output[{i}]": value for i, value in enumerate(output)}
    elif isinstance(output, Mapping):
        named = {f"output[{key!r}]": value for key, value in output.items()}
    else:
        raise ProtocolError(
            "a lane-set consumer must return a tensor, or a tuple, list or dict of tensors; "
            f"got {type(output).__name__}"
        )
    device = lanes.lane_embedding.device
    for name, value in named.items():
        if not isinstance(value, torch.Tensor):
            raise ProtocolError(f"{name} must be a tensor; got {type(value).__name__}")
        if value.device != device:
            raise ProtocolError(
                f"{name} must be on the input's device {device}; got {value.device}"
            )
    return named


def _runs(lanes: LaneSet) -> AbstractContextManager[None]:
    """Turn anything the consumer raises into a failure of property `runs`."""
    return runs_as(LaneConsumerPropertyError, lanes, "consumer")


def _call(consumer: Consumer, lanes: LaneSet) -> dict[str, torch.Tensor]:
    with _runs(lanes), torch.no_grad():
        return consumer_outputs(lanes.call(consumer), lanes)


def _call64(consumer: Consumer, lanes: LaneSet) -> dict[str, torch.Tensor] | None:
    """The float64 copy's outputs on `lanes` (None: not a module, or already float64)."""
    dtype = lanes.lane_embedding.dtype
    twin = Subject(consumer, dtype, lanes.lane_embedding.device).twin
    if twin is None:
        return None
    return _call(twin, lanes.to(dtype=torch.float64))


def _rule(consumer: Consumer, lanes: LaneSet, num_lanes: int) -> Tolerance:
    """The tolerance rule at `lanes`' dtype, with `num_lanes` lanes reduced over."""
    _, _, c = lanes.shape
    k, depth = encoder_scale(consumer, fallback_length=max(num_lanes, c))
    return tolerance(lanes.lane_embedding.dtype, k, depth)


def _compare(
    property_name: str,
    rule: Tolerance,
    expected: dict[str, torch.Tensor],
    expected_64: dict[str, torch.Tensor] | None,
    actual: dict[str, torch.Tensor],
    example: LaneSet,
    what: str,
) -> float:
    """Each output of `actual` against `expected` under `rule`; the largest error ratio.

    NaN in both counts as equal (NaN itself is property `finite`'s business).
    """
    if list(actual) != list(expected):
        raise LaneConsumerPropertyError(
            property_name, f"the outputs are {list(actual)} {what} but {list(expected)}", example
        )
    worst = 0.0
    for name, want in expected.items():
        got = actual[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise LaneConsumerPropertyError(
                property_name,
                f"{name} is {got.dtype} {tuple(got.shape)} {what} but {want.dtype} "
                f"{tuple(want.shape)} without (outputs must not depend on M)",
                example,
            )
        if got.numel() == 0:
            continue
        if not want.is_floating_point():
            if not torch.equal(got, want):
                index = _index(int((got != want).flatten().nonzero()[0]), want.shape)
                raise LaneConsumerPropertyError(
                    property_name,
                    f"{name}{_at(index)} is {got[index].item()} {what} but {want[index].item()} "
                    "is expected (compared exactly: not floating)",
                    example,
                )
            continue
        drift = 0.0
        if expected_64 is not None and name in expected_64:
            reference = expected_64[name]
            finite = want.isfinite() & reference.isfinite()
            gap = (want.double() - reference.double()).abs()[finite]
            drift = float(gap.max()) if gap.numel() else 0.0
        ratio = rule.error_ratio(got, want, drift)
        largest = float(ratio.max())
        if largest > 1.0:
            index = _index(int(ratio.argmax()), want.shape)
            allowed = float(rule.allowed(want[index].reshape(1), drift).max())
            times = "inf" if math.isinf(largest) else f"{largest:.3g}"
            raise LaneConsumerPropertyError(
                property_name,
                f"{name}{_at(index)} is {float(got[index]):.6g} {what} but "
                f"{float(want[index]):.6g} is expected (allowed error {allowed:.3g} at "
                f"{want.dtype}, {times}x over)",
                example,
            )
        worst = max(worst, largest)
    return worst


def _at(index: tuple[int, ...]) -> str:
    """`(0, 2, 7)` -> `"[0, 2, 7]"`, for messages."""
    return f"[{', '.join(map(str, index))}]"


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    """The multi-index of flat position `flat` in a tensor of `shape`."""
    index = []
    for size in reversed(shape):
        flat, rest = divmod(flat, size)
        index.append(rest)
    return tuple(reversed(index))


def _replace(
    lanes: LaneSet, lane_embedding: torch.Tensor, lane_mask: torch.Tensor | None = None
) -> LaneSet:
    """`lanes` with another embedding (and mask), the other inputs kept."""
    mask = lanes.lane_mask if lane_mask is None else lane_mask
    return LaneSet(lane_embedding, mask, lanes.args, lanes.kwargs)


# -- finite ----------------------------------------------------------------------------------------


def assert_consumer_finite(consumer: Consumer, lanes: LaneSet) -> float:
    """Property `finite`: no NaN or inf in any output, lane-less samples and batches included.

    Runs `lanes` as given, then with sample 0's lanes all marked padded (if it had a real
    lane), then with every lane marked padded (if any was real); the embeddings stay as they
    are, so the inputs are finite wherever they were. Every output tensor must be finite.

    Args:
        consumer: see the module docstring (put a module in eval mode first).
        lanes: `lane_embedding [B, M, C]`, `lane_mask [B, M]` (True = real) and the other
            inputs.

    Returns:
        0.0 (an exact check).

    Raises:
        LaneConsumerPropertyError: `finite` (or `runs`), with the failing variant as example.
    """
    embedding = lanes.lane_embedding
    variants = [("", lanes)]
    if lanes.shape[0] and bool(lanes.lane_mask[0].any()):
        emptied = lanes.lane_mask.clone()
        emptied[0] = False
        variants.append((" with sample 0's lanes all padded", _replace(lanes, embedding, emptied)))
    if bool(lanes.lane_mask.any()):
        no_lanes = torch.zeros_like(lanes.lane_mask)
        variants.append((" with every lane padded", _replace(lanes, embedding, no_lanes)))
    for what, variant in variants:
        for name, value in _call(consumer, variant).items():
            if not value.is_floating_point() and not value.is_complex():
                continue
            bad = ~value.isfinite()
            if bool(bad.any()):
                index = _index(int(bad.flatten().nonzero()[0]), value.shape)
                per_sample = variant.lane_mask.sum(-1).tolist()
                raise LaneConsumerPropertyError(
                    "finite",
                    f"{name}{_at(index)} is {float(value[index])}{what} (real lanes per sample "
                    f"{per_sample}; {int(bad.sum())} non-finite values in {name})",
                    variant,
                )
    return 0.0


# -- ignores appended lanes ------------------------------------------------------------------------

APPENDED_LANES = (1, 7)
"""How many padded lanes
[`assert_ignores_appended_lanes`][lpim.testing.consumer.assert_ignores_appended_lanes] appends, one
run each."""


def with_appended_lanes(lanes: LaneSet, count: int) -> LaneSet:
    """`lanes` with `count` padded lanes appended: `M -> M + count`, zeros, mask False."""
    b, _, c = lanes.shape
    embedding = lanes.lane_embedding
    extra = embedding.new_zeros(b, count, c)  # [B, count, C]
    mask = lanes.lane_mask.new_zeros(b, count)  # [B, count]
    return _replace(
        lanes, torch.cat([embedding, extra], dim=1), torch.cat([lanes.lane_mask, mask], dim=1)
    )


def assert_ignores_appended_lanes(consumer: Consumer, lanes: LaneSet) -> float:
    """Property `ignores_appended_lanes`: more padded lane slots change no output.

    Appends `APPENDED_LANES` padded lanes (zeros, `lane_mask` False) after the `M`
    slots, one run per count, and compares every output with the run on `lanes` under the
    tolerance rule (reduction length the larger `M`). The appended lanes hold zeros, the most
    harmless content: what padded lanes hold is
    [`assert_ignores_padded_lanes`][lpim.testing.consumer.assert_ignores_padded_lanes]' business.

    Returns:
        The largest error as a fraction of the allowed one.

    Raises:
        LaneConsumerPropertyError: `ignores_appended_lanes` (or `runs`).
    """
    expected = _call(consumer, lanes)
    expected_64 = _call64(consumer, lanes)
    m = lanes.shape[1]
    worst = 0.0
    for count in APPENDED_LANES:
        actual = _call(consumer, with_appended_lanes(lanes, count))
        what = f"with {count} padded lane(s) appended (M {m} -> {m + count})"
        rule = _rule(consumer, lanes, m + count)
        worst = max(
            worst,
            _compare("ignores_appended_lanes", rule, expected, expected_64, actual, lanes, what),
        )
    return worst


# -- ignores padded lanes --------------------------------------------------------------------------


def with_padded_lanes(lanes: LaneSet, fill: float) -> LaneSet:
    """`lanes` with every padded lane's embedding set to `fill` (real lanes untouched)."""
    embedding = torch.where(lanes.lane_mask[..., None], lanes.lane_embedding, fill)
    return _replace(lanes, embedding)


def assert_ignores_padded_lanes(consumer: Consumer, lanes: LaneSet) -> float:
    """Property `ignores_padded_lanes`: what padded lanes hold changes no output.

    Runs `lanes` with zeros in every padded lane, then with each of
    `lpim.strategies.garbage_fills` (NaN, inf, -inf, huge, -huge) and with its own
    padded content, and compares every output with the zero-filled run under the tolerance
    rule. Nothing to vary (and 0.0 returned) when no lane is padded.

    Returns:
        The largest error as a fraction of the allowed one.

    Raises:
        LaneConsumerPropertyError: `ignores_padded_lanes` (or `runs`), with the variant
            that changed the output as example.
    """
    if bool(lanes.lane_mask.all()):
        return 0.0
    zeros = with_padded_lanes(lanes, 0.0)
    expected = _call(consumer, zeros)
    expected_64 = _call64(consumer, zeros)
    rule = _rule(consumer, lanes, lanes.shape[1])
    # NaN and inf first: they are what leaks most often, and a failing run stops at the first.
    dtype = lanes.lane_embedding.dtype
    fills = [
        fill for kind in ("nan", "inf", "large") for fill in garbage_fills(kind, dtype).items()
    ]
    variants = {kind: with_padded_lanes(lanes, fill) for kind, fill in fills} | {"as given": lanes}
    worst = 0.0
    for kind, variant in variants.items():
        actual = _call(consumer, variant)
        what = f"with padded lanes {kind}" if kind == "as given" else f"with {kind} padded lanes"
        worst = max(
            worst,
            _compare("ignores_padded_lanes", rule, expected, expected_64, actual, variant, what),
        )
    return worst


# -- lane order ------------------------------------------------------------------------------------


def lane_orders(num_lanes: int) -> dict[str, torch.Tensor]:
    """The slot permutations
    [`assert_lane_order_invariant`][lpim.testing.consumer.assert_lane_order_invariant] applies:
    reversed, rotated."""
    if num_lanes < 2:
        return {}
    order = torch.arange(num_lanes)
    orders = {"reversed": order.flip(0), "rotated by one": order.roll(1)}
    if num_lanes == 2:
        del orders["rotated by one"]  # the same as reversed
    return orders


def assert_lane_order_invariant(consumer: Consumer, lanes: LaneSet) -> float:
    """Property `lane_order_invariant`: reordering lane slots changes no output.

    Only for consumers that declare it (a lane set has no order, but a consumer may read one on
    purpose). Reverses, then rotates by one, the `M` slots of every sample, each lane with its
    `lane_mask` entry, and compares every output with the run on `lanes` under the
    tolerance rule. Nothing to vary (and 0.0 returned) when `M < 2`.

    Returns:
        The largest error as a fraction of the allowed one.

    Raises:
        LaneConsumerPropertyError: `lane_order_invariant` (or `runs`).
    """
    orders = lane_orders(lanes.shape[1])
    if not orders:
        return 0.0
    expected = _call(consumer, lanes)
    expected_64 = _call64(consumer, lanes)
    rule = _rule(consumer, lanes, lanes.shape[1])
    worst = 0.0
    for kind, order in orders.items():
        order = order.to(lanes.lane_embedding.device)
        permuted = _replace(lanes, lanes.lane_embedding[:, order], lanes.lane_mask[:, order])
        actual = _call(consumer, permuted)
        what = f"with the lane slots {kind}"
        worst = max(
            worst,
            _compare("lane_order_invariant", rule, expected, expected_64, actual, lanes, what),
        )
    return worst


# -- the reproducer --------------------------------------------------------------------------------


def _tensor_source(value: torch.Tensor) -> str:
    on_device = "" if value.device.type == "cpu" else f", device={str(value.device)!r}"
    shape = ", ".join(map(str, value.shape)) + ("," if value.dim() == 1 else "")
    return (
        f"torch.tensor({value.detach().cpu().tolist()!r}, dtype={value.dtype}{on_device})"
        f".reshape({shape})"
    )


def _value_source(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return _tensor_source(value)
    if isinstance(value, bool | int | float | str | type(None)):
        return repr(value)
    return f"...  # a {type(value).__name__}: rebuild it here"


def consumer_reproducer(
    example: LaneSet,
    assert_name: str,
    property_name: str,
    consumer: object,
    factory: str | None = None,
) -> str:
    """Python source that rebuilds `example` exactly and calls `lpim.testing.<assert_name>`.

    The consumer is rebuilt as `lpim.testing.reproducer.encoder_source` rebuilds an
    encoder (`factory` `"module:expression"`, or an importable class from its stored
    constructor arguments; weights from `torch.manual_seed(0)`).
    """
    imports, build = encoder_source(consumer, factory)
    dtype = example.lane_embedding.dtype
    device = example.lane_embedding.device
    to_device = "" if device.type == "cpu" else f".to({str(device)!r})"
    args = "".join(f"\n    {_value_source(v)}," for v in example.args)
    kwargs = "".join(f"\n    {k!r}: {_value_source(v)}," for k, v in example.kwargs.items())
    lines = [
        f"# lpim {__version__} reproducer: lane-consumer property {property_name!r} at {dtype}",
        "import torch",
        "",
        "from lpim import LaneSet",
        f"from lpim.testing import {assert_name}",
        *imports,
        "",
        "nan, inf = float('nan'), float('inf')",
        "torch.manual_seed(0)",
        f"consumer = {build}",
        "if isinstance(consumer, torch.nn.Module):",
        f"    consumer = consumer.to({dtype}){to_device}.eval()",
        f"lane_embedding = {_tensor_source(example.lane_embedding)}",
        f"lane_mask = {_tensor_source(example.lane_mask)}",
        f"args = ({args}\n)",
        f"kwargs = {{{kwargs}\n}}",
        f"{assert_name}(consumer, LaneSet(lane_embedding, lane_mask, args, kwargs))",
        "",
    ]
    return "\n".join(lines)


# -- the check -------------------------------------------------------------------------------------

_ASSERTS: dict[str, Callable[[Consumer, LaneSet], float]] = {
    "finite": assert_consumer_finite,
    "ignores_appended_lanes": assert_ignores_appended_lanes,
    "ignores_padded_lanes": assert_ignores_padded_lanes,
    "lane_order_invariant": assert_lane_order_invariant,
}
# What padded lanes hold in the examples each property draws: only ignores_padded_lanes varies
# it, so that a garbage leak is named as such and not as a NaN or a change with M.
_GARBAGE: dict[str, str | None] = {
    "finite": "zeros",
    "ignores_appended_lanes": "zeros",
    "ignores_padded_lanes": None,
    "lane_order_invariant": "zeros",
}


_NOT_DECLARED = "not declared: order_invariant=False"


def check_lane_consumer(
    consumer: Consumer,
    *,
    embed_dim: int | None = None,
    other_inputs: OtherInputs | None = None,
    order_invariant: bool = False,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    device: str | torch.device | None = None,
    settings: Settings | None = None,
    properties: str | Sequence[str] | None = None,
    batch_size: int | tuple[int, int] = (1, 3),
    num_lanes: int | tuple[int, int] = (1, 6),
    strict: bool = False,
    threads: int | None = 1,
    factory: str | None = None,
    progress: Callable[[str, torch.dtype, PropertyResult | None], None] | None = None,
) -> CheckReport:
    """Check every lane-consumer property on `consumer`; return the report, or raise at the
    end with every failure.

    Every property x dtype row runs, even after a failure, through the same driver as
    `lpim.testing.check_encoder` (same table, same headline, same `strict`).

    Args:
        consumer: called as ``consumer(lane_embedding [B, M, C], lane_mask [B, M], *args,
            **kwargs)` (`lane_mask`` True = real lane); returns a tensor or a tuple / list /
            dict of tensors, every one of which is compared (module docstring). A module is
            copied per dtype and put in eval mode; the caller's module is never modified.
        embed_dim: `C`; read from `consumer.embed_dim` (or `d_model`, `lane_dim`) when
            omitted.
        other_inputs: `(batch_size, dtype, device) -> SearchStrategy` of the consumer's other
            inputs: a tuple (positional, after `lane_mask`) or a dict (keyword); e.g.
            `lpim.strategies.bev_queries` or `lpim.strategies.bev_maps`. None: it takes none.
        order_invariant: declare that the output must not depend on the order of the lane
            slots; `lane_order_invariant` is reported `excluded` otherwise.
        dtype: one dtype or several; default float64, float32, bfloat16, float16.
        device: where to run (default CPU).
        settings: Hypothesis settings (e.g. a profile's); default
            `lpim.testing.DEFAULT_SETTINGS`.
        properties: some of `finite`, `ignores_appended_lanes`, `ignores_padded_lanes`,
            `lane_order_invariant` (default all; `runs` is checked by every one of them).
        batch_size: `B` of the drawn lane sets: an int or an inclusive `(low, high)` range.
        num_lanes: `M` of the drawn lane sets: an int or a range.
        strict: raise `lpim.testing.driver.IncompleteCheckError` when nothing failed but a row
            was skipped or unsupported.
        threads: torch's intra-op threads during the check (restored after; default 1).
        factory: `"module:expression"` that rebuilds the consumer, for the reproducer.
        progress: as `lpim.testing.check_encoder`'s.

    Returns:
        A `lpim.testing.CheckReport` (`str()` is the same table as `check_encoder`'s).

    Raises:
        LaneConsumerPropertyError: the first failure in full (shrunk example, `.reproducer`),
            with `.failures` (every failure) and `.report`.
        lpim.testing.driver.IncompleteCheckError: `strict=True` and rows were not run.
        ValueError: an unknown property or dtype, no property, `embed_dim` below 1 or that
            cannot be read, a `batch_size` / `num_lanes` below 0 or a reversed range, a
            device torch does not know, that is not available or is `meta`, a malformed
            `factory`, or `threads` below 1.
        TypeError: `consumer`, `other_inputs` or `progress` is not callable, `settings` is
            not a `hypothesis.settings`, `order_invariant` or `strict` is not a bool, or
            another argument has the wrong type (`embed_dim`, sizes or `threads` not ints,
            `properties` not a name or a list, `device` not a str or torch.device).
    """
    __tracebackhide__ = True  # a failing check shows its message, not lpim's frames
    where = "check_lane_consumer"
    check_callable(consumer, "consumer", "consumer(lane_embedding, lane_mask, *args, **kwargs)")
    dtypes = checked_dtypes(dtype)
    target = checked_device(device)
    names = checked_properties(properties, list(_ASSERTS))
    if other_inputs is not None:
        check_callable(other_inputs, "other_inputs", "other_inputs(batch_size, dtype, device)")
    check_bool(order_invariant, "order_invariant")
    check_bool(strict, "strict")
    for size_name, size in (("batch_size", batch_size), ("num_lanes", num_lanes)):
        check_size(size, size_name, where)
    checked_factory(factory)
    if progress is not None:
        check_callable(progress, "progress", "progress(property_name, dtype, result)")
    chosen_settings = checked_settings(settings)
    dim = (
        check_int(embed_dim, "embed_dim", where, minimum=1)
        if embed_dim is not None
        else _read_embed_dim(consumer)
    )
    run_settings = check_settings(DEFAULT_SETTINGS if chosen_settings is None else chosen_settings)
    report = CheckReport(subject_name(consumer))
    driver: Driver[LaneSet] = Driver(report, progress, strict)

    with torch_threads(threads), global_rng_restored(target):
        for checked_dtype in dtypes:
            prepared = Subject.prepare(consumer, checked_dtype, target).encoder
            unsupported = _consumer_unsupported(prepared, dim, checked_dtype, target)
            for name in names:
                if name == "lane_order_invariant" and not order_invariant:
                    driver.row(
                        PropertyResult(name, checked_dtype, "excluded", 0, 0.0, 0.0, _NOT_DECLARED)
                    )
                    continue
                if unsupported:
                    driver.row(
                        PropertyResult(name, checked_dtype, "unsupported", 0, 0.0, 0.0, unsupported)
                    )
                    continue
                assert_property = _ASSERTS[name]
                driver.run(
                    Case(
                        property_name=name,
                        dtype=checked_dtype,
                        strategy=lane_sets(
                            batch_size=batch_size,
                            num_lanes=num_lanes,
                            embed_dim=dim,
                            garbage=_GARBAGE[name],
                            dtype=checked_dtype,
                            device=target,
                            other_inputs=other_inputs,
                        ),
                        check=functools.partial(assert_property, prepared),
                        settings=run_settings,
                        database_key=f"lpim-consumer:{name}:{checked_dtype}:{subject_name(consumer)}",
                        reproducer=functools.partial(_reproducer, name, consumer, factory),
                        translate=functools.partial(_translate, name),
                    )
                )
    return driver.finish()


def _reproducer(
    name: str, consumer: Consumer, factory: str | None, failure: PropertyError[LaneSet]
) -> str:
    failed = failure.property_name
    assert_name = CONSUMER_PROPERTIES[failed if failed != "runs" else name].assert_name
    example = failure.example
    if not isinstance(example, LaneSet):
        raise TypeError(f"a consumer failure's example is a LaneSet; got {type(example)}")
    return consumer_reproducer(example, assert_name, failed, consumer, factory)


def _translate(
    name: str, error: BaseException, last: list[LaneSet]
) -> LaneConsumerPropertyError | None:
    """Hypothesis' own errors (e.g. Flaky: the consumer is not deterministic) as `runs`."""
    if not isinstance(error, HypothesisException):
        return None
    return LaneConsumerPropertyError(
        "runs",
        f"Hypothesis could not check {name}: {type(error).__name__}: {error}",
        last[0] if last else LaneSet(torch.zeros(0, 0, 1), torch.zeros(0, 0, dtype=torch.bool)),
    )


def _consumer_unsupported(
    prepared: Consumer, embed_dim: int, dtype: torch.dtype, device: torch.device
) -> str:
    """Why the consumer cannot run at `dtype` ('' if it can): one real lane, no padding,
    and only an op with no kernel for the dtype counts."""
    lanes = LaneSet(
        torch.linspace(-1, 1, embed_dim).reshape(1, 1, embed_dim).to(device=device, dtype=dtype),
        torch.ones(1, 1, dtype=torch.bool, device=device),
    )
    try:
        _call(prepared, lanes)
    except LaneConsumerPropertyError as failure:
        cause = failure.__cause__
        if isinstance(cause, NotImplementedError) or "not implemented for" in str(cause):
            return f"not implemented at {dtype}: {str(cause).splitlines()[0]}"[:200]
    except Exception:  # other inputs missing here: the properties will call it properly
        return ""
    return ""


def _read_embed_dim(consumer: Consumer) -> int:
    for attribute in ("embed_dim", "d_model", "lane_dim"):
        value = getattr(consumer, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    raise ValueError(
        f"check_lane_consumer cannot tell the lane embedding width C of {subject_name(consumer)}: "
        "it has no embed_dim, d_model or lane_dim attribute; pass embed_dim=C"
    )
