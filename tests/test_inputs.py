"""Inputs as they come (issue 21, item 2): an encoder's per-sample context (`other_inputs=`),
each lane alone reading its own sample's rows, and the point mask as a validity channel inside
`points`, either polarity, at any index."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lpim import LaneBatch
from lpim.cli import main
from lpim.errors import UsageValueError
from lpim.strategies import lane_batches, with_other_inputs
from lpim.testing import EncoderPropertyError, assert_matches_unpadded, check_encoder
from lpim.testing._encoder_properties import lane_alone

FAST = settings(max_examples=10, database=None, deadline=None, derandomize=True)


def agents(batch_size: int, dtype: torch.dtype, device: torch.device) -> st.SearchStrategy:
    """One agent embedding `[B, 4]` per sample, as a 1-tuple (passed after the mask)."""
    rows = st.lists(st.floats(-3, 3), min_size=4 * batch_size, max_size=4 * batch_size)
    return st.tuples(
        rows.map(lambda v: torch.tensor(v, dtype=dtype, device=device).reshape(batch_size, 4))
    )


def agents_by_keyword(
    batch_size: int, dtype: torch.dtype, device: torch.device
) -> st.SearchStrategy:
    return agents(batch_size, dtype, device).map(lambda found: {"agent": found[0]})


class Seeded(torch.nn.Module):
    """Lane embedding: masked mean of point features plus the sample's agent embedding."""

    in_dim = 2

    def __init__(self, pool_agents: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 4)
        self.pool_agents = pool_agents

    def forward(
        self, points: torch.Tensor, point_mask: torch.Tensor, agent: torch.Tensor
    ) -> torch.Tensor:
        keep = point_mask[..., None]
        h = torch.where(keep, self.linear(torch.where(keep, points, 0.0)), 0.0)  # [B, M, N, 4]
        mean = h.sum(2) / keep.sum(2).clamp(min=1)  # [B, M, 4]
        if self.pool_agents:  # BUG: every sample reads the batch's mean agent
            agent = agent.mean(0, keepdim=True).expand_as(agent)
        return mean + agent[:, None, :]


def test_lane_alone_reads_its_own_samples_rows() -> None:
    agent = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    batch = LaneBatch(torch.zeros(2, 2, 3, 2), torch.ones(2, 2, 3, dtype=torch.bool), (agent,))
    alone = lane_alone(batch, 1, 0)
    assert alone.shape == (1, 1, 3, 2)
    assert torch.equal(alone.args[0], agent[1:2])
    assert torch.equal(batch.samples([1, 0]).args[0], agent.flip(0))


def test_other_inputs_without_a_row_per_sample_are_refused() -> None:
    with pytest.raises(UsageValueError, match=r"one row per sample, \[B, \.\.\.\] = \[2"):
        LaneBatch(torch.zeros(2, 1, 1, 2), torch.ones(2, 1, 1, dtype=torch.bool), (torch.ones(3),))


@given(with_other_inputs(lane_batches(batch_size=(1, 3)), agents))
@settings(max_examples=10, database=None, deadline=None)
def test_drawn_context_has_a_row_per_sample(batch: LaneBatch) -> None:
    assert batch.args[0].shape == (batch.shape[0], 4)
    assert_matches_unpadded(Seeded().eval(), batch)


@pytest.mark.parametrize("inputs", [agents, agents_by_keyword])
def test_an_encoder_with_per_sample_context_passes(inputs: object) -> None:
    report = check_encoder(Seeded(), other_inputs=inputs, dtype=torch.float64, settings=FAST)
    assert report.passed, str(report)
    assert report.contract.endswith(
        f"the encoder given other inputs from {__name__}.{inputs.__name__}"
    )  # type: ignore[attr-defined]


def test_context_shared_across_samples_is_found_and_reproduced() -> None:
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(
            Seeded(pool_agents=True),
            other_inputs=agents,
            dtype=torch.float64,
            properties="matches_unpadded",
            settings=FAST,
        )
    failure = info.value
    assert failure.example.shape[0] >= 2  # two samples with different agents: shrunk to that
    assert "args=(Tensor[" in str(failure)
    assert "LaneBatch(points, point_mask, args, kwargs)" in failure.reproducer
    namespace: dict[str, object] = {}
    source = failure.reproducer.replace("encoder = ...", "encoder = Seeded(pool_agents=True)  #")
    with pytest.raises(EncoderPropertyError):
        exec(compile(source, "reproducer", "exec"), {"Seeded": Seeded, **namespace})


def test_the_command_takes_other_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "check",
            "tests.test_inputs:Seeded",
            "--other-inputs",
            "tests.test_inputs:agents",
            "--dtype",
            "float64",
            "--max-examples",
            "3",
        ]
    )
    assert code == 0, capsys.readouterr().out


class ValidityChannel(torch.nn.Module):
    """A lane embedding whose loader carries validity as a feature: `points [B, M, N, 3]`."""

    def __init__(self, index: int = -1, padded_is_one: bool = False, bug: bool = False) -> None:
        super().__init__()
        self.in_dim = 3  # two coordinates and the flag
        self.linear = torch.nn.Linear(2, 4)
        self.index, self.padded_is_one, self.bug = index, padded_is_one, bug

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        flag = points[..., self.index]
        coordinates = torch.cat(
            [points[..., : self.index % 3], points[..., self.index % 3 + 1 :]], dim=-1
        )
        real = (flag < 0.5) if self.padded_is_one else (flag > 0.5)
        if self.bug:
            real = torch.ones_like(real)  # BUG: the flag is never read
        keep = real[..., None]
        h = torch.where(keep, self.linear(torch.where(keep, coordinates, 0.0)), 0.0)
        return h.sum(2) / keep.sum(2).clamp(min=1)


@pytest.mark.parametrize(
    ("point_mask_as", "index", "padded_is_one"),
    [("valid_channel", -1, False), ("padded_channel:0", 0, True), ("valid_channel:1", 1, False)],
)
def test_a_validity_channel_in_either_polarity_needs_no_adapter(
    point_mask_as: str, index: int, padded_is_one: bool
) -> None:
    encoder = ValidityChannel(index, padded_is_one)
    report = check_encoder(encoder, point_mask_as=point_mask_as, dtype=torch.float64, settings=FAST)
    assert report.passed, str(report)


def test_the_wrong_polarity_of_a_channel_fails() -> None:
    with pytest.raises(EncoderPropertyError):
        check_encoder(
            ValidityChannel(padded_is_one=True),
            point_mask_as="valid_channel",
            dtype=torch.float64,
            properties="matches_unpadded",
            settings=FAST,
        )


def test_a_channel_that_is_never_read_fails_and_the_reproducer_rebuilds_it() -> None:
    with pytest.raises(EncoderPropertyError) as info:
        check_encoder(
            ValidityChannel(bug=True),
            point_mask_as="valid_channel",
            dtype=torch.float64,
            properties="ignores_padding",
            settings=FAST,
        )
    assert "point_mask_as='valid_channel'" in info.value.reproducer


@pytest.mark.parametrize(
    ("point_mask_as", "message"),
    [
        ("valid_channel:x", "valid_channel\\[:K\\]"),
        ("channel", "padded_channel\\[:K\\]"),
        ("valid_channel:5", "channel 5 is outside the encoder's 3 channels"),
    ],
)
def test_a_bad_channel_is_a_usage_error(point_mask_as: str, message: str) -> None:
    with pytest.raises(UsageValueError, match=message):
        check_encoder(ValidityChannel(), point_mask_as=point_mask_as, settings=FAST)


def test_a_channel_with_argument_names_is_refused() -> None:
    with pytest.raises(UsageValueError, match="takes one input"):
        check_encoder(ValidityChannel(), point_mask_as="valid_channel", argument_names=("p", "m"))
