"""Converters and the validator, each checked by driving the consumer it is for."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from lpim import masks
from lpim._errors import UsageError
from lpim.batch import LaneBatch
from lpim.masks import MaskConventionError


def point_mask_examples() -> list[torch.Tensor]:
    """Right, left and scattered layouts, with empty lanes and a full lane."""
    right = torch.tensor(
        [[[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], [[1, 0, 0, 0], [0] * 4, [1, 1, 1, 0]]]
    )
    left = right.flip(-1)
    scattered = torch.tensor(
        [[[1, 0, 1, 0], [0, 1, 1, 0], [0] * 4], [[0, 0, 0, 1], [1, 0, 0, 1], [0] * 4]]
    )
    return [right.bool(), left.bool(), scattered.bool()]


EXAMPLES = point_mask_examples()


@st.composite
def point_masks(draw: st.DrawFn) -> torch.Tensor:
    b = draw(st.integers(1, 3))
    m = draw(st.integers(1, 4))
    n = draw(st.integers(1, 6))
    bits = draw(st.lists(st.booleans(), min_size=b * m * n, max_size=b * m * n))
    return torch.tensor(bits, dtype=torch.bool).reshape(b, m, n)


def mha(num_heads: int = 2, embed_dim: int = 8) -> torch.nn.MultiheadAttention:
    torch.manual_seed(0)
    return torch.nn.MultiheadAttention(
        embed_dim, num_heads, batch_first=True, dtype=torch.float64
    ).eval()


def tokens(point_mask: torch.Tensor, query_tokens: int, embed_dim: int = 8) -> torch.Tensor:
    b, m, n = point_mask.shape
    g = torch.Generator().manual_seed(1)
    return torch.randn(b * m, query_tokens + n, embed_dim, generator=g, dtype=torch.float64)


# -- driving the real consumers --------------------------------------------------------------------


@pytest.mark.parametrize("point_mask", EXAMPLES)
def test_3d_mask_in_mha_equals_key_padding_mask(point_mask: torch.Tensor) -> None:
    attention, x = mha(), tokens(point_mask, 1)
    kpm = masks.to_key_padding_mask(point_mask, query_tokens=1)
    attn_mask = masks.to_attn_mask_3d(point_mask, num_heads=2, query_tokens=1)
    assert kpm.shape == (6, 5) and attn_mask.shape == (12, 5, 5)
    with torch.no_grad():
        by_kpm, _ = attention(x, x, x, key_padding_mask=kpm)
        by_3d, _ = attention(x, x, x, attn_mask=attn_mask)
    torch.testing.assert_close(by_3d, by_kpm, rtol=0, atol=1e-14)


@pytest.mark.parametrize("point_mask", EXAMPLES)
def test_repeat_instead_of_repeat_interleave_runs_and_is_wrong(point_mask: torch.Tensor) -> None:
    attention, x = mha(), tokens(point_mask, 1)
    kpm = masks.to_key_padding_mask(point_mask, query_tokens=1)
    per_lane = kpm[:, None, :].expand(-1, 5, -1)  # [B*M, L, S]
    head_major = per_lane.repeat(2, 1, 1)  # the tempting fix
    with torch.no_grad():
        right, _ = attention(x, x, x, key_padding_mask=kpm)
        wrong, _ = attention(x, x, x, attn_mask=head_major)  # no error
    assert (right - wrong).abs().max() > 1e-3
    with pytest.raises(MaskConventionError, match="head-major"):
        masks.validate(
            head_major, "attn_mask_3d", point_mask=point_mask, num_heads=2, query_tokens=1
        )


@pytest.mark.parametrize("point_mask", EXAMPLES)
def test_sdpa_masks_in_sdpa_equal_mha(point_mask: torch.Tensor) -> None:
    attention, x = mha(num_heads=2), tokens(point_mask, 1)
    kpm = masks.to_key_padding_mask(point_mask, query_tokens=1)
    with torch.no_grad():
        expected, _ = attention(x, x, x, key_padding_mask=kpm)
        # the same computation by hand with SDPA, from MHA's own weights
        q, k, v = F.linear(x, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
        heads = [t.unflatten(-1, (2, 4)).transpose(1, 2) for t in (q, k, v)]  # [B*M, H, S, d]
        for attn_mask in (
            masks.to_sdpa_mask(point_mask, query_tokens=1),
            masks.to_additive_mask(point_mask, torch.float64, query_tokens=1),
        ):
            out = F.scaled_dot_product_attention(*heads, attn_mask=attn_mask)  # [B*M, H, S, d]
            out = attention.out_proj(out.transpose(1, 2).flatten(-2))
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)


def test_sdpa_polarity_is_the_opposite_of_mha() -> None:
    point_mask = EXAMPLES[0]
    assert torch.equal(
        masks.to_sdpa_mask(point_mask)[:, 0, 0], ~masks.to_key_padding_mask(point_mask)
    )


@pytest.mark.parametrize("point_mask", EXAMPLES)
def test_pack_unpack_and_cu_seqlens_agree(point_mask: torch.Tensor) -> None:
    points = torch.randn(*point_mask.shape, 2, dtype=torch.float64)
    points[~point_mask] = float("nan")  # padding never read
    packed = masks.pack(points, point_mask)
    assert packed.shape == (int(point_mask.sum()), 2) and bool(packed.isfinite().all())
    back = masks.unpack(packed, point_mask, fill=0.0)
    assert torch.equal(back[point_mask], points[point_mask]) and bool(
        (back[~point_mask] == 0).all()
    )
    cu_seqlens, max_seqlen = masks.to_cu_seqlens(point_mask)
    assert cu_seqlens.dtype == torch.int32 and max_seqlen == int(point_mask.sum(-1).max())
    lanes = LaneBatch(torch.where(point_mask[..., None], points, 0), point_mask).lanes()
    flat = [lane for sample in lanes for lane in sample]
    for i, lane in enumerate(flat):
        assert torch.equal(packed[cu_seqlens[i] : cu_seqlens[i + 1]], lane)
    nested = masks.to_nested(points, point_mask)
    assert [t.shape[0] for t in nested.unbind()] == [lane.shape[0] for lane in flat]
    assert torch.equal(nested.values(), packed)


def test_cu_seqlens_with_query_tokens_counts_them() -> None:
    cu_seqlens, max_seqlen = masks.to_cu_seqlens(EXAMPLES[0], query_tokens=1)
    assert cu_seqlens.tolist() == [0, 3, 8, 9, 11, 12, 16] and max_seqlen == 5


def test_attention_mask_is_int_one_is_valid() -> None:
    attention_mask = masks.to_attention_mask(EXAMPLES[0], query_tokens=1)
    assert attention_mask.dtype == torch.int64
    assert attention_mask[0].tolist() == [1, 1, 1, 0, 0]


def test_lengths_right_padding_only() -> None:
    assert masks.to_lengths(EXAMPLES[0]).tolist() == [2, 4, 0, 1, 0, 3]
    for layout in EXAMPLES[1:]:
        with pytest.raises(MaskConventionError, match="right padding") as info:
            masks.to_lengths(layout)
        assert "to_cu_seqlens" in str(info.value)


# -- round trips -----------------------------------------------------------------------------------


@given(point_masks(), st.integers(0, 2), st.integers(1, 3))
def test_every_converter_round_trips(point_mask: torch.Tensor, q: int, heads: int) -> None:
    m = point_mask.shape[1]
    assert torch.equal(
        masks.from_key_padding_mask(masks.to_key_padding_mask(point_mask, q), m, q), point_mask
    )
    attn_mask = masks.to_attn_mask_3d(point_mask, heads, q)
    assert torch.equal(masks.from_attn_mask_3d(attn_mask, heads, m, q), point_mask)
    assert torch.equal(masks.from_sdpa_mask(masks.to_sdpa_mask(point_mask, q), m, q), point_mask)
    additive = masks.to_additive_mask(point_mask, torch.float16, q)
    assert torch.equal(masks.from_additive_mask(additive, m, q), point_mask)
    assert torch.equal(
        masks.from_attention_mask(masks.to_attention_mask(point_mask, q), m, q), point_mask
    )
    # lengths and offsets carry counts, not layout: they round-trip to the right-padded mask
    right = torch.arange(point_mask.shape[2]) < point_mask.sum(-1, keepdim=True)
    cu_seqlens, _ = masks.to_cu_seqlens(point_mask, q)
    assert torch.equal(masks.from_cu_seqlens(cu_seqlens, m, point_mask.shape[2], q), right)
    assert torch.equal(
        masks.from_lengths(masks.to_lengths(right, q), m, point_mask.shape[2], q), right
    )
    for convention, mask in [
        ("key_padding_mask", masks.to_key_padding_mask(point_mask, q)),
        ("attn_mask_3d", attn_mask),
        ("sdpa", masks.to_sdpa_mask(point_mask, q)),
        ("additive", additive),
        ("attention_mask", masks.to_attention_mask(point_mask, q)),
        ("cu_seqlens", cu_seqlens),
    ]:
        masks.validate(mask, convention, point_mask=point_mask, num_heads=heads, query_tokens=q)
        assert masks.diagnose(
            mask, point_mask, num_heads=heads, query_tokens=q, intended=convention
        ).ok


def test_the_registry_names_functions_that_exist_and_validate_checks_what_it_names() -> None:
    """The registry names its converters (it sits below them): each name is a function of
    `lpim.masks` taking the arguments named, and `validate` has a check for each convention
    but lpim's own `point_mask` and the mask-less `nested`."""
    import inspect

    from lpim.masks._validate import CHECKS

    for c in masks.CONVENTIONS.values():
        for name, args in ((c.build, c.build_args), (c.read, c.read_args)):
            if name is not None:
                parameters = inspect.signature(getattr(masks, name)).parameters
                assert len(args) <= len(parameters), (c.name, name, args)
    assert set(CHECKS) == set(masks.CONVENTIONS) - {"point_mask", "nested"}


def test_from_attn_mask_3d_refuses_disagreeing_heads() -> None:
    attn_mask = masks.to_attn_mask_3d(EXAMPLES[0], 2, 1).clone()
    attn_mask[1, 0, 1] = ~attn_mask[1, 0, 1]
    with pytest.raises(MaskConventionError, match="heads or query rows"):
        masks.from_attn_mask_3d(attn_mask, 2, 3, 1)


def test_from_key_padding_mask_refuses_a_masked_query_column() -> None:
    kpm = masks.to_key_padding_mask(EXAMPLES[0], 1)
    kpm[:, 0] = True
    with pytest.raises(MaskConventionError, match="query column"):
        masks.from_key_padding_mask(kpm, 3, 1)


# -- the validator ---------------------------------------------------------------------------------


def test_validator_rejects_the_seed_mask_at_seed_scale() -> None:
    """8 samples x 200 lanes x 20 points, 8 heads, 1 query token: torch's own error, named."""
    point_mask = torch.zeros(8, 200, 20, dtype=torch.bool)
    point_mask[:, :10, :15] = True
    per_lane = masks.to_key_padding_mask(point_mask, query_tokens=1)[:, None, :].expand(-1, 21, -1)
    assert per_lane.shape == (1600, 21, 21)
    attention = torch.nn.MultiheadAttention(16, 8, batch_first=True)
    x = torch.randn(1600, 21, 16)
    with pytest.raises(RuntimeError, match=r"should be \(12800, 21, 21\)"):
        attention(x, x, x, attn_mask=per_lane)
    with pytest.raises(MaskConventionError) as info:
        masks.validate(per_lane, "attn_mask_3d", point_mask=point_mask, num_heads=8, query_tokens=1)
    message = str(info.value)
    assert "B*M*num_heads = 8*200*8 = 12800 rows" in message
    assert "got:      shape (1600, 21, 21)" in message
    assert "to_key_padding_mask(point_mask, query_tokens=1)" in message
    right = masks.to_attn_mask_3d(point_mask, num_heads=8, query_tokens=1)
    assert right.shape == (12800, 21, 21)
    masks.validate(right, "attn_mask_3d", point_mask=point_mask, num_heads=8, query_tokens=1)
    with torch.no_grad():
        by_3d, _ = attention(x, x, x, attn_mask=right, need_weights=False)
        by_kpm, _ = attention(
            x, x, x, key_padding_mask=masks.to_key_padding_mask(point_mask, 1), need_weights=False
        )
    torch.testing.assert_close(by_3d, by_kpm)


@pytest.mark.parametrize(
    ("mask", "convention", "match"),
    [
        (~masks.to_key_padding_mask(EXAMPLES[0], 1), "key_padding_mask", "inverted polarity"),
        (masks.to_key_padding_mask(EXAMPLES[0], 1).float(), "key_padding_mask", "ADDED"),
        (masks.to_key_padding_mask(EXAMPLES[0], 1).int(), "key_padding_mask", "wrong dtype"),
        (masks.to_key_padding_mask(EXAMPLES[0], 0), "key_padding_mask", "wrong shape"),
        (~masks.to_sdpa_mask(EXAMPLES[0], 1), "sdpa", "inverted polarity"),
        (masks.to_sdpa_mask(EXAMPLES[0], 1)[..., 0], "sdpa", "wrong rank"),
        (masks.to_sdpa_mask(EXAMPLES[0], 1).float(), "additive", "0/1 float mask"),
        (
            masks.to_additive_mask(EXAMPLES[0], query_tokens=1).clamp(min=-1e4),
            "additive",
            "finite fill",
        ),
        (masks.to_sdpa_mask(EXAMPLES[0], 1), "additive", "floating"),
        (masks.to_attention_mask(EXAMPLES[0], 1) * 2, "attention_mask", "0 .pad. and 1"),
        (masks.to_lengths(EXAMPLES[0], 1) + 1, "lengths", "disagree"),
        (masks.to_cu_seqlens(EXAMPLES[0], 1)[0].long(), "cu_seqlens", "wrong dtype"),
        (masks.to_cu_seqlens(EXAMPLES[0], 1)[0].flip(0), "cu_seqlens", "start at 0"),
        (masks.to_attn_mask_3d(EXAMPLES[0], 3, 1), "attn_mask_3d", "shape"),
    ],
)
def test_validator_names_each_mistake(mask: torch.Tensor, convention: str, match: str) -> None:
    with pytest.raises(MaskConventionError, match=match) as info:
        masks.validate(mask, convention, point_mask=EXAMPLES[0], num_heads=2, query_tokens=1)
    message = str(info.value)
    assert f"convention assumed: {convention}" in message
    assert "expected:" in message and "got:" in message
    assert info.value.convention == convention


def test_validator_checks_device_without_moving_data() -> None:
    mask = masks.to_key_padding_mask(EXAMPLES[0], 1).to("meta")
    with pytest.raises(MaskConventionError, match="different devices"):
        masks.validate(mask, "key_padding_mask", point_mask=EXAMPLES[0], query_tokens=1)


def test_validator_without_point_mask_checks_what_it_can() -> None:
    masks.validate(masks.to_key_padding_mask(EXAMPLES[0], 1), "key_padding_mask", query_tokens=1)
    kpm = masks.to_key_padding_mask(EXAMPLES[0], 1)
    kpm[:, 0] = True
    with pytest.raises(MaskConventionError, match="query column is masked"):
        masks.validate(kpm, "key_padding_mask", query_tokens=1)
    with pytest.raises(ValueError, match="unknown convention"):
        masks.validate(kpm, "padding")


def test_converters_refuse_a_non_bool_point_mask() -> None:
    with pytest.raises(MaskConventionError, match="point_mask must be") as info:
        masks.to_key_padding_mask(EXAMPLES[0].float())
    assert "point_mask.bool()" in str(info.value)
    with pytest.raises(MaskConventionError, match=r"\[B, M, N\]"):
        masks.to_sdpa_mask(EXAMPLES[0][0])


def _same_rule(converting: BaseException, validating: BaseException, door: str) -> list[str]:
    """One rule, one wording: the converter's error is the validator's, prefixed with the
    converter's name, with the same `expected:` and `got:` lines (returned)."""
    lines = [str(converting).splitlines(), str(validating).splitlines()]
    assert lines[0][0] == f"{door}: " + lines[1][0]
    rules = [
        [line for line in found if line.lstrip().startswith(("expected:", "got:"))]
        for found in lines
    ]
    assert rules[0] == rules[1] and len(rules[0]) == 2, rules
    return rules[0]


@pytest.mark.parametrize(
    "attention_mask",
    [
        masks.to_attention_mask(EXAMPLES[0], 1) * 2,  # 0/2
        masks.to_attention_mask(EXAMPLES[0], 1).float(),  # floating
    ],
    ids=["two", "float"],
)
def test_the_converter_and_the_validator_state_the_attention_mask_rule_alike(
    attention_mask: torch.Tensor,
) -> None:
    """One rule, one wording: `from_attention_mask` and `validate` refuse the same masks with
    the same expected/got lines."""
    with pytest.raises(MaskConventionError) as converting:
        masks.from_attention_mask(attention_mask, num_lanes=EXAMPLES[0].shape[1], query_tokens=1)
    with pytest.raises(MaskConventionError) as validating:
        masks.validate(attention_mask, "attention_mask", query_tokens=1)
    _same_rule(converting.value, validating.value, "from_attention_mask")


def test_the_converter_and_the_validator_read_a_4d_mask_alike() -> None:
    """One reading of a `(B*M, H, L, S)` mask: heads that disagree are refused in the same words
    by `from_sdpa_mask` and `validate`, naming the lane."""
    sdpa_mask = masks.to_sdpa_mask(EXAMPLES[0], 1).expand(-1, 2, -1, -1).clone()
    sdpa_mask[1, 1, :, -1] = ~sdpa_mask[1, 1, :, -1]  # lane 1, head 1 blocks another key
    m = EXAMPLES[0].shape[1]
    with pytest.raises(MaskConventionError) as converting:
        masks.from_sdpa_mask(sdpa_mask, num_lanes=m, query_tokens=1)
    with pytest.raises(MaskConventionError) as validating:
        masks.validate(sdpa_mask, "sdpa", point_mask=EXAMPLES[0], num_heads=2, query_tokens=1)
    rules = _same_rule(converting.value, validating.value, "from_sdpa_mask")
    assert "lane 1 differs" in rules[1]


@pytest.mark.parametrize(
    "offsets", [[0, 5, 3], [1, 2, 4], []], ids=["decreasing", "not-from-zero", "empty"]
)
def test_the_converter_and_the_validator_state_the_offsets_rule_alike(offsets: list[int]) -> None:
    """One owner for "cu_seqlens start at 0 and never decrease": `from_cu_seqlens` and
    `validate` refuse the same offsets with the same lines."""
    cu_seqlens = torch.tensor(offsets, dtype=torch.int32)
    with pytest.raises(MaskConventionError) as converting:
        masks.from_cu_seqlens(cu_seqlens, num_lanes=1, num_points=8)
    with pytest.raises(MaskConventionError) as validating:
        masks.validate(cu_seqlens, "cu_seqlens")
    _same_rule(converting.value, validating.value, "from_cu_seqlens")


@pytest.mark.parametrize(
    "call",
    [
        lambda cu: masks.from_cu_seqlens(cu, num_lanes=1, num_points=-1),
        lambda cu: masks.from_cu_seqlens(cu, num_lanes=0, num_points=4),
        lambda cu: masks.from_cu_seqlens(cu, num_lanes=1, num_points=4, query_tokens=-1),
        lambda cu: masks.from_cu_seqlens(cu, num_lanes=1, num_points=1),  # a span of 3 > N
        lambda cu: masks.from_cu_seqlens(cu, num_lanes=1, num_points=4, query_tokens=3),
        lambda cu: masks.from_cu_seqlens(cu[:1], num_lanes=1, num_points=0, query_tokens=10**13),
    ],
    ids=["num_points", "num_lanes", "query_tokens", "span>N", "span<q", "too-large"],
)
def test_from_cu_seqlens_errors_name_the_door_called(call: Any) -> None:
    """`from_cu_seqlens` reads offsets through the lengths engine, but its errors name the
    function the user called and the convention they passed, never `from_lengths`."""
    cu_seqlens = torch.tensor([0, 3, 5], dtype=torch.int32)
    with pytest.raises(UsageError) as info:
        call(cu_seqlens)
    message = str(info.value)
    assert "from_cu_seqlens" in message and "from_lengths" not in message, message
    assert "convention assumed: lengths" not in message, message
