"""LaneBatch: construction from lanes in every layout, the way back, validation, repr."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lpim import LaneBatch, masks
from lpim.batch import LAYOUTS

LANES = [
    [torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.zeros(0, 2), torch.tensor([[4.0, 5.0]])],
    [torch.tensor([[6.0, 7.0], [8.0, 9.0], [1.0, 1.0]])],
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_from_lanes_places_points_by_layout_and_round_trips(layout: str) -> None:
    batch = LaneBatch.from_lanes(LANES, num_lanes=4, num_points=5, layout=layout)  # type: ignore[arg-type]
    assert batch.shape == (2, 4, 5, 2)
    assert batch.lengths.tolist() == [[2, 0, 1, 0], [3, 0, 0, 0]]
    assert batch.lane_mask.tolist() == [[True, False, True, False], [True, False, False, False]]
    assert batch.layout == layout
    back = batch.lanes()
    for sample, original in zip(back, LANES, strict=True):
        for lane, expected in zip(sample, original, strict=False):
            assert torch.equal(lane, expected)
    assert [len(s) for s in batch.lanes(drop_empty=True)] == [2, 1]


def test_scattered_layout_interleaves_padding() -> None:
    batch = LaneBatch.from_lanes([[torch.ones(2, 2)]], num_points=4, layout="scattered")
    assert batch.point_mask[0, 0].tolist() == [True, False, True, False]


@given(
    st.lists(st.lists(st.integers(0, 5), max_size=4), min_size=1, max_size=3),
    st.sampled_from(LAYOUTS),
)
def test_from_lanes_matches_the_converters(counts: list[list[int]], layout: str) -> None:
    lanes = [[torch.randn(n, 3) for n in sample] for sample in counts]
    batch = LaneBatch.from_lanes(lanes, num_points=5, layout=layout, point_dim=3)  # type: ignore[arg-type]
    packed = masks.pack(batch.points, batch.point_mask)
    flat = [lane for sample in lanes for lane in sample]
    assert torch.equal(packed, torch.cat(flat) if flat else torch.zeros(0, 3))
    assert batch.lengths.sum() == sum(map(sum, counts))


def test_to_changes_dtype_of_points_only() -> None:
    batch = LaneBatch.from_lanes(LANES).to(dtype=torch.float64)
    assert batch.points.dtype == torch.float64 and batch.point_mask.dtype == torch.bool


def test_repr_is_readable() -> None:
    batch = LaneBatch.from_lanes(LANES, num_lanes=3, num_points=4, layout="left")
    assert repr(batch) == (
        "LaneBatch(B=2, M=3, N=4, D=2, float32, cpu, layout=left, real lanes 3/6, real points 6/24)"
    )


def test_padded_slots_may_hold_anything_real_ones_may_not() -> None:
    batch = LaneBatch.from_lanes(LANES, num_points=4, fill=float("nan"))
    assert batch.points.isnan().any()
    points = batch.points.clone()
    points[1, 0, 2, 1] = float("inf")
    with pytest.raises(
        ValueError,
        match=r"1 real point\(s\) hold NaN or inf, the first at \[b, m, n\] = \[1, 0, 2\]",
    ):
        LaneBatch(points, batch.point_mask)


@pytest.mark.parametrize(
    ("points", "point_mask", "error", "match"),
    [
        (
            torch.zeros(2, 3, 4),
            torch.ones(2, 3, 4, dtype=torch.bool),
            ValueError,
            r"\[B, M, N, D\]",
        ),
        (
            torch.zeros(2, 3, 4, 2, dtype=torch.long),
            torch.ones(2, 3, 4, dtype=torch.bool),
            TypeError,
            "floating",
        ),
        (torch.zeros(2, 3, 4, 2), torch.ones(2, 3, 4), TypeError, "torch.bool with True = real"),
        (
            torch.zeros(2, 3, 4, 2),
            torch.ones(2, 3, 5, dtype=torch.bool),
            ValueError,
            r"\(2, 3, 4\)",
        ),
        (
            torch.zeros(2, 3, 4, 2),
            torch.ones(2, 3, 4, dtype=torch.bool, device="meta"),
            ValueError,
            "one device",
        ),
    ],
)
def test_validation_names_expected_and_got(
    points: torch.Tensor, point_mask: torch.Tensor, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        LaneBatch(points, point_mask)


def test_from_lanes_never_drops_lanes_silently() -> None:
    with pytest.raises(ValueError, match="a sample has 3 lanes but num_lanes = 2"):
        LaneBatch.from_lanes(LANES, num_lanes=2)
    with pytest.raises(ValueError, match="a lane has 3 points but num_points = 2"):
        LaneBatch.from_lanes(LANES, num_points=2)
    with pytest.raises(ValueError, match="layout must be one of"):
        LaneBatch.from_lanes(LANES, layout="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="D = 2 coordinates; lane 1 has 3"):
        LaneBatch.from_lanes([[torch.zeros(1, 2), torch.zeros(1, 3)]])


def test_empty_batches() -> None:
    batch = LaneBatch.from_lanes([[], []], num_lanes=2, num_points=3)
    assert batch.shape == (2, 2, 3, 2) and not batch.point_mask.any()
    assert batch.layout == "right"


def test_a_non_bool_point_mask_has_one_wording_everywhere() -> None:
    """LaneBatch, the converters and the vendorable encoder (which spells it itself) agree."""
    from lpim import PriorEncoder
    from lpim._validation import point_mask_dtype_message

    points, point_mask = torch.zeros(1, 2, 3, 2), torch.ones(1, 2, 3)
    expected = point_mask_dtype_message(point_mask.dtype)
    with pytest.raises(TypeError) as batch_error:
        LaneBatch(points, point_mask)
    with pytest.raises(TypeError) as encoder_error:
        PriorEncoder(in_dim=2, d_model=8, nhead=2, num_layers=1)(points, point_mask)
    with pytest.raises(masks.MaskConventionError) as converter_error:
        masks.to_key_padding_mask(point_mask)
    assert str(batch_error.value) == expected
    assert expected in str(encoder_error.value)
    assert f": {expected}" in str(converter_error.value)
