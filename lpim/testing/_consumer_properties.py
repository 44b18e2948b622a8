"""The lane-consumer properties: the mask bug one step downstream of the encoder.

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
`runs`, `deterministic`, `inputs_unchanged`, `finite`, `ignores_appended_lanes`,
`ignores_padded_lanes` and (when the user declares it) `lane_order_invariant`: see
[`CONSUMER_PROPERTIES`][lpim.testing.CONSUMER_PROPERTIES]. Every call of the consumer
gets copies of `lane_embedding`, `lane_mask` and every tensor among its other inputs, which
must equal the originals afterwards (`inputs_unchanged`, checked on every call); the caller's
tensors are never touched. One `assert_*` per other property (this module) works on one
[`LaneSet`][lpim.LaneSet] inside a user's own `@given` test;
[`check_lane_consumer`][lpim.testing.check_lane_consumer] runs them all with Hypothesis
and raises
[`LaneConsumerPropertyError`][lpim.testing.LaneConsumerPropertyError] (an
`AssertionError`) with the shrunk example and a pasteable reproducer.

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
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch

from lpim.lane_set import LaneSet
from lpim.strategies import garbage_fills
from lpim.testing._compare import first_index, largest_error, same_values
from lpim.testing._encoder_properties import runs_as
from lpim.testing._property_errors import LaneConsumerPropertyError
from lpim.testing._protocol import Consumer, ProtocolError, Subject, training_modules
from lpim.tolerance import Tolerance, encoder_scale, tolerance

__all__ = [
    "APPENDED_LANES",
    "Consumer",
    "ConsumerAssert",
    "assert_consumer_deterministic",
    "assert_consumer_finite",
    "assert_ignores_appended_lanes",
    "assert_ignores_padded_lanes",
    "assert_lane_order_invariant",
    "consumer_outputs",
    "lane_orders",
    "nondeterminism_first",
    "nondeterminism_from_flaky",
    "run_consumer",
    "with_appended_lanes",
    "with_padded_lanes",
]

ConsumerAssert = Callable[[Consumer, LaneSet], float]
"""A property's assert: `(consumer, lanes) -> the largest error ratio`, raising
[`LaneConsumerPropertyError`][lpim.testing.LaneConsumerPropertyError] on a failure."""


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


def run_consumer(consumer: Consumer, lanes: LaneSet) -> dict[str, torch.Tensor]:
    """`consumer`'s outputs on `lanes` by name (see `consumer_outputs`), without gradients.

    The consumer is given copies of `lane_embedding`, `lane_mask` and every tensor among
    the other inputs (inside tuples, lists and dicts too), so `lanes` is never modified.

    Raises:
        LaneConsumerPropertyError: `runs` for anything the consumer raises or an output
            that breaks the protocol; `inputs_unchanged` when the consumer wrote into the
            copies it was given (naming which input, and the fix).
    """
    embedding, lane_mask = lanes.lane_embedding.clone(), lanes.lane_mask.clone()
    args = tuple(_copied(value) for value in lanes.args)
    kwargs = {key: _copied(value) for key, value in lanes.kwargs.items()}
    with _runs(lanes), torch.no_grad():
        output = consumer(embedding, lane_mask, *args, **kwargs)
        _check_unchanged(lanes, embedding, lane_mask, args, kwargs)
        return consumer_outputs(output, lanes)


def _copied(value: Any) -> Any:
    """`value` with every tensor in it cloned (tuples, lists and dicts are looked into)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_copied(item) for item in value)
    if isinstance(value, tuple):  # a NamedTuple
        return type(value)(*(_copied(item) for item in value))
    if isinstance(value, list):
        return [_copied(item) for item in value]
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    return value


def _tensors(name: str, value: Any) -> list[tuple[str, torch.Tensor]]:
    """Every tensor in `value` with its name (`args[0]`, `kwargs['bev'][1]`)."""
    if isinstance(value, torch.Tensor):
        return [(name, value)]
    if isinstance(value, tuple | list):
        return [pair for i, item in enumerate(value) for pair in _tensors(f"{name}[{i}]", item)]
    if isinstance(value, dict):
        return [pair for k, item in value.items() for pair in _tensors(f"{name}[{k!r}]", item)]
    return []


def _check_unchanged(
    lanes: LaneSet,
    embedding: torch.Tensor,
    lane_mask: torch.Tensor,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """Raise property `inputs_unchanged` if the consumer wrote into the copies it was given."""
    given = [
        ("lane_embedding", embedding),
        ("lane_mask", lane_mask),
        *_tensors("args", args),
        *_tensors("kwargs", kwargs),
    ]
    originals = dict(
        [
            ("lane_embedding", lanes.lane_embedding),
            ("lane_mask", lanes.lane_mask),
            *_tensors("args", lanes.args),
            *_tensors("kwargs", dict(lanes.kwargs)),
        ]
    )
    changed = [
        name
        for name, copy in given
        if name not in originals or not same_values(copy, originals[name])
    ]
    if changed:
        raise LaneConsumerPropertyError(
            "inputs_unchanged",
            f"the consumer modified {' and '.join(changed)} in place (the checker hands it "
            "copies, so the caller's tensors are intact; a caller reusing its inputs, say the "
            "lane embeddings for a second head or a loss, would not be): use out-of-place ops "
            "(x = x * 2, not x.mul_(2); torch.where(lane_mask[..., None], lane_embedding, 0), "
            "not lane_embedding.masked_fill_ or lane_embedding[~lane_mask] = 0)",
            lanes,
        )


def _call64(consumer: Consumer, lanes: LaneSet) -> dict[str, torch.Tensor] | None:
    """The float64 copy's outputs on `lanes` (None: not a module, or already float64)."""
    dtype = lanes.lane_embedding.dtype
    twin = Subject(consumer, dtype, lanes.lane_embedding.device).twin
    if twin is None:
        return None
    return run_consumer(twin, lanes.to(dtype=torch.float64))


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

    Non-floating outputs (bool, int) are compared exactly. NaN in both counts as equal (NaN
    itself is property `finite`'s business).
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
        if not want.is_floating_point():
            if not torch.equal(got, want):
                index = tuple(
                    int(i)
                    for i in torch.unravel_index(
                        (got != want).flatten().nonzero()[0, 0], want.shape
                    )
                )
                raise LaneConsumerPropertyError(
                    property_name,
                    f"{_at(name, index)} is {got[index].item()} {what} but {want[index].item()} "
                    "is expected (compared exactly: not floating)",
                    example,
                )
            continue
        reference = None if expected_64 is None else expected_64.get(name)
        largest, mismatch = largest_error(rule, got, want, reference, functools.partial(_at, name))
        if mismatch is not None:
            raise LaneConsumerPropertyError(
                property_name, mismatch.sentence(what), example, largest
            )
        worst = max(worst, largest)
    return worst


def _at(name: str, index: tuple[int, ...]) -> str:
    """`("out", (0, 2, 7))` -> `"out[0, 2, 7]"`, for messages."""
    return f"{name}[{', '.join(map(str, index))}]"


def _replace(
    lanes: LaneSet, lane_embedding: torch.Tensor, lane_mask: torch.Tensor | None = None
) -> LaneSet:
    """`lanes` with another embedding (and lane mask), the other inputs kept."""
    kept_mask = lanes.lane_mask if lane_mask is None else lane_mask
    return LaneSet(lane_embedding, kept_mask, lanes.args, lanes.kwargs)


# -- deterministic ---------------------------------------------------------------------------------


def assert_consumer_deterministic(consumer: Consumer, lanes: LaneSet) -> float:
    """Property `deterministic`: the same lane set twice gives the same outputs.

    Calls the consumer twice on `lanes` and compares every output under the tolerance rule
    (so that GPU kernels whose reduction order varies pass; NaN in both counts as equal). A
    failure names what usually causes it: dropout still active (the modules it finds in
    training mode, with "call .eval()"), `F.dropout` without `training=self.training`,
    random numbers drawn in `forward`, or state kept between calls.

    Args:
        consumer: see the module docstring (put a module in eval mode first).
        lanes: `lane_embedding [B, M, C]`, `lane_mask [B, M]` (True = real) and the other
            inputs.

    Returns:
        The largest error as a fraction of the allowed one.

    Raises:
        LaneConsumerPropertyError: `deterministic` (or `runs`, `inputs_unchanged`).
    """
    first = run_consumer(consumer, lanes)
    second = run_consumer(consumer, lanes)
    rule = _rule(consumer, lanes, lanes.shape[1])
    try:
        what = "on a second call with the same lanes"
        return _compare("deterministic", rule, first, None, second, lanes, what)
    except LaneConsumerPropertyError as failure:
        raise LaneConsumerPropertyError(
            "deterministic", f"{failure.detail}: {_nondeterminism_hint(consumer)}", lanes
        ) from None


def _nondeterminism_hint(consumer: Consumer) -> str:
    training = training_modules(consumer)
    if training:
        return (
            f"is dropout active? The consumer holds modules in training mode: "
            f"{', '.join(training[:3])}. Call .eval() on them before checking "
            "(check_lane_consumer puts an nn.Module it is given in eval mode itself, but not "
            "one wrapped in a function or another object)"
        )
    return (
        "is dropout active (F.dropout(x, p) without training=self.training drops in eval mode "
        "too; a module wrapped where .eval() cannot reach)? Else the consumer draws random "
        "numbers or keeps state between calls"
    )


def nondeterminism_first(assert_property: ConsumerAssert) -> ConsumerAssert:
    """`assert_property`, with a failed comparison blamed on nondeterminism where it is due.

    When `assert_property` fails on `lanes` (a property other than `deterministic`,
    `inputs_unchanged` or `runs`), the consumer is called twice more on `lanes`; if the two
    outputs differ, the failure raised is `deterministic`'s (two runs of a nondeterministic
    consumer differ whatever a property changes between them), else the original failure.
    Costs nothing while the property holds. `check_lane_consumer` wraps every assert in it.
    """

    def checked(consumer: Consumer, lanes: LaneSet) -> float:
        try:
            return assert_property(consumer, lanes)
        except LaneConsumerPropertyError as failure:
            if failure.property_name in ("deterministic", "inputs_unchanged", "runs"):
                raise
            try:
                assert_consumer_deterministic(consumer, lanes)
            except LaneConsumerPropertyError as nondeterministic:
                if nondeterministic.property_name == "deterministic":
                    raise nondeterministic from None
            raise

    checked.__name__ = checked.__qualname__ = getattr(assert_property, "__name__", "checked")
    checked.__doc__ = assert_property.__doc__
    return checked


def nondeterminism_from_flaky(
    property_name: str, consumer: Consumer, error: BaseException, last: list[LaneSet]
) -> LaneConsumerPropertyError:
    """Property `deterministic` for a Flaky run of `property_name`'s row: Hypothesis saw an
    example fail and then pass. The last example tried is replayed twice (up to three times)
    to show the difference; failing that, the failure says what Hypothesis saw.

    Args:
        property_name: the row that was running.
        consumer: the consumer checked (the row's prepared copy).
        error: what Hypothesis raised (`hypothesis.errors.Flaky` or a subclass).
        last: the last example tried (empty when none was).
    """
    lanes = last[0] if last else None
    if lanes is not None:
        for _ in range(3):
            try:
                assert_consumer_deterministic(consumer, lanes)
            except LaneConsumerPropertyError as failure:
                if failure.property_name == "deterministic":
                    return failure
    hint = _nondeterminism_hint(consumer)
    return LaneConsumerPropertyError(
        "deterministic",
        f"Hypothesis saw {property_name} fail on a lane set and then hold on the same lane set "
        f"({type(error).__name__}): the consumer's output is not a function of its input; "
        f"{hint}",
        lanes
        if lanes is not None
        else LaneSet(torch.zeros(0, 0, 1), torch.zeros(0, 0, dtype=torch.bool)),
    )


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
        for name, value in run_consumer(consumer, variant).items():
            if not value.is_floating_point() and not value.is_complex():
                continue
            bad = ~value.isfinite()
            if bool(bad.any()):
                index = first_index(bad)
                per_sample = variant.lane_mask.sum(-1).tolist()
                raise LaneConsumerPropertyError(
                    "finite",
                    f"{_at(name, index)} is {float(value[index])}{what} (real lanes per sample "
                    f"{per_sample}; {int(bad.sum())} non-finite values in {name})",
                    variant,
                )
    return 0.0


# -- ignores appended lanes ------------------------------------------------------------------------

APPENDED_LANES = (1, 7)
"""How many padded lanes
[`assert_ignores_appended_lanes`][lpim.testing.assert_ignores_appended_lanes] appends, one
run each."""


def with_appended_lanes(lanes: LaneSet, count: int) -> LaneSet:
    """`lanes` with `count` padded lanes appended: `M -> M + count`, zeros, mask False."""
    b, _, c = lanes.shape
    embedding = lanes.lane_embedding
    extra = embedding.new_zeros(b, count, c)  # [B, count, C]
    extra_mask = lanes.lane_mask.new_zeros(b, count)  # [B, count], False = padded lane
    return _replace(
        lanes, torch.cat([embedding, extra], dim=1), torch.cat([lanes.lane_mask, extra_mask], dim=1)
    )


def assert_ignores_appended_lanes(consumer: Consumer, lanes: LaneSet) -> float:
    """Property `ignores_appended_lanes`: more padded lane slots change no output.

    Appends `APPENDED_LANES` padded lanes (zeros, `lane_mask` False) after the `M`
    slots, one run per count, and compares every output with the run on `lanes` under the
    tolerance rule (reduction length the larger `M`). The appended lanes hold zeros, the most
    harmless content: what padded lanes hold is
    [`assert_ignores_padded_lanes`][lpim.testing.assert_ignores_padded_lanes]' business.

    Returns:
        The largest error as a fraction of the allowed one.

    Raises:
        LaneConsumerPropertyError: `ignores_appended_lanes` (or `runs`).
    """
    expected = run_consumer(consumer, lanes)
    expected_64 = _call64(consumer, lanes)
    m = lanes.shape[1]
    worst = 0.0
    for count in APPENDED_LANES:
        actual = run_consumer(consumer, with_appended_lanes(lanes, count))
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
    expected = run_consumer(consumer, zeros)
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
        actual = run_consumer(consumer, variant)
        what = f"with padded lanes {kind}" if kind == "as given" else f"with {kind} padded lanes"
        worst = max(
            worst,
            _compare("ignores_padded_lanes", rule, expected, expected_64, actual, variant, what),
        )
    return worst


# -- lane order ------------------------------------------------------------------------------------


def lane_orders(num_lanes: int) -> dict[str, torch.Tensor]:
    """The slot permutations
    [`assert_lane_order_invariant`][lpim.testing.assert_lane_order_invariant] applies:
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
    expected = run_consumer(consumer, lanes)
    expected_64 = _call64(consumer, lanes)
    rule = _rule(consumer, lanes, lanes.shape[1])
    worst = 0.0
    for kind, order in orders.items():
        order = order.to(lanes.lane_embedding.device)
        permuted = _replace(lanes, lanes.lane_embedding[:, order], lanes.lane_mask[:, order])
        actual = run_consumer(consumer, permuted)
        what = f"with the lane slots {kind}"
        worst = max(
            worst,
            _compare("lane_order_invariant", rule, expected, expected_64, actual, lanes, what),
        )
    return worst
