"""One assert per property, each checking one encoder on one batch.

Each `assert_*` takes an encoder (see `lpim.testing._protocol`; put it in eval mode first)
and a [`LaneBatch`][lpim.LaneBatch], raises
[`EncoderPropertyError`][lpim.testing.EncoderPropertyError] when the
property fails, and otherwise returns the largest error seen as a fraction of the allowed one
([`lpim.tolerance`][lpim.tolerance]; 0.0 for exact checks). Use them inside your own `@given` tests:

```python
@given(lane_batches(num_lanes=(1, 50)))
def test_my_encoder_matches_unpadded(batch):
    assert_matches_unpadded(my_encoder, batch)
```

Each varies one thing and holds everything else fixed, so that a failure names its cause:
`finite` and `matches_unpadded` run the batch as given; `ignores_padding` varies only what
padded slots hold; `lanes_independent` varies only other lanes; `gradients_isolated` only
differentiates. Every comparison of floating outputs goes through the tolerance rule.
"""

from __future__ import annotations

import functools
import math
import unittest
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import torch

from lpim.batch import LaneBatch
from lpim.strategies import GARBAGE_CONTRACTS, NONFINITE_GARBAGE_KINDS, garbage_fills
from lpim.testing._compare import largest_error
from lpim.testing._dtype_probe import crash_of
from lpim.testing._property_errors import EncoderPropertyError, ExampleT, PropertyError
from lpim.testing._protocol import (
    DeadlineExceeded,
    Encoder,
    EncoderOutput,
    ProtocolError,
    Subject,
    training_modules,
)

__all__ = [
    "assert_deterministic",
    "assert_devices_agree",
    "assert_empty_lanes_zero",
    "assert_finite",
    "assert_gradients_ignore_padding",
    "assert_gradients_isolated",
    "assert_ignores_nonfinite_padding",
    "assert_ignores_padding",
    "assert_lanes_independent",
    "assert_matches_unpadded",
    "empty_lane_values",
    "lane_alone",
    "lanes_alone_trouble",
    "no_cuda_reason",
    "padding_mixture",
    "padding_variants",
    "runs_as",
    "with_padding",
]

# -- running the encoder ---------------------------------------------------------------------------


@contextmanager
def runs_as(
    error_type: type[PropertyError[ExampleT]], example: ExampleT, what: str
) -> Iterator[None]:
    """Turn anything the code under check raises into `error_type`'s property `runs`.

    `what` names the code under check in the message ("encoder", "consumer"); a property
    failure raised inside passes through unchanged.
    """
    try:
        yield
    except PropertyError:
        raise
    except ProtocolError as error:
        raise error_type("runs", f"the output breaks the protocol: {error}", example) from error
    except Exception as error:  # the code's own bug, whatever its type
        raise error_type(
            "runs", f"the {what} raised {type(error).__name__}: {error}", example
        ) from error


def _runs(batch: LaneBatch) -> AbstractContextManager[None]:
    """Turn anything the encoder raises into a failure of property `runs`."""
    return runs_as(EncoderPropertyError, batch, "encoder")


def _call(subject: Subject, batch: LaneBatch) -> EncoderOutput:
    with _runs(batch), torch.no_grad():
        return subject(batch)


def _reference64(subject: Subject, batch: LaneBatch) -> EncoderOutput | None:
    """The float64 reference, best effort (None when it cannot be made or run)."""
    with torch.no_grad():
        return subject.reference64(batch)


# -- comparing outputs under the tolerance rule ----------------------------------------------------


def _compare(
    property_name: str,
    subject: Subject,
    batch: LaneBatch,
    pairs: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None, list[str]]],
    what: str,
) -> float:
    """Check each `(output name, actual, expected, expected_64, labels)` under the rule.

    `actual`, `expected` and `expected_64` are `[K, C]` rows to compare; `labels[k]`
    names row `k` for the message. Returns the largest error ratio; raises past 1.
    """
    rule = subject.tolerance(batch)
    worst = 0.0
    for name, actual, expected, expected_64, labels in pairs:
        where = functools.partial(_row_element, labels, name)
        largest, mismatch = largest_error(rule, actual, expected, expected_64, where)
        if mismatch is not None:
            raise EncoderPropertyError(property_name, mismatch.sentence(what), batch, largest)
        worst = max(worst, largest)
    return worst


def _row_element(labels: list[str], output: str, index: tuple[int, ...]) -> str:
    """`"<row label>: <output>[<column>]"` for element `index = (row, column)`."""
    return f"{labels[index[0]]}: {output}[{index[1]}]"


def _lane_rows(output: EncoderOutput, index: torch.Tensor) -> torch.Tensor:
    """`lane_embedding` rows at flat lane indices `index` -> `[K, C]`."""
    return output.lane_embedding.flatten(0, 1)[index]


def _point_rows(output: EncoderOutput, point_mask: torch.Tensor) -> torch.Tensor | None:
    """`point_features` at real points -> `[T, C']`, or None."""
    return None if output.point_features is None else output.point_features[point_mask]


def _lane_labels(batch: LaneBatch, index: torch.Tensor) -> list[str]:
    m = batch.shape[1]
    lengths = batch.lengths.flatten()
    return [
        f"lane (b={int(i) // m}, m={int(i) % m}) with {int(lengths[i])} real points" for i in index
    ]


def _point_labels(point_mask: torch.Tensor) -> list[str]:
    """A label per True slot of `point_mask [B, M, N]`, in row-major order."""
    return [f"point (b={b}, m={m}, n={n})" for b, m, n in point_mask.nonzero().tolist()]


def _pairs(
    actual: EncoderOutput,
    expected: EncoderOutput,
    expected_64: EncoderOutput | None,
    batch: LaneBatch,
    lanes: torch.Tensor,
    point_mask: torch.Tensor,
) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None, list[str]]]:
    """Lane rows `lanes` and point rows `point_mask` of two outputs (and the float64 one)."""
    pairs: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None, list[str]]] = [
        (
            "lane_embedding",
            _lane_rows(actual, lanes),
            _lane_rows(expected, lanes),
            None if expected_64 is None else _lane_rows(expected_64, lanes),
            _lane_labels(batch, lanes),
        )
    ]
    actual_points, expected_points = (
        _point_rows(actual, point_mask),
        _point_rows(expected, point_mask),
    )
    if actual_points is not None and expected_points is not None:
        labels = _point_labels(point_mask)
        pairs.append(
            (
                "point_features",
                actual_points,
                expected_points,
                None if expected_64 is None else _point_rows(expected_64, point_mask),
                labels,
            )
        )
    return pairs


# -- deterministic ---------------------------------------------------------------------------------


def assert_deterministic(encoder: Encoder | Subject, batch: LaneBatch) -> float:
    """Property `deterministic`: the same batch twice gives the same output.

    Calls the encoder twice on `batch` and compares `lane_embedding` of every lane and
    `point_features` at real points under the tolerance rule (so that GPU kernels whose
    reduction order varies pass). A failure names what usually causes it: dropout still active
    (the modules it finds in training mode, with "call .eval()"), random numbers drawn in
    `forward`, or state kept between calls.

    Returns:
        The largest error as a fraction of the allowed one.
    """
    subject = Subject.of(encoder, batch)
    first = _call(subject, batch)
    second = _call(subject, batch)
    every_lane = torch.arange(batch.lane_mask.numel(), device=first.lane_embedding.device)
    pairs = _pairs(second, first, None, batch, every_lane, batch.point_mask)
    try:
        return _compare(
            "deterministic", subject, batch, pairs, "on a second call with the same batch"
        )
    except EncoderPropertyError as failure:
        training = training_modules(subject.encoder)
        if training:
            hint = (
                f"is dropout active? The encoder holds modules in training mode: "
                f"{', '.join(training[:3])}. Call .eval() on them before checking "
                "(check_encoder puts an nn.Module it is given in eval mode itself, but not "
                "one wrapped in a function or another object)"
            )
        else:
            hint = (
                "is dropout active (F.dropout(..., training=True), a module wrapped where "
                ".eval() cannot reach)? Call .eval(); else the encoder draws random numbers "
                "or keeps state between calls"
            )
        raise EncoderPropertyError("deterministic", f"{failure.detail}: {hint}", batch) from None


# -- finite ----------------------------------------------------------------------------------------


def assert_finite(encoder: Encoder | Subject, batch: LaneBatch) -> float:
    """Property `finite`: no NaN or inf in any output, empty lanes and batches included.

    Checks `lane_embedding` of every lane (empty ones too: consumers without a lane mask read
    them) and `point_features` at real points. Real points must be finite (`LaneBatch`
    guarantees it); padded slots are used as given.

    Returns:
        0.0 (an exact check).
    """
    subject = Subject.of(encoder, batch)
    out = _call(subject, batch)
    checks = [
        (
            "lane_embedding",
            out.lane_embedding.flatten(0, 1),
            _lane_labels(batch, torch.arange(batch.lane_mask.numel())),
        )
    ]
    points = _point_rows(out, batch.point_mask)
    if points is not None:
        checks.append(("point_features", points, _point_labels(batch.point_mask)))
    for name, rows, labels in checks:
        bad = ~rows.isfinite()
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise EncoderPropertyError(
                "finite",
                f"{labels[row]}: {name}[{col}] is {float(rows[row, col])} ({int(bad.sum())} "
                f"non-finite values in {name})",
                batch,
            )
    return 0.0


# -- matches unpadded ------------------------------------------------------------------------------


def lane_alone(batch: LaneBatch, b: int, m: int) -> LaneBatch:
    """Lane `(b, m)` alone and unpadded: `points [1, 1, n, D]`, every point real, with
    sample `b`'s rows of the other inputs (`LaneBatch.args`, `kwargs`)."""
    real = batch.points[b, m][batch.point_mask[b, m]]  # [n, D]
    point_mask = torch.ones(1, 1, real.shape[0], dtype=torch.bool, device=real.device)
    return batch.samples([b]).with_points(real[None, None], point_mask)  # its sample's inputs


def assert_matches_unpadded(encoder: Encoder | Subject, batch: LaneBatch) -> float:
    """Property `matches_unpadded`: each real lane equals the encoder on that lane alone.

    For every lane with at least one real point, runs the encoder on
    [`lane_alone`][lpim.testing.lane_alone] and
    compares `lane_embedding` (and `point_features` at the real points, in slot order) with
    the batched output under the tolerance rule.

    Returns:
        The largest error as a fraction of the allowed one.
    """
    subject = Subject.of(encoder, batch)
    out = _call(subject, batch)
    out_64 = _reference64(subject, batch) if subject.twin is not None else None
    real_lanes = batch.lane_mask.flatten().nonzero().squeeze(1)  # [R]
    if real_lanes.numel() == 0:
        return 0.0
    m = batch.shape[1]
    alone, alone_64 = [], []
    for index in real_lanes.tolist():
        single = lane_alone(batch, index // m, index % m)
        alone.append(_call(subject, single))
        alone_64.append(_reference64(subject, single) if out_64 is not None else None)
    # One row per real lane, then one row per real point, in the batch's order.
    expected = EncoderOutput(
        _scatter_lanes(batch, real_lanes, [a.lane_embedding[0, 0] for a in alone]),
        _scatter_points(batch, [a.point_features for a in alone]),
    )
    expected_64 = None
    if out_64 is not None:
        expected_64 = EncoderOutput(
            _scatter_lanes(batch, real_lanes, [a.lane_embedding[0, 0] for a in alone_64 if a]),
            _scatter_points(batch, [a.point_features for a in alone_64 if a]),
        )
    if out.point_features is None or expected.point_features is None:
        out = EncoderOutput(out.lane_embedding, None)
    pairs = _pairs(out, expected, expected_64, batch, real_lanes, batch.point_mask)
    return _compare("matches_unpadded", subject, batch, pairs, "in the batch")


def _scatter_lanes(batch: LaneBatch, lanes: torch.Tensor, rows: list[torch.Tensor]) -> torch.Tensor:
    """Per-lane rows back into a `[B, M, C]` tensor (other lanes NaN: never compared)."""
    b, m, _, _ = batch.shape
    stacked = torch.stack(rows)  # [R, C]
    out = stacked.new_full((b * m, stacked.shape[1]), math.nan)
    out[lanes] = stacked
    return out.view(b, m, -1)


def _scatter_points(batch: LaneBatch, features: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Per-lane `[1, 1, n, C]` point features back into `[B, M, N, C]` at the real points."""
    if not features or any(f is None for f in features):
        return None
    real = torch.cat([f[0, 0] for f in features if f is not None])  # [T, C]
    out = real.new_full((*batch.point_mask.shape, real.shape[1]), math.nan)
    out[batch.point_mask] = real
    return out


# -- ignores padding -------------------------------------------------------------------------------


def with_padding(batch: LaneBatch, fill: float | torch.Tensor) -> LaneBatch:
    """`batch` with every padded slot set to `fill` (a number, or `[B, M, N, D]` values;
    real points untouched)."""
    points = torch.where(batch.point_mask[..., None], batch.points, fill)
    return batch.with_points(points, batch.point_mask)


def padding_variants(batch: LaneBatch, kinds: Sequence[str]) -> dict[str, LaneBatch]:
    """`batch` with its padded slots refilled, one variant per fill of each garbage kind
    (`lpim.strategies.GARBAGE_KINDS`): `zeros`; `finite` (plus and minus the largest real
    coordinate, or 1); `repeat_last` (each lane's last real point); `large` (+-1e30, clipped
    to the dtype); `inf` (+-inf); `nan`."""
    real = batch.points[batch.point_mask]
    bound = float(real.abs().max()) if real.numel() else 1.0
    variants: dict[str, LaneBatch] = {}
    for kind in kinds:
        if kind == "repeat_last":
            variants["the last point repeated"] = with_padding(batch, _last_points(batch))
        for label, fill in garbage_fills(kind, batch.points.dtype, bound).items():
            variants[label] = with_padding(batch, fill)
    return variants


def padding_mixture(batch: LaneBatch, kinds: Sequence[str]) -> LaneBatch:
    """`batch` with its padded slots refilled from every variant of `padding_variants`
    at once: padded slot `k` (in flat order) takes variant `k mod V`'s value."""
    variants = list(padding_variants(batch, kinds).values())
    flat = torch.arange(batch.point_mask.numel(), device=batch.points.device)
    pick = (flat % len(variants)).reshape(batch.point_mask.shape)  # [B, M, N]
    points = batch.points
    for index, variant in enumerate(variants):
        points = torch.where((pick == index)[..., None], variant.points, points)
    return batch.with_points(points, batch.point_mask)


def _last_points(batch: LaneBatch) -> torch.Tensor:
    """`[B, M, N, D]`: each slot holds its lane's last real point (zeros in empty lanes)."""
    n = batch.point_mask.shape[-1]
    slot = torch.arange(n, device=batch.points.device)
    last = torch.where(batch.point_mask, slot, -1).amax(-1) if n else None  # [B, M]
    if last is None:
        return torch.zeros_like(batch.points)
    index = last.clamp(min=0)[..., None, None].expand(-1, -1, 1, batch.shape[-1])
    picked = batch.points.gather(2, index)  # [B, M, 1, D]
    picked = torch.where((last >= 0)[..., None, None], picked, 0.0)
    return picked.expand_as(batch.points)


def _padding_kinds(garbage: str) -> tuple[str, list[str], list[str]]:
    """`(baseline kind, finite kinds to vary, non-finite kinds to vary)` for a contract."""
    if garbage not in GARBAGE_CONTRACTS:
        raise ValueError(
            f"garbage must be one of {tuple(GARBAGE_CONTRACTS)} (the data contract); got "
            f"{garbage!r}"
        )
    kinds = GARBAGE_CONTRACTS[garbage]
    baseline = "zeros" if "zeros" in kinds else kinds[0]
    others = [k for k in kinds if k != baseline]
    finite = [k for k in others if k not in NONFINITE_GARBAGE_KINDS]
    return baseline, finite, [k for k in others if k in NONFINITE_GARBAGE_KINDS]


def _compare_padding(
    property_name: str,
    subject: Subject,
    batch: LaneBatch,
    baseline: str,
    kinds: Sequence[str],
    as_drawn: bool,
) -> float:
    """Outputs with each variant's padding (and the batch's own when `as_drawn`) against the
    `baseline` kind's, every lane and the real points' features; NaN in both counts as
    equal (NaN itself is property `finite`'s business)."""
    if not bool((~batch.point_mask).any()):
        return 0.0  # no padded slot: nothing to vary
    reference = next(iter(padding_variants(batch, [baseline]).values()))
    expected = _call(subject, reference)
    expected_64 = _reference64(subject, reference)
    every_lane = torch.arange(batch.lane_mask.numel(), device=batch.points.device)
    variants = ({"as drawn": batch} if as_drawn else {}) | padding_variants(batch, kinds)
    worst = 0.0
    for label, variant in variants.items():
        actual = _call(subject, variant)
        pairs = _pairs(actual, expected, expected_64, variant, every_lane, batch.point_mask)
        worst = max(
            worst, _compare(property_name, subject, variant, pairs, f"with {label} padding")
        )
    return worst


def assert_ignores_padding(
    encoder: Encoder | Subject, batch: LaneBatch, garbage: str = "any"
) -> float:
    """Property `ignores_padding`: what finite values padded slots hold changes no output.

    Runs the batch with zeros in every padded slot (the baseline), then with its own padding
    (when finite) and with each finite fill the data contract `garbage` allows (see
    `padding_variants`: values in the real coordinates' range, the last point repeated and,
    under `"any"`, +-1e30), and compares `lane_embedding` of every lane and
    `point_features` at real points with the baseline. NaN and inf are
    `assert_ignores_nonfinite_padding`'s business.

    Args:
        encoder: the encoder (in eval mode).
        batch: the batch; its own padding is tried too when it is finite.
        garbage: the data contract's `"any"`, `"finite"`, `"zeros"` or `"repeat_last"`
            (the last two leave nothing to vary: 0.0 is returned).

    Returns:
        The largest error as a fraction of the allowed one.
    """
    subject = Subject.of(encoder, batch)
    baseline, finite, _ = _padding_kinds(garbage)
    if not finite:
        return 0.0
    padded = ~batch.point_mask[..., None].expand_as(batch.points)
    as_drawn = bool(batch.points[padded].isfinite().all())
    return _compare_padding("ignores_padding", subject, batch, baseline, finite, as_drawn)


def assert_ignores_nonfinite_padding(encoder: Encoder | Subject, batch: LaneBatch) -> float:
    """Property `ignores_nonfinite_padding`: NaN or inf in padded slots changes no output.

    Runs the batch with zeros in every padded slot, then with +inf, -inf and NaN there (and
    with its own padding when that holds NaN or inf), and compares `lane_embedding` of every
    lane and `point_features` at real points with the zero-padded run. A failure means the
    loader must never write NaN or inf in padded slots, or the encoder must select real points
    before its first layer.

    Returns:
        The largest error as a fraction of the allowed one.
    """
    subject = Subject.of(encoder, batch)
    padded = ~batch.point_mask[..., None].expand_as(batch.points)
    as_drawn = not bool(batch.points[padded].isfinite().all())
    return _compare_padding(
        "ignores_nonfinite_padding", subject, batch, "zeros", NONFINITE_GARBAGE_KINDS, as_drawn
    )


# -- lanes independent -----------------------------------------------------------------------------


def assert_lanes_independent(
    encoder: Encoder | Subject,
    batch: LaneBatch,
    *,
    empty_lanes: bool = True,
    empty_samples: bool = True,
) -> float:
    """Property `lanes_independent`: no lane's output depends on another lane or sample.

    Three variations of `batch`, each compared with the original on the lanes it keeps:

    1. samples reversed and lanes rotated by one within each sample: outputs must move with
       their lanes;
    2. every other lane (in flattened `b*M + m` order) changed: a real lane takes the content
       of another real lane of that half (lanes of the batch itself, so every variation stays
       inside the data contract), a lone one is emptied where the contract allows it, an
       empty lane is filled; the untouched lanes' outputs must not change;
    3. the same for the other half.

    Args:
        encoder: the encoder.
        batch: the batch.
        empty_lanes: whether the data contract allows lanes without a real point (False: no
            variation empties a lane).
        empty_samples: whether it allows samples without a real lane (False: no variation
            leaves a sample without one).

    Compares `lane_embedding` of every kept lane (empty ones too) and `point_features` at
    their real points.

    Returns:
        The largest error as a fraction of the allowed one.
    """
    subject = Subject.of(encoder, batch)
    expected = _call(subject, batch)
    expected_64 = _reference64(subject, batch) if subject.twin is not None else None
    b, m, _, _ = batch.shape
    worst = 0.0

    # 1. permutation: outputs must follow their lanes.
    sample_order = torch.arange(b - 1, -1, -1)
    lane_order = torch.roll(torch.arange(m), 1)
    reordered = batch.samples(sample_order)  # samples keep their own other inputs
    permuted = reordered.with_points(
        reordered.points[:, lane_order], reordered.point_mask[:, lane_order]
    )
    actual = _call(subject, permuted)
    restored = EncoderOutput(
        _unpermute(actual.lane_embedding, sample_order, lane_order),
        None
        if actual.point_features is None
        else _unpermute(actual.point_features, sample_order, lane_order),
    )
    every_lane = torch.arange(b * m, device=batch.points.device)
    pairs = _pairs(restored, expected, expected_64, batch, every_lane, batch.point_mask)
    worst = _compare(
        "lanes_independent", subject, batch, pairs, "after permuting lanes and samples"
    )

    # 2 and 3. change one half of the lanes, keep the other.
    parity = (torch.arange(b * m, device=batch.points.device) % 2).view(b, m)
    for changed_half in (0, 1):
        changed = parity == changed_half  # [B, M]
        if not bool(changed.any()) or bool(changed.all()):
            continue
        variation = _changed_lanes(batch, changed, empty_lanes, empty_samples)
        if torch.equal(variation.point_mask, batch.point_mask) and torch.equal(
            variation.points.nan_to_num(), batch.points.nan_to_num()
        ):
            continue  # nothing the contract allows changes these lanes
        actual = _call(subject, variation)
        kept_lanes = (~changed).flatten().nonzero().squeeze(1)
        kept_points = batch.point_mask & ~changed[..., None]
        pairs = _pairs(actual, expected, expected_64, batch, kept_lanes, kept_points)
        worst = max(
            worst,
            _compare("lanes_independent", subject, batch, pairs, "after changing the other lanes"),
        )
    return worst


def _unpermute(
    values: torch.Tensor, sample_order: torch.Tensor, lane_order: torch.Tensor
) -> torch.Tensor:
    """Undo `values[sample_order][:, lane_order]` on the first two axes."""
    out = torch.empty_like(values)
    out[sample_order[:, None], lane_order[None, :]] = values
    return out


def _changed_lanes(
    batch: LaneBatch, changed: torch.Tensor, empty_lanes: bool, empty_samples: bool
) -> LaneBatch:
    """Lanes where `changed` is True, changed within the data contract; the others as they
    were.

    Real changed lanes take the content (points and mask) of the next real changed lane, so
    every lane is one the batch already had. A lone real changed lane is emptied, where empty
    lanes are allowed and its sample keeps a real lane or empty samples are allowed. An empty
    changed lane is filled with a fixed, finite polyline (a full lane: every layout allows it).
    """
    b, m, n, d = batch.shape
    device = batch.points.device
    points = batch.points.reshape(b * m, n, d).clone()  # [B*M, N, D]
    point_mask = batch.point_mask.reshape(b * m, n).clone()  # [B*M, N]
    real = (changed & batch.lane_mask).flatten().nonzero().squeeze(1)  # [R] flat lane indices
    if len(real) >= 2:
        source = torch.roll(real, 1)
        points[real] = batch.points.reshape(b * m, n, d)[source]
        point_mask[real] = batch.point_mask.reshape(b * m, n)[source]
    elif len(real) == 1 and empty_lanes:
        lane = int(real[0])
        if empty_samples or int(batch.lane_mask[lane // m].sum()) > 1:
            point_mask[lane] = False
    slot = torch.arange(n, dtype=torch.float64, device=device)
    coordinate = torch.arange(d, dtype=torch.float64, device=device)
    polyline = (slot[:, None] - n / 2) * (coordinate[None, :] + 1.5)  # [N, D], finite, bounded
    empty_now = (changed & ~batch.lane_mask).flatten()  # [B*M]: gets the polyline
    points[empty_now] = polyline.to(points.dtype)
    point_mask[empty_now] = True
    return batch.with_points(points.reshape(b, m, n, d), point_mask.reshape(b, m, n))


# -- gradients isolated ----------------------------------------------------------------------------


def assert_gradients_isolated(encoder: Encoder | Subject, batch: LaneBatch) -> float:
    """Property `gradients_isolated`: gradients stay on real points of their own lane.

    With a loss over real lanes' `lane_embedding` and real points' `point_features`
    (fixed, nonuniform weights), the gradient w.r.t. `points` must be finite everywhere and
    exactly 0 at padded slots, the gradients of the parameters (of an `nn.Module`) finite;
    and for each real lane, the gradient of that lane's outputs must
    be exactly 0 on every other lane's points. Only real lanes' outputs enter the losses: that is
    what a correctly masked training loss reads.

    Returns:
        0.0 (an exact check).
    """
    subject = Subject.of(encoder, batch)
    real_lanes = batch.lane_mask.flatten().nonzero().squeeze(1)  # [R]
    if real_lanes.numel() == 0:
        return 0.0
    points = batch.points.to(device=subject.device, dtype=subject.dtype).detach().requires_grad_()
    point_mask = batch.point_mask.to(subject.device)
    with _runs(batch):
        out = subject(batch.to(subject.device, subject.dtype).with_points(points, point_mask))
    if not out.lane_embedding.requires_grad:
        raise EncoderPropertyError(
            "gradients_isolated",
            "lane_embedding carries no gradient w.r.t. points (detached, or computed under "
            "no_grad): a training loss could not reach the points",
            batch,
        )
    lane_losses = _lane_losses(out, point_mask)  # [B*M] (only real lanes nonzero)
    parameters = _trainable(subject.encoder)
    with _runs(batch):
        grad, *parameter_grads = torch.autograd.grad(
            lane_losses.sum(), [points, *parameters], retain_graph=True, allow_unused=True
        )
    if grad is None:
        grad = torch.zeros_like(points)
    for (name, _), parameter_grad in zip(
        _named_trainable(subject.encoder), parameter_grads, strict=True
    ):
        if parameter_grad is not None and not bool(parameter_grad.isfinite().all()):
            raise EncoderPropertyError(
                "gradients_isolated",
                f"the gradient of parameter {name!r} holds "
                f"{int((~parameter_grad.isfinite()).sum())} NaN or inf values for a loss over "
                f"real lanes only: {_nonfinite_gradient_source(batch)}",
                batch,
            )
    if not bool(grad.isfinite().all()):
        where = [int(i) for i in (~grad.isfinite()).nonzero()[0]]
        kind = "padded" if not bool(point_mask[tuple(where[:3])]) else "real"
        raise EncoderPropertyError(
            "gradients_isolated",
            f"the gradient w.r.t. points is {float(grad[tuple(where)])} at {kind} slot "
            f"(b, m, n, d) = {where}: {_nonfinite_gradient_source(batch)}",
            batch,
        )
    leaked = (grad != 0) & ~point_mask[..., None]
    if bool(leaked.any()):
        where = [int(i) for i in leaked.nonzero()[0]]
        raise EncoderPropertyError(
            "gradients_isolated",
            f"padded slot (b, m, n, d) = {where} gets gradient {float(grad[tuple(where)]):.3g}: "
            "padded values take part in the computation",
            batch,
        )
    m = batch.shape[1]
    for lane in real_lanes.tolist():
        with _runs(batch):
            (lane_grad,) = torch.autograd.grad(
                lane_losses[lane], points, retain_graph=True, allow_unused=True
            )
        if lane_grad is None:
            continue
        others = lane_grad.flatten(0, 1).clone()  # [B*M, N, D]
        others[lane] = 0
        if bool((others != 0).any()):
            other = int((others != 0).flatten(1).any(1).nonzero()[0])
            raise EncoderPropertyError(
                "gradients_isolated",
                f"the output of lane (b={lane // m}, m={lane % m}) has gradient on the points "
                f"of lane (b={other // m}, m={other % m}): lanes interact",
                batch,
            )
    return 0.0


def _nonfinite_gradient_source(batch: LaneBatch) -> str:
    """Where a NaN or inf gradient comes from, as far as `batch` can say: masked rows only
    when it has one (a padded slot or an empty lane), else the real points' own computation."""
    if bool((~batch.point_mask).any()):
        return (
            "NaN or inf from masked rows (padded slots, empty lanes) reaches the backward pass "
            "even though the forward pass selects it away"
        )
    return (
        "this batch has no padded slot and no empty lane, so no masked row: the real points' "
        "own computation overflows or divides by zero in the backward pass"
    )


def lanes_alone_trouble(encoder: Encoder | Subject, batch: LaneBatch, limit: int = 8) -> str:
    """What goes wrong when the real lanes of `batch` run alone and unpadded ('' when
    nothing does): a crash, NaN or inf in a lane's output, or in the gradient of its loss
    (the one `assert_gradients_isolated` uses) w.r.t. its points or the parameters.

    The experiment that tells a dtype's numerics from a mask bug (no padding takes part):
    the checks run it at the row's dtype, in its precision mode, and at plain float32
    (`lpim.testing._dtype_probe`). A crash whose op got a fill value the dtype cannot hold
    counts as no trouble here: that fill is a bug, reported by the rows.

    Args:
        encoder: the encoder (a `Subject` keeps its dtype and device).
        batch: the example; each lane gets its own sample's other inputs.
        limit: the most lanes run (the first in `b * M + m` order).
    """
    subject = Subject.of(encoder, batch)
    m = batch.shape[1]
    lanes = batch.lane_mask.flatten().nonzero().squeeze(1).tolist()[:limit]
    found = ""

    def run(b: int, lane: int) -> None:
        nonlocal found
        single = lane_alone(batch, b, lane).to(subject.device, subject.dtype)
        points = single.points.detach().requires_grad_()
        with torch.enable_grad():
            out = subject(single.with_points(points, single.point_mask))
            where = f"lane (b={b}, m={lane}) alone and unpadded"
            if not bool(out.lane_embedding.isfinite().all()):
                found = f"{where} gives NaN or inf in lane_embedding"
                return
            loss = _lane_losses(out, single.point_mask).sum()
            if not loss.requires_grad:
                return
            named = _named_trainable(subject.encoder)
            grads = torch.autograd.grad(loss, [points, *(p for _, p in named)], allow_unused=True)
        labels = ["points", *(f"parameter {n!r}" for n, _ in named)]
        for label, grad in zip(labels, grads, strict=True):
            if grad is not None and not bool(grad.isfinite().all()):
                found = f"{where} gives NaN or inf in the gradient w.r.t. {label}"
                return

    for index in lanes:
        b, lane = divmod(index, m)
        crash = crash_of(functools.partial(run, b, lane), subject.dtype)
        if crash is not None:
            if crash.overflow is not None:
                return ""  # a fill value the dtype cannot hold: the code's bug
            raised = crash.error.__cause__ or crash.error
            first = str(raised).splitlines()[0] if str(raised) else ""
            seen = f"{type(raised).__name__}: {first[:80]}"
            return f"lane (b={b}, m={lane}) alone and unpadded raises {seen}"
        if found:
            return found
    return ""


def _named_trainable(encoder: Encoder) -> list[tuple[str, torch.Tensor]]:
    """Parameters that take gradients (none for a plain callable)."""
    if not isinstance(encoder, torch.nn.Module):
        return []
    return [(name, p) for name, p in encoder.named_parameters() if p.requires_grad]


def _trainable(encoder: Encoder) -> list[torch.Tensor]:
    return [p for _, p in _named_trainable(encoder)]


def _lane_losses(out: EncoderOutput, point_mask: torch.Tensor) -> torch.Tensor:
    """`[B*M]`: a fixed nonuniform weighting of each real lane's outputs (0 for empty lanes)."""
    lane_mask = point_mask.any(-1).flatten()  # [B*M]
    embedding = out.lane_embedding.flatten(0, 1)  # [B*M, C]
    weights = torch.cos(torch.arange(embedding.shape[1], device=embedding.device) + 0.5)
    losses = torch.where(lane_mask, (embedding * weights.to(embedding.dtype)).sum(-1), 0)
    if out.point_features is not None:
        features = out.point_features.flatten(0, 1)  # [B*M, N, C]
        point_weights = torch.sin(torch.arange(features.shape[-1], device=features.device) + 0.5)
        per_point = (features * point_weights.to(features.dtype)).sum(-1)  # [B*M, N]
        real = point_mask.flatten(0, 1)
        losses = losses + torch.where(real, per_point, 0).sum(-1)
    return losses


def assert_gradients_ignore_padding(
    encoder: Encoder | Subject, batch: LaneBatch, garbage: str = "any"
) -> float:
    """Property `gradients_ignore_padding`: garbage in padded slots leaves training alone.

    With the same loss as `assert_gradients_isolated` (a fixed weighting of real lanes' outputs
    only), computes every trainable parameter's gradient with zeros in the padded slots, then
    with the fills the data contract `garbage` allows in the padded slots of real lanes (one
    pass with the finite ones mixed: values in range, the last point repeated, +-1e30; one
    with +-inf and NaN mixed). Where the loss itself is unchanged, each gradient must be finite
    and equal to the zero-padded one under the tolerance rule; a changed loss is a forward
    leak, which the padding properties name. An encoder that runs a layer on every slot and
    masks only its output passes every forward property, yet its weight gradients sum
    `0 * NaN` over the padded slots: NaN in the first training step.

    Args:
        encoder: the encoder; a plain callable without parameters has nothing to train (0.0).
        batch: the batch; its padded slots are refilled.
        garbage: the data contract (`"zeros"` and `"repeat_last"` leave nothing to vary).

    Returns:
        The largest error as a fraction of the allowed one.
    """
    subject = Subject.of(encoder, batch)
    named = _named_trainable(subject.encoder)
    baseline, finite, nonfinite = _padding_kinds(garbage)
    if not named or not (finite or nonfinite) or not bool((~batch.point_mask).any()):
        return 0.0
    if not bool(batch.lane_mask.any()):
        return 0.0  # no real lane: the loss is 0 whatever the encoder does
    names = [name for name, _ in named]
    baseline_batch = next(iter(padding_variants(batch, [baseline]).values()))
    baseline_points = baseline_batch.points
    (_, (base_loss, reference)), *_ = _parameter_gradients(
        subject, {"baseline": baseline_batch}, named, batch
    ).items()
    if any(g is not None and not bool(g.isfinite().all()) for g in reference):
        return 0.0  # NaN with zero padding already: gradients_isolated's business
    rule = subject.tolerance(batch)
    worst = 0.0
    # One backward pass per group, each padded slot holding another of the group's fills: a
    # garbage-sensitive gradient shows with any of them, and each pass costs a full backward.
    # Only real lanes' padded slots are refilled (empty lanes keep the baseline): garbage in a
    # lane the loss never reads would change nothing the loss sees in the forward pass, and a
    # leak there is the padding properties' to name.
    real_lanes = batch.lane_mask[..., None, None]  # [B, M, 1, 1]
    variants = {
        f"mixed {' / '.join(group)}": batch.with_points(
            torch.where(real_lanes, padding_mixture(batch, group).points, baseline_points),
            batch.point_mask,
        )
        for group in (finite, nonfinite)
        if group
    }
    for label, (loss, grads) in _parameter_gradients(subject, variants, named, batch).items():
        if float(rule.error_ratio(loss, base_loss).max()) > 1.0:
            continue  # the forward pass already changed: the padding properties' business
        for name, want, got in zip(names, reference, grads, strict=True):
            if want is None or got is None:
                continue
            ratio = rule.error_ratio(got.flatten(), want.flatten())
            largest = float(ratio.max()) if ratio.numel() else 0.0
            if largest > 1.0:
                where = int(ratio.argmax())
                bad = int((~got.isfinite()).sum())
                what = f" ({bad} NaN or inf values)" if bad else ""
                remedy = (
                    "select real points before the first layer (torch.where(point_mask[..., "
                    "None], points, 0)), or, if your loader never writes NaN or inf in padded "
                    "slots, state it: garbage='finite' (lpim check --garbage finite)"
                    if "inf" in label or "nan" in label
                    else "select real points before the first layer"
                )
                raise EncoderPropertyError(
                    "gradients_ignore_padding",
                    f"with {label} padding, the gradient of parameter {name!r} is "
                    f"{float(got.flatten()[where]):.6g} at element {where}{what} but "
                    f"{float(want.flatten()[where]):.6g} with zero padding, for a loss over "
                    "real lanes only whose value the padding leaves alone: padded slots take "
                    f"part in the backward pass (one such batch and training is NaN); {remedy}",
                    variants[label],
                    largest,
                )
            worst = max(worst, largest)
    return worst


def _parameter_gradients(
    subject: Subject,
    variants: dict[str, LaneBatch],
    named: list[tuple[str, torch.Tensor]],
    batch: LaneBatch,
) -> dict[str, tuple[torch.Tensor, list[torch.Tensor | None]]]:
    """Per variant, the real-lane loss (detached, `[1]`) and its gradient w.r.t. each
    parameter in `named`."""
    found: dict[str, tuple[torch.Tensor, list[torch.Tensor | None]]] = {}
    parameters = [p for _, p in named]
    for label, variant in variants.items():
        with _runs(batch), torch.enable_grad():
            out = subject(variant)
            loss = _lane_losses(out, variant.point_mask.to(subject.device)).sum()
            grads: list[torch.Tensor | None] = [None] * len(parameters)
            if loss.requires_grad:
                grads = list(torch.autograd.grad(loss, parameters, allow_unused=True))
        found[label] = (loss.detach().reshape(1), grads)
    return found


# -- empty lanes -----------------------------------------------------------------------------------


def assert_empty_lanes_zero(encoder: Encoder | Subject, batch: LaneBatch) -> float:
    """Property `empty_lanes_zero` (declared with `empty_lanes="zero"`): every empty
    lane's `lane_embedding` is exactly 0, so that a consumer may read all `M` lanes.

    Returns:
        0.0 (an exact check).
    """
    subject = Subject.of(encoder, batch)
    out = _call(subject, batch)
    empty = ~batch.lane_mask.to(out.lane_embedding.device)  # [B, M]
    rows = out.lane_embedding[empty]  # [E, C]
    nonzero = rows != 0
    if bool(nonzero.any()):
        row, col = (int(i) for i in nonzero.nonzero()[0])
        b, m = (int(i) for i in empty.nonzero()[row])
        raise EncoderPropertyError(
            "empty_lanes_zero",
            f"empty lane (b={b}, m={m}): lane_embedding[{col}] is {float(rows[row, col]):.6g}, "
            f"not 0 ({int(nonzero.any(-1).sum())} of {rows.shape[0]} empty lanes are not "
            "zeros)",
            batch,
        )
    return 0.0


def empty_lane_values(encoder: Encoder | Subject, batch: LaneBatch) -> str:
    """What `encoder` gives for the empty lanes of `batch`, in words: `"exact zeros"`,
    `"NaN or inf"`, `"one constant vector"`, `"values that vary"` (or `""` when the
    batch has no empty lane or the encoder fails on it)."""
    subject = Subject.of(encoder, batch)
    try:
        out = _call(subject, batch)
    except (EncoderPropertyError, DeadlineExceeded):  # the properties report those
        return ""
    rows = out.lane_embedding[~batch.lane_mask.to(out.lane_embedding.device)]  # [E, C]
    if rows.numel() == 0:
        return ""
    if not bool(rows.isfinite().all()):
        return "NaN or inf"
    if bool((rows == 0).all()):
        return "exact zeros"
    if bool((rows == rows[:1]).all()):
        return "one constant vector (not zeros)"
    return "values that vary from lane to lane"


# -- devices agree ---------------------------------------------------------------------------------


def no_cuda_reason() -> str:
    """Why `devices_agree` is skipped here: the message of its skip where CUDA is missing."""
    build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    return (
        "devices_agree needs a CUDA device: torch.cuda.is_available() is False "
        f"(torch {torch.__version__}, {build})"
    )


def assert_devices_agree(
    encoder: Encoder | Subject, batch: LaneBatch, device: str | torch.device = "cuda"
) -> float:
    """Property `devices_agree`: the encoder on `device` gives what it gives on the CPU.

    Modules are copied to `device`; other callables receive inputs there. Compares
    `lane_embedding` of every lane and `point_features` at real points under the tolerance
    rule (the observed term from a float64 CPU copy).

    Raises:
        unittest.SkipTest: when `device` is CUDA and none is available (pytest shows a skip).

    Returns:
        The largest error as a fraction of the allowed one.
    """
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise unittest.SkipTest(no_cuda_reason())
    cpu_batch = batch.to(device="cpu")
    subject = Subject.of(encoder, cpu_batch)
    if subject.device.type != "cpu":
        subject = Subject.prepare(subject.encoder, subject.dtype, torch.device("cpu"))
    expected = _call(subject, cpu_batch)
    expected_64 = _reference64(subject, cpu_batch) if subject.twin is not None else None
    remote = Subject.prepare(subject.encoder, subject.dtype, target)
    actual = _call(remote, cpu_batch)
    actual = EncoderOutput(
        actual.lane_embedding.cpu(),
        None if actual.point_features is None else actual.point_features.cpu(),
    )
    every_lane = torch.arange(batch.lane_mask.numel())
    pairs = _pairs(actual, expected, expected_64, cpu_batch, every_lane, cpu_batch.point_mask)
    return _compare("devices_agree", subject, cpu_batch, pairs, f"on {target}")
