"""The tolerance rule: how far a batched output may be from its per-lane reference, per dtype.

Every property that compares two computations uses this one rule; no check picks its own atol.

The rule
--------
With `y_b` the output under test (batched), `y_s` the reference in the same dtype (the same
encoder on the lane alone) and `y_64` the reference computed by a float64 copy of the encoder,
an element passes when:

```text
|y_b - y_s| <= 2 * max|y_s - y_64| + atol(dtype, depth) + rtol(dtype, K, depth) * |y_s|
```

Derivation
----------
*The observed term.* `max|y_s - y_64|` is how far this very encoder, on this very input, drifts
from exact arithmetic when run in `dtype`. Running it padded and batched changes the shapes
the kernels see and so the order of the roundings, not their number: an honest batched result
should drift from `y_64` by about as much as `y_s` does, hence `|y_b - y_s|` is at most the
sum of the two drifts, `2 * max|y_s - y_64|`. The factor 2 is the one flash-attention's tests
use for a kernel against a reference of the same precision. It is taken over the whole output (a
max), so one badly conditioned element sets the scale, as in PyTorch's SDPA tests.

*The floors.* When the observed drift happens to be tiny (a float64 run, where `y_s` is
`y_64`, or a lucky input), the rule must still allow the rounding that reordering alone causes.
`torch.testing.assert_close`'s defaults are calibrated for a single operation; an encoder chains
`depth` reductions, each of length up to `K`. Summation error grows like `sqrt(K) * u` in
practice (`K * u` is the deterministic bound), with `u` the unit roundoff, and independent
errors of `depth` chained reductions add like `sqrt(depth)`. Hence:

```text
rtol(dtype, K, depth) = max(rtol_default(dtype), sqrt(K) * u(dtype)) * sqrt(depth)
atol(dtype, depth)    = atol_default(dtype) * sqrt(depth)
```

with `(rtol_default, atol_default)` from `assert_close`: float64 `(1e-7, 1e-7)`, float32
`(1.3e-6, 1e-5)`, float16 `(1e-3, 1e-5)`, bfloat16 `(1.6e-2, 1e-5)`, and `u` = 2^-53,
2^-24, 2^-11, 2^-8. Where no float64 copy can be made (the encoder is not an `nn.Module`), the
floors alone apply.

What the rule is not: it is never loosened to make a test pass. A correct encoder's largest error
is typically a small fraction of the allowed one (the report prints that fraction); a mask bug
moves outputs by O(1) and exceeds it by orders of magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "ASSERT_CLOSE_DEFAULTS",
    "OBSERVED_FACTOR",
    "UNIT_ROUNDOFF",
    "Tolerance",
    "encoder_scale",
    "tolerance",
]

ASSERT_CLOSE_DEFAULTS: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1.3e-6, 1e-5),
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
}
"""`(rtol, atol)` that `torch.testing.assert_close` uses by default, per dtype."""

UNIT_ROUNDOFF: dict[torch.dtype, float] = {
    torch.float64: 2.0**-53,
    torch.float32: 2.0**-24,
    torch.float16: 2.0**-11,
    torch.bfloat16: 2.0**-8,
}
"""`u` = half the distance from 1 to the next representable number, per dtype."""

OBSERVED_FACTOR = 2.0
"""Multiplier on the observed low-precision drift (flash-attention's factor)."""


@dataclass(frozen=True)
class Tolerance:
    """The rule instantiated for one dtype, reduction length and depth.

    Attributes:
        dtype: the dtype the outputs were computed in.
        reduction_length: `K`, the longest dot product or sum in the encoder.
        depth: the number of chained reductions (e.g. linear layers) from input to output.
        rtol: the relative floor, `max(rtol_default, sqrt(K) * u) * sqrt(depth)`.
        atol: the absolute floor, `atol_default * sqrt(depth)`.
    """

    dtype: torch.dtype
    reduction_length: int
    depth: int
    rtol: float
    atol: float

    def allowed(self, expected: torch.Tensor, drift: float = 0.0) -> torch.Tensor:
        """Per-element allowed `|actual - expected|`: `2 * drift + atol + rtol * |expected|`.

        `drift` is `max|y_s - y_64|`, the reference's own distance from float64 (0 when
        unknown or when `dtype` is float64).
        """
        if not (math.isfinite(drift) and drift >= 0):
            raise ValueError(f"drift must be a finite number >= 0; got {drift!r}")
        magnitude = expected.detach().to(torch.float64).abs()
        return OBSERVED_FACTOR * drift + self.atol + self.rtol * magnitude

    def error_ratio(
        self, actual: torch.Tensor, expected: torch.Tensor, drift: float = 0.0
    ) -> torch.Tensor:
        """`|actual - expected| / allowed` per element, in float64: the rule holds where <= 1.

        Elements where both are NaN, or both are the same infinity, count as 0; NaN against a
        number counts as inf.
        """
        a = actual.detach().to(torch.float64)
        e = expected.detach().to(torch.float64)
        same = (a == e) | (a.isnan() & e.isnan())
        finite = a.isfinite() & e.isfinite()
        # Non-finite elements are decided before dividing: with ``expected`` inf or NaN the
        # allowed error is inf or NaN, which would turn a mismatch into 0 or NaN (and a NaN
        # ratio passes ``ratio.max() <= 1``, hiding every other element).
        ratio = (a - e).abs() / self.allowed(torch.where(finite, e, 0.0), drift)
        return torch.where(same, 0.0, torch.where(finite, ratio, math.inf))


def tolerance(dtype: torch.dtype, reduction_length: int = 1, depth: int = 1) -> Tolerance:
    """The rule's floors for `dtype`, a reduction of length `K` and `depth` chained ones.

    Raises:
        ValueError: for a dtype the rule has no constants for (only float64, float32, bfloat16
            and float16 have them).
    """
    if dtype not in ASSERT_CLOSE_DEFAULTS:
        raise ValueError(
            f"no tolerance rule for {dtype}; expected one of {list(ASSERT_CLOSE_DEFAULTS)}"
        )
    k = max(1, int(reduction_length))
    layers = max(1, int(depth))
    rtol_default, atol_default = ASSERT_CLOSE_DEFAULTS[dtype]
    rtol = max(rtol_default, math.sqrt(k) * UNIT_ROUNDOFF[dtype]) * math.sqrt(layers)
    return Tolerance(dtype, k, layers, rtol, atol_default * math.sqrt(layers))


def encoder_scale(encoder: object, fallback_length: int) -> tuple[int, int]:
    """`(K, depth)` read off an `nn.Module`: the widest `nn.Linear` input and the count of
    matmul-bearing modules (each `nn.Linear`; `nn.MultiheadAttention` counts its score and
    value products too). Other callables get `(fallback_length, 1)`."""
    if not isinstance(encoder, torch.nn.Module):
        return max(1, fallback_length), 1
    widths = [fallback_length]
    depth = 0
    for module in encoder.modules():
        if isinstance(module, torch.nn.Linear):
            widths.append(module.in_features)
            depth += 1
        elif isinstance(module, torch.nn.MultiheadAttention):
            widths.append(module.embed_dim)
            depth += 3  # in-projection, scores, weighted values (out_proj is an nn.Linear)
    return max(widths), max(1, depth)
