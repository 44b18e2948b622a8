"""PriorEncoder under torch.compile(dynamic=True): graph breaks, recompiles, outputs (CPU).

What these tests pin down (issue: compile-friendly encoder):

- one forward breaks the graph at most once: at the one host sync, where the real-token and
  real-lane counts become shapes (``torch._dynamo.explain``);
- no recompilation after the first call, neither over 10 batches of one shape with different
  masks (which lanes and points are real, garbage in the padding) nor over 10 batches of growing
  ``B``, ``M``, ``N`` (counted as graphs handed to the backend: every recompile hands it a new one);
- inductor's compiled encoder gives the eager encoder's outputs under the ``lpim.tolerance`` rule.

Guards and graph breaks are decided by dynamo before any backend runs, so the recompile count uses
the cheap ``eager`` backend; only the output check pays for an inductor compile (the slowest test
here, ~30-50 s on 2 cores). Sizes avoid 0 and 1, which dynamo specialises on by design.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch._dynamo
from torch import Tensor
from torch._dynamo.testing import CompileCounterWithBackend

from lpim import PriorEncoder
from lpim.tolerance import encoder_scale, tolerance


@pytest.fixture(autouse=True)
def fresh_dynamo() -> object:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def make_encoder(packed: bool | None = None) -> PriorEncoder:
    torch.manual_seed(0)
    encoder = PriorEncoder(d_model=16, nhead=2, num_layers=2, dim_feedforward=32, packed=packed)
    return encoder.eval()


# Both token layouts: packed real tokens (the CPU default), padded real lanes (the CUDA default).
PACKED = pytest.mark.parametrize("packed", [True, False], ids=["packed", "lanes"])


def batch(B: int, M: int, N: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random lanes (some empty), NaN in every padded slot; at least 2 real lanes, 3 points."""
    gen = torch.Generator().manual_seed(seed)
    points = torch.rand(B, M, N, 2, generator=gen) * 100 - 50
    point_mask = torch.rand(B, M, N, generator=gen) < 0.5
    point_mask &= torch.rand(B, M, 1, generator=gen) < 0.7  # empty lanes
    point_mask[0, 0, :2] = True
    point_mask[-1, -1, -1] = True
    return torch.where(point_mask[..., None], points, math.nan), point_mask


def assert_outputs_close(actual: object, expected: object, N: int, encoder: PriorEncoder) -> None:
    rule = tolerance(torch.float32, *encoder_scale(encoder, N + 1))
    for name in ("lane_embedding", "point_features"):
        got, want = getattr(actual, name), getattr(expected, name)
        assert got.shape == want.shape, name
        ratio = float(rule.error_ratio(got, want).max())
        assert ratio <= 1, f"{name}: error {ratio:.3g}x the allowed"


@PACKED
def test_one_graph_break_per_forward(packed: bool) -> None:
    encoder = make_encoder(packed)
    explanation = torch._dynamo.explain(encoder)(*batch(3, 4, 5, seed=0))
    assert explanation.graph_break_count <= 1, [str(r.reason) for r in explanation.break_reasons]
    # the one break is the host sync (the counts that become shapes)
    assert explanation.graph_break_count == 1
    assert "_local_scalar_dense" in str(explanation.break_reasons[0].reason)


@PACKED
def test_no_recompiles_across_batch_compositions_and_sizes(packed: bool) -> None:
    encoder = make_encoder(packed)
    backend = CompileCounterWithBackend("eager")
    compiled = torch.compile(encoder, backend=backend, dynamic=True)
    shapes = [(3, 4, 5)] * 10 + [(2 + i, 3 + i, 4 + 2 * i) for i in range(10)]
    graphs_after_first = None
    with torch.no_grad():
        for seed, (B, M, N) in enumerate(shapes):
            points, point_mask = batch(B, M, N, seed)
            assert_outputs_close(
                compiled(points, point_mask), encoder(points, point_mask), N, encoder
            )
            if graphs_after_first is None:
                graphs_after_first = backend.frame_count
    assert graphs_after_first is not None and graphs_after_first >= 1
    recompiles = backend.frame_count - graphs_after_first
    assert recompiles == 0, f"{recompiles} recompilation(s) over {len(shapes) - 1} batches"


@PACKED
def test_inductor_matches_eager(packed: bool) -> None:
    encoder = make_encoder(packed)
    compiled = torch.compile(encoder, dynamic=True)  # inductor, CPU
    with torch.no_grad():
        for seed, (B, M, N) in enumerate([(3, 4, 5), (4, 6, 7)]):
            points, point_mask = batch(B, M, N, seed)
            assert_outputs_close(
                compiled(points, point_mask), encoder(points, point_mask), N, encoder
            )
