"""The real-world gallery (examples/realworld/) gets the verdicts its README and docstrings state.

Each encoder is checked under the data contract its loader keeps, and where a contract matters,
without it too; each failure is asserted by the property that catches it, so a gallery entry that
stops failing (or starts failing another way) fails here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from hypothesis import settings

from lpim.testing import (
    EncoderPropertyError,
    LaneConsumerPropertyError,
    check_encoder,
    check_lane_consumer,
)

REALWORLD = Path(__file__).resolve().parent.parent / "examples" / "realworld"
FAST = settings(max_examples=10, deadline=None, database=None, derandomize=True)


def _load(name: str) -> ModuleType:
    """Import ``examples/realworld/NAME.py`` as module ``NAME`` (as ``lpim check`` would)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REALWORLD / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _failed(check: Any, target: Any, error: type[AssertionError], **kwargs: Any) -> set[str]:
    """The properties that fail (empty when the check passes)."""
    try:
        report = check(target, settings=FAST, **kwargs)
    except error as failure:
        return {f.property_name for f in failure.failures}  # type: ignore[attr-defined]
    assert report.passed
    return set()


# The attention sub-graph's loader: non-empty polylines, real points first, zeros after them.
SUBGRAPH_LOADER: dict[str, Any] = {
    "empty_lanes": False,
    "empty_samples": False,
    "layout": "right",
    "garbage": "zeros",
}

# (module, factory, contract, properties that fail)
ENCODER_VERDICTS = [
    ("mtr_polyline", "build_encoder", {}, set()),
    ("vectornet_subgraph", "build_encoder", {}, set()),
    (
        "vectornet_subgraph",
        "build_buggy_encoder",
        {"layout": "right", "garbage": "zeros"},
        {"matches_unpadded"},
    ),
    ("gru_lane", "build_encoder", {"layout": "right", "garbage": "zeros"}, set()),
    ("gru_lane", "build_encoder", {"layout": "right"}, set()),
    ("gru_lane", "build_encoder", {}, {"matches_unpadded"}),
    ("lanediffusion_prior", "build_encoder", {"layout": "right", "garbage": "repeat_last"}, set()),
    ("lanediffusion_prior", "build_encoder", {"garbage": "finite"}, set()),
    (
        "lanediffusion_prior",
        "build_encoder",
        {},
        {"ignores_padding", "ignores_nonfinite_padding"},
    ),
    ("attention_subgraph", "build_encoder", SUBGRAPH_LOADER, {"matches_unpadded"}),
    ("attention_subgraph", "build_encoder", {}, {"runs", "matches_unpadded"}),
    ("attention_subgraph", "build_fixed", SUBGRAPH_LOADER, set()),
    ("attention_subgraph", "build_fixed", {}, {"runs"}),
    ("pointnet_valid", "build_encoder", {"layout": "right", "garbage": "zeros"}, set()),
    ("pointnet_valid", "build_encoder", {"garbage": "finite"}, set()),
    ("pointnet_valid", "build_encoder", {"garbage": "any_finite"}, {"gradients_ignore_padding"}),
    ("pointnet_valid", "build_encoder", {}, {"gradients_ignore_padding"}),
    ("pointnet_valid", "build_fixed", {}, set()),
]


@pytest.mark.parametrize(
    ("module", "factory", "contract", "failing"),
    ENCODER_VERDICTS,
    ids=[
        f"{m}:{f}-{'-'.join(map(str, c.values())) or 'default'}" for m, f, c, _ in ENCODER_VERDICTS
    ],
)
def test_encoder_verdict(
    module: str, factory: str, contract: dict[str, Any], failing: set[str]
) -> None:
    encoder = getattr(_load(module), factory)()
    failed = _failed(check_encoder, encoder, EncoderPropertyError, dtype=torch.float32, **contract)
    assert failed == failing


# The agent road encoder: validity as the points' last channel, the sample's agent embedding as
# the query (per-sample context); its loader clips polylines at the box (padding at either end)
# and writes zeros.
ROAD_LOADER: dict[str, Any] = {"layout": "contiguous", "garbage": "zeros"}
ROAD_VERDICTS = [
    ("build_encoder", ROAD_LOADER, set()),
    ("build_encoder", {}, {"ignores_padding", "ignores_nonfinite_padding"}),
    ("build_repeat_bug", ROAD_LOADER, {"matches_unpadded", "lanes_independent"}),
    ("build_fixed", {}, set()),
]


@pytest.mark.parametrize(
    ("factory", "contract", "failing"),
    ROAD_VERDICTS,
    ids=[f"{f}-{'-'.join(map(str, c.values())) or 'default'}" for f, c, _ in ROAD_VERDICTS],
)
def test_agent_road_verdict(factory: str, contract: dict[str, Any], failing: set[str]) -> None:
    road = _load("agent_road")
    failed = _failed(
        check_encoder,
        getattr(road, factory)(),
        EncoderPropertyError,
        point_mask_as="valid_channel",
        other_inputs=road.agents,
        dtype=torch.float32,
        **contract,
    )
    assert failed == failing


def test_agent_road_repeat_bug_needs_two_samples_and_each_lane_gets_its_own_agent() -> None:
    """The bug is invisible with one sample; with two, the batched polyline of sample 1 reads
    sample 0's agent, and the lane alone (given sample 1's agent) differs."""
    road = _load("agent_road")
    buggy, right = road.build_repeat_bug(), road.build_encoder()
    points = torch.zeros(2, 2, 3, 3)
    points[..., 0] = torch.arange(3.0)  # x
    points[..., 2] = 1.0  # every point real
    agent = torch.stack([torch.ones(road.AGENT_DIM), -torch.ones(road.AGENT_DIM)])  # [2, C]
    with torch.no_grad():
        assert torch.allclose(buggy(points[:1], agent[:1]), right(points[:1], agent[:1]))
        batched = buggy(points, agent)  # [2, 2, C]
        alone = right(points[1:, :1], agent[1:])  # sample 1's first polyline, its own agent
    assert not torch.allclose(batched[1, 0], alone[0, 0], atol=1e-3)


def test_mtr_polyline_passes_in_float64_too() -> None:
    encoder = _load("mtr_polyline").build_encoder()
    assert _failed(check_encoder, encoder, EncoderPropertyError, dtype=torch.float64) == set()


def test_attention_subgraph_lane_depends_on_the_longest_other_lane() -> None:
    """The bug lpim's `matches_unpadded` shows, in plain torch: a lane's embedding changes
    when another lane becomes longer than it (more merged rows, padded ones in its max-pool),
    and the fix's does not."""
    subgraph = _load("attention_subgraph")
    points = torch.randn(1, 2, 4, 2) * 10  # [B, M, N, D]
    short = torch.tensor([[[True, True, False, False], [True, True, False, False]]])
    longer = short.clone()
    longer[0, 1] = True  # lane 1 grows to 4 points; lane 0 is unchanged
    for factory, changes in (("build_encoder", True), ("build_fixed", False)):
        encoder = getattr(subgraph, factory)()
        with torch.no_grad():
            before, after = encoder(points, short)[0, 0], encoder(points, longer)[0, 0]
        assert (not torch.allclose(before, after)) == changes, factory


def test_attention_subgraph_asserts_non_empty_polylines() -> None:
    encoder = _load("attention_subgraph").build_fixed()
    point_mask = torch.tensor([[[True, False], [False, False]]])
    with pytest.raises(AssertionError, match="non-empty polylines"):
        encoder(torch.zeros(1, 2, 2, 2), point_mask)


def test_pointnet_valid_returns_a_tuple_checked_without_an_adapter() -> None:
    pointnet = _load("pointnet_valid")
    encoder = pointnet.build_fixed()
    point_mask = torch.tensor([[[True, True, False], [False, False, False]]])
    with torch.no_grad():
        embedding, valid = encoder(torch.randn(1, 2, 3, 2), point_mask)
    assert embedding.shape == (1, 2, 32) and valid.tolist() == [[True, False]]
    assert torch.equal(embedding[0, 1], torch.zeros(32))  # an empty polyline: zeros
    report = check_encoder(encoder, settings=FAST, dtype=torch.float32)  # no output=, no adapter
    assert report.passed


def test_pointnet_valid_nan_padding_names_the_weight_and_the_contract_flag() -> None:
    encoder = _load("pointnet_valid").build_encoder()
    with pytest.raises(EncoderPropertyError) as caught:
        check_encoder(
            encoder,
            settings=FAST,
            dtype=torch.float32,
            properties=["gradients_ignore_padding"],
        )
    message = str(caught.value)
    assert "mlp.0.weight" in message
    assert "garbage='finite'" in message


# (factory, other-inputs factory, properties that fail)
CONSUMER_VERDICTS = [
    ("build_fusion", "bev_queries", set()),
    ("build_map_fusion", "bev_map", set()),
    ("build_unmasked_fusion", "bev_queries", {"ignores_appended_lanes", "ignores_padded_lanes"}),
    ("build_unmasked_fusion", "bev_map", {"ignores_appended_lanes", "ignores_padded_lanes"}),
    ("build_nan_fusion", "bev_queries", {"finite"}),
    ("build_nan_fusion", "bev_map", {"finite"}),
]


@pytest.mark.parametrize(
    ("factory", "other_inputs", "failing"),
    CONSUMER_VERDICTS,
    ids=[f"{f}-{o}" for f, o, _ in CONSUMER_VERDICTS],
)
def test_fusion_verdict(factory: str, other_inputs: str, failing: set[str]) -> None:
    ld = _load("lanediffusion_prior")
    failed = _failed(
        check_lane_consumer,
        getattr(ld, factory)(),
        LaneConsumerPropertyError,
        other_inputs=getattr(ld, other_inputs)(),
        order_invariant=True,
        dtype=torch.float32,
    )
    assert failed == failing


def test_fusion_keeps_the_bev_map_layout_and_a_lane_less_sample_gets_norm_of_its_query() -> None:
    ld = _load("lanediffusion_prior")
    fusion = ld.build_fusion()
    bev = torch.randn(2, ld.EMBED_DIM, 3, 4)  # [B, C, H, W]
    lanes = torch.randn(2, 5, ld.EMBED_DIM)  # [B, M, C]
    lane_mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    with torch.no_grad():
        out = fusion(lanes, lane_mask, bev)
        queries = bev.flatten(2).transpose(1, 2)  # [B, H*W, C]
        expected_empty = fusion.norm(queries[1]).transpose(0, 1).reshape(ld.EMBED_DIM, 3, 4)
    assert out.shape == bev.shape
    torch.testing.assert_close(out[1], expected_empty)
    assert not torch.allclose(out[0], fusion.norm(queries[0]).transpose(0, 1).reshape_as(out[0]))


def _lpim_command() -> str:
    """The ``lpim`` console script of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("lpim")
    found = str(beside) if beside.exists() else shutil.which("lpim")
    if found is None:
        pytest.skip("no lpim console script installed beside this interpreter")
    return found


@pytest.mark.parametrize(
    ("options", "status"),
    [
        (["--layout", "right"], 0),  # every property, under the loader's contract
        (["--property", "matches_unpadded"], 1),  # the one that fails without it
    ],
)
def test_lpim_check_from_the_example_folder(
    options: list[str], status: int, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what the venv has
    reproducers = tmp_path / "reproducers"
    result = subprocess.run(
        [
            _lpim_command(),
            "check",
            "gru_lane:build_encoder",
            *options,
            "--dtype",
            "float32",
            "--reproducer-dir",
            str(reproducers),
        ],
        cwd=REALWORLD,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == status, result.stdout + result.stderr
    assert "gru_lane.GruLaneEncoder" in result.stdout
    if status:
        assert "matches_unpadded" in result.stdout
        assert (reproducers / "matches_unpadded_float32.py").exists()
