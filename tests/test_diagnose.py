"""`diagnose`: every correct convention is named OK, every known mistake is named, every fix works.

Masks are built the way a user writes them (``~valid``, ``per_lane.repeat(H, 1, 1)``,
``masked_fill(-1e9)``, ``key_padding_mask.float()``, ...), not only by lpim's converters. For every
diagnosis with a convention, ``.fix`` is evaluated and the mask it builds must be diagnosed OK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import lpim
from lpim import masks
from lpim.masks import MISTAKES, Diagnosis, MaskConventionError, diagnose

Tensor = torch.Tensor


def layouts() -> dict[str, Tensor]:
    """Right, left and scattered padding, ``[B=2, M=3, N=4]``, with empty lanes and a full lane."""
    right = torch.tensor(
        [[[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], [[1, 0, 0, 0], [0] * 4, [1, 1, 1, 0]]]
    ).bool()
    scattered = torch.tensor(
        [[[1, 0, 1, 0], [0, 1, 1, 0], [0] * 4], [[0, 0, 0, 1], [1, 0, 0, 1], [0] * 4]]
    ).bool()
    return {"right": right, "left": right.flip(-1), "scattered": scattered}


LAYOUTS = layouts()
RIGHT = LAYOUTS["right"]
H = 2  # heads used by the hand-built 3D masks below


# -- helpers ------------------------------------------------------------------------------------


def valid(point_mask: Tensor) -> Tensor:
    """What a user flattens first: ``(B*M, N)``, True = real point."""
    b, m, n = point_mask.shape
    return point_mask.reshape(b * m, n)


def column(point_mask: Tensor, value: bool) -> Tensor:
    """One ``(B*M, 1)`` bool column, as a user builds the query token's column."""
    b, m, _ = point_mask.shape
    return torch.full((b * m, 1), value, dtype=torch.bool)


def kpm_by_hand(point_mask: Tensor, q: int) -> Tensor:
    """``cat([query never masked], ~valid)``: the LPIM reimplementation's key_padding_mask."""
    return torch.cat([column(point_mask, False).expand(-1, q), ~valid(point_mask)], dim=1)


def per_lane_3d(blocked: Tensor) -> Tensor:
    """``(B*M, S)`` -> ``(B*M, L=S, S)``: every query row of a lane blocks the same keys."""
    return blocked[:, None, :].expand(-1, blocked.shape[1], -1)


def right_padded(point_mask: Tensor) -> Tensor:
    """The right-padded mask with the same counts: what lengths and offsets describe."""
    return torch.arange(point_mask.shape[2]) < point_mask.sum(-1, keepdim=True)


def evaluate_fix(diagnosis: Diagnosis, point_mask: Tensor, heads: int | None = None) -> Any:
    """Run ``diagnosis.fix`` as the user would paste it, with the names it refers to bound."""
    namespace: dict[str, Any] = {
        "lpim": lpim,
        "point_mask": point_mask,
        "dtype": torch.float32,
        "points": torch.randn(*point_mask.shape, 2),
    }
    if "query_tokens=Q" in diagnosis.fix:
        # the query tokens were unknowable (not given, and nothing recognised in the mask): the
        # advice leaves Q for the user to fill in; the cases below built their masks with 0
        namespace["Q"] = 0
    if "num_heads=H" in diagnosis.fix:
        # the head count was unknowable from the mask (a (B*M, L, S) mask, no num_heads given):
        # the advice leaves H for the user to fill in
        assert heads is not None, diagnosis.fix
        namespace["H"] = heads
    return eval(diagnosis.fix, namespace)


def assert_fix_builds_an_ok_mask(
    diagnosis: Diagnosis,
    point_mask: Tensor,
    q: int,
    num_heads: int | None,
    heads: int | None = None,
) -> None:
    """The ``.fix`` of ``diagnosis`` builds a mask that ``diagnose`` reports OK."""
    assert diagnosis.fix.startswith("lpim.masks."), diagnosis.fix
    built = evaluate_fix(diagnosis, point_mask, heads)
    if isinstance(built, tuple):  # to_cu_seqlens returns (cu_seqlens, max_seqlen)
        cu_seqlens, max_seqlen = built
        assert max_seqlen == int(masks.keep_tokens(point_mask, q).sum(1).max())
        built = cu_seqlens
    again = diagnose(built, point_mask, num_heads=num_heads, query_tokens=q)
    assert again.ok, (diagnosis.fix, again.advice)
    expected = diagnosis.convention
    if expected == "lengths" and not torch.equal(point_mask, right_padded(point_mask)):
        expected = "cu_seqlens"  # lengths cannot describe left or scattered padding: offsets can
    assert again.convention == expected, (diagnosis.fix, again.advice)


def assert_diagnosis_is_consistent(d: Diagnosis) -> None:
    assert str(d) == d.advice
    assert d.ok == (d.mistake is None and d.convention is not None)
    assert d.mistake is None or d.mistake in MISTAKES
    if d.mistake is None:
        assert d.advice.startswith("OK"), d.advice
    else:
        assert d.advice.startswith(f"{d.mistake}: "), d.advice
        assert d.fix in d.advice


# -- every correct convention -------------------------------------------------------------------

Builder = Callable[[Tensor, int], Tensor]

CORRECT: list[tuple[str, str, Builder, int | None]] = [
    # (id, convention, build(point_mask, q), num_heads passed to diagnose)
    ("kpm", "key_padding_mask", masks.to_key_padding_mask, None),
    ("kpm-by-hand", "key_padding_mask", kpm_by_hand, None),
    (
        "3d-heads-given",
        "attn_mask_3d",
        lambda pm, q: masks.to_attn_mask_3d(pm, num_heads=3, query_tokens=q),
        3,
    ),
    (
        "3d-heads-inferred",
        "attn_mask_3d",
        lambda pm, q: masks.to_attn_mask_3d(pm, num_heads=3, query_tokens=q),
        None,
    ),
    (
        "3d-repeat_interleave-by-hand",
        "attn_mask_3d",
        lambda pm, q: per_lane_3d(kpm_by_hand(pm, q)).repeat_interleave(H, 0),
        None,
    ),
    (
        "3d-one-head",
        "attn_mask_3d",
        lambda pm, q: masks.to_attn_mask_3d(pm, num_heads=1, query_tokens=q),
        1,
    ),
    (
        "3d-float-0-inf",
        "attn_mask_3d",
        lambda pm, q: torch.zeros(masks.to_attn_mask_3d(pm, H, q).shape).masked_fill(
            masks.to_attn_mask_3d(pm, H, q), float("-inf")
        ),
        H,
    ),
    ("additive-f32", "additive", lambda pm, q: masks.to_additive_mask(pm, torch.float32, q), None),
    ("additive-f16", "additive", lambda pm, q: masks.to_additive_mask(pm, torch.float16, q), None),
    ("additive-bf16", "additive", lambda pm, q: masks.to_additive_mask(pm, torch.bfloat16, q), 4),
    ("additive-f64", "additive", lambda pm, q: masks.to_additive_mask(pm, torch.float64, q), None),
    (
        "additive-2d-by-hand",
        "additive",
        lambda pm, q: torch.zeros(kpm_by_hand(pm, q).shape).masked_fill(
            kpm_by_hand(pm, q), float("-inf")
        ),
        None,
    ),
    (
        "additive-full-heads-by-hand",
        "additive",
        lambda pm, q: masks.to_additive_mask(pm, torch.float32, q).expand(-1, 4, q + 4, -1),
        4,
    ),
    ("sdpa", "sdpa", masks.to_sdpa_mask, None),
    ("sdpa-by-hand", "sdpa", lambda pm, q: (~kpm_by_hand(pm, q))[:, None, None, :], None),
    ("attention_mask-int64", "attention_mask", masks.to_attention_mask, None),
    (
        "attention_mask-int32",
        "attention_mask",
        lambda pm, q: masks.to_attention_mask(pm, q).int(),
        None,
    ),
    ("cu_seqlens-int32", "cu_seqlens", lambda pm, q: masks.to_cu_seqlens(pm, q)[0], None),
    ("point_mask", "point_mask", lambda pm, q: pm.clone(), None),
]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("q", [0, 1])
@pytest.mark.parametrize(
    ("convention", "build", "num_heads"),
    [pytest.param(c, b, h, id=i) for i, c, b, h in CORRECT],
)
def test_every_correct_convention_is_named_ok(
    layout: str, q: int, convention: str, build: Builder, num_heads: int | None
) -> None:
    point_mask = LAYOUTS[layout]
    d = diagnose(build(point_mask, q), point_mask, num_heads=num_heads, query_tokens=q)
    assert_diagnosis_is_consistent(d)
    assert d.ok and d.mistake is None, d.advice
    assert d.convention == convention, d.advice
    assert d.advice.startswith(f"OK: a correct {convention}")
    assert "flash-attn wants int32" not in d.advice
    if convention != "point_mask":
        assert_fix_builds_an_ok_mask(d, point_mask, q, num_heads)
    # naming the convention it is changes nothing
    assert diagnose(
        build(point_mask, q), point_mask, num_heads=num_heads, query_tokens=q, intended=convention
    ).ok


@pytest.mark.parametrize("q", [0, 1, 2])
def test_lengths_of_right_padding_are_ok(q: int) -> None:
    d = diagnose(masks.to_lengths(RIGHT, q), RIGHT, query_tokens=q)
    assert_diagnosis_is_consistent(d)
    assert d.ok and d.convention == "lengths"
    assert d.fix == f"lpim.masks.to_lengths(point_mask, query_tokens={q})"
    assert_fix_builds_an_ok_mask(d, RIGHT, q, None)
    by_hand = RIGHT.sum(-1).flatten() + q  # what a user writes
    assert diagnose(by_hand, RIGHT, query_tokens=q).ok


def test_cu_seqlens_int64_is_ok_with_a_note() -> None:
    cu_seqlens, _ = masks.to_cu_seqlens(RIGHT, 1)
    d = diagnose(cu_seqlens.long(), RIGHT, query_tokens=1)
    assert d.ok and d.convention == "cu_seqlens"
    assert "flash-attn wants int32" in d.advice


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_cu_seqlens_by_hand_is_ok_for_every_layout(layout: str) -> None:
    point_mask = LAYOUTS[layout]
    lengths = point_mask.sum(-1).flatten()
    cu_seqlens = torch.cat([torch.zeros(1, dtype=torch.int32), lengths.cumsum(0).int()])
    d = diagnose(cu_seqlens, point_mask)
    assert d.ok and d.convention == "cu_seqlens"


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("q", [0, 1])
def test_bool_attention_mask_is_ok_and_warns_it_is_not_a_key_padding_mask(
    layout: str, q: int
) -> None:
    """``(B*M, S)`` bool True = real: a fine attention_mask, an inverted key_padding_mask."""
    point_mask = LAYOUTS[layout]
    attention_mask = torch.cat([column(point_mask, True).expand(-1, q), valid(point_mask)], 1)
    d = diagnose(attention_mask, point_mask, query_tokens=q)
    assert_diagnosis_is_consistent(d)
    assert d.ok and d.convention == "attention_mask"
    assert "key_padding_mask (True = ignore) it is inverted" in d.advice
    assert f"lpim.masks.to_key_padding_mask(point_mask, query_tokens={q})" in d.advice
    assert_fix_builds_an_ok_mask(d, point_mask, q, None)
    # meant for nn.MultiheadAttention, it is inverted
    meant = diagnose(attention_mask, point_mask, query_tokens=q, intended="key_padding_mask")
    assert meant.convention == "key_padding_mask" and meant.mistake == "inverted_polarity"
    assert_fix_builds_an_ok_mask(meant, point_mask, q, None)


# -- every known mistake ------------------------------------------------------------------------

MistakeCase = tuple[str, str | None, Callable[[Tensor], Any], dict[str, Any]]


def seed_point_mask() -> Tensor:
    """The crash run: B = 8 samples x M = 200 lanes x N = 20 points, 10 real lanes each."""
    point_mask = torch.zeros(8, 200, 20, dtype=torch.bool)
    point_mask[:, :10, :15] = True
    point_mask[:, 3, 15:] = True  # one full lane
    return point_mask


def flip_one(mask: Tensor, index: tuple[int, ...]) -> Tensor:
    flipped = mask.clone()
    flipped[index] = ~flipped[index] if flipped.dtype == torch.bool else 1 - flipped[index]
    return flipped


# (mistake, convention, build(point_mask), diagnose kwargs); q is a diagnose kwarg.
MISTAKE_CASES: dict[str, MistakeCase] = {
    # inverted polarity
    "kpm-valid-passed-as-kpm": (
        "inverted_polarity",
        "key_padding_mask",
        lambda pm: torch.cat([column(pm, True), valid(pm)], 1),
        {"query_tokens": 1, "intended": "key_padding_mask"},
    ),
    "kpm-inverted-no-query": (
        "inverted_polarity",
        "key_padding_mask",
        lambda pm: ~masks.to_key_padding_mask(pm),
        {"intended": "key_padding_mask"},
    ),
    "attention_mask-bool-inverted": (
        "inverted_polarity",
        "attention_mask",
        lambda pm: masks.to_key_padding_mask(pm, 1),
        {"query_tokens": 1, "intended": "attention_mask"},
    ),
    "sdpa-given-a-kpm": (  # pytorch #170400: SDPA reads True as attend, MHA as ignore
        "inverted_polarity",
        "sdpa",
        lambda pm: kpm_by_hand(pm, 1)[:, None, None, :],
        {"query_tokens": 1},
    ),
    "sdpa-inverted-full-heads": (
        "inverted_polarity",
        "sdpa",
        lambda pm: ~masks.to_sdpa_mask(pm).expand(-1, 3, 4, -1),
        {},
    ),
    "attention_mask-int-inverted": (
        "inverted_polarity",
        "attention_mask",
        lambda pm: 1 - masks.to_attention_mask(pm, 1),
        {"query_tokens": 1},
    ),
    "attention_mask-from-kpm-long": (
        "inverted_polarity",
        "attention_mask",
        lambda pm: masks.to_key_padding_mask(pm).long(),
        {},
    ),
    "point_mask-inverted": ("inverted_polarity", "point_mask", lambda pm: ~pm, {}),
    "3d-inverted": (
        "inverted_polarity",
        "attn_mask_3d",
        lambda pm: per_lane_3d(~kpm_by_hand(pm, 1)).repeat_interleave(H, 0),
        {"query_tokens": 1, "num_heads": H},
    ),
    "additive-inverted": (
        "inverted_polarity",
        "additive",
        lambda pm: torch.zeros(6, 1, 1, 4).masked_fill(valid(pm)[:, None, None, :], -torch.inf),
        {},
    ),
    # head order
    "3d-repeat-heads-given": (
        "head_major_3d_mask",
        "attn_mask_3d",
        lambda pm: per_lane_3d(kpm_by_hand(pm, 1)).repeat(H, 1, 1),
        {"query_tokens": 1, "num_heads": H},
    ),
    "3d-repeat-heads-inferred": (
        "head_major_3d_mask",
        "attn_mask_3d",
        lambda pm: per_lane_3d(kpm_by_hand(pm, 0)).repeat(4, 1, 1),
        {},
    ),
    "3d-repeat-float": (
        "head_major_3d_mask",
        "attn_mask_3d",
        lambda pm: torch.zeros(24, 5, 5).masked_fill(
            per_lane_3d(kpm_by_hand(pm, 1)).repeat(4, 1, 1), float("-inf")
        ),
        {"query_tokens": 1, "num_heads": 4},
    ),
    # rows
    "3d-per-lane-heads-given": (
        "missing_head_rows",
        "attn_mask_3d",
        lambda pm: per_lane_3d(kpm_by_hand(pm, 1)),
        {"query_tokens": 1, "num_heads": H},
    ),
    "3d-per-lane-heads-inferred": (
        "missing_head_rows",
        "attn_mask_3d",
        lambda pm: per_lane_3d(kpm_by_hand(pm, 0)),
        {},
    ),
    # query column
    "kpm-no-query-column": (
        "missing_query_column",
        "key_padding_mask",
        lambda pm: ~valid(pm),
        {"query_tokens": 1},
    ),
    "sdpa-no-query-column": (
        "missing_query_column",
        "sdpa",
        lambda pm: valid(pm)[:, None, None, :],
        {"query_tokens": 1},
    ),
    "additive-no-query-column": (
        "missing_query_column",
        "additive",
        lambda pm: masks.to_additive_mask(pm),
        {"query_tokens": 1},
    ),
    "3d-no-query-column": (
        "missing_query_column",
        "attn_mask_3d",
        lambda pm: masks.to_attn_mask_3d(pm, H),
        {"query_tokens": 1, "num_heads": H},
    ),
    "attention_mask-no-query-column": (
        "missing_query_column",
        "attention_mask",
        lambda pm: valid(pm).long(),
        {"query_tokens": 1},
    ),
    "kpm-query-appended": (
        "shifted_query_column",
        "key_padding_mask",
        lambda pm: torch.cat([~valid(pm), torch.zeros(6, 1, dtype=torch.bool)], 1),
        {"query_tokens": 1},
    ),
    "sdpa-query-appended": (
        "shifted_query_column",
        "sdpa",
        lambda pm: torch.cat([valid(pm), column(pm, True)], 1)[:, None, None, :],
        {"query_tokens": 1},
    ),
    "attention_mask-query-appended": (
        "shifted_query_column",
        "attention_mask",
        lambda pm: torch.cat([valid(pm), column(pm, True)], 1).long(),
        {"query_tokens": 1},
    ),
    "kpm-query-masked": (  # "ones for the query", in the kpm's True = ignore
        "masked_query_column",
        "key_padding_mask",
        lambda pm: torch.cat([column(pm, True), ~valid(pm)], 1),
        {"query_tokens": 1},
    ),
    "sdpa-query-masked": (
        "masked_query_column",
        "sdpa",
        lambda pm: torch.cat([column(pm, False), valid(pm)], 1)[:, None, None, :],
        {"query_tokens": 1},
    ),
    # float masks
    "kpm-float": (
        "float_mask_as_additive",
        "key_padding_mask",
        lambda pm: masks.to_key_padding_mask(pm, 1).float(),
        {"query_tokens": 1},
    ),
    "valid-float": (
        "float_mask_as_additive",
        "key_padding_mask",
        lambda pm: valid(pm).float(),
        {},
    ),
    "sdpa-float": (
        "float_mask_as_additive",
        "additive",
        lambda pm: masks.to_sdpa_mask(pm, 1).float(),
        {"query_tokens": 1},
    ),
    "3d-float": (
        "float_mask_as_additive",
        "attn_mask_3d",
        lambda pm: masks.to_attn_mask_3d(pm, H, 1).float(),
        {"query_tokens": 1, "num_heads": H},
    ),
    "additive-2d-minus-1e4": (
        "finite_fill",
        "additive",
        lambda pm: torch.zeros(6, 5).masked_fill(masks.to_key_padding_mask(pm, 1), -1e4),
        {"query_tokens": 1},
    ),
    "additive-4d-minus-1e9": (
        "finite_fill",
        "additive",
        lambda pm: torch.zeros(6, 1, 1, 4).masked_fill(~valid(pm)[:, None, None, :], -1e9),
        {},
    ),
    "additive-f16-minus-1e4": (
        "finite_fill",
        "additive",
        lambda pm: masks.to_additive_mask(pm, torch.float16, 1).clamp(min=-1e4),
        {"query_tokens": 1},
    ),
    "additive-finfo-min": (
        "finite_fill",
        "additive",
        lambda pm: masks.to_additive_mask(pm, torch.float32).clamp(min=torch.finfo().min),
        {},
    ),
    "3d-minus-1e9": (
        "finite_fill",
        "attn_mask_3d",
        lambda pm: torch.zeros(12, 5, 5).masked_fill(masks.to_attn_mask_3d(pm, H, 1), -1e9),
        {"query_tokens": 1, "num_heads": H},
    ),
    # values
    "kpm-one-flipped": (
        "disagrees_with_points",
        "key_padding_mask",
        lambda pm: flip_one(masks.to_key_padding_mask(pm, 1), (0, 3)),
        {"query_tokens": 1},
    ),
    "sdpa-one-flipped": (
        "disagrees_with_points",
        "sdpa",
        lambda pm: flip_one(masks.to_sdpa_mask(pm), (4, 0, 0, 2)),
        {},
    ),
    "additive-one-row-differs": (
        "disagrees_with_points",
        "additive",
        lambda pm: (
            masks.to_additive_mask(pm)
            .expand(-1, 1, 4, -1)
            .clone()
            .index_fill_(2, torch.tensor([1]), 0.0)
        ),
        {},
    ),
    "3d-one-flipped-in-head-0": (
        "disagrees_with_points",
        "attn_mask_3d",
        lambda pm: flip_one(masks.to_attn_mask_3d(pm, H, 1), (2 * H, 0, 1)),
        {"query_tokens": 1, "num_heads": H},
    ),
    "3d-one-flipped-in-head-1": (
        "disagrees_with_points",
        "attn_mask_3d",
        lambda pm: flip_one(masks.to_attn_mask_3d(pm, H, 1), (2 * H + 1, 0, 1)),
        {"query_tokens": 1, "num_heads": H},
    ),
    "attention_mask-one-flipped": (
        "disagrees_with_points",
        "attention_mask",
        lambda pm: flip_one(masks.to_attention_mask(pm), (5, 3)),
        {},
    ),
    "point_mask-one-flipped": (
        "disagrees_with_points",
        "point_mask",
        lambda pm: flip_one(pm, (1, 2, 3)),
        {},
    ),
    "lengths-off-by-one": (
        "disagrees_with_points",
        "lengths",
        lambda pm: pm.sum(-1).flatten() + 1,
        {},
    ),
    "cu_seqlens-without-query": (
        "disagrees_with_points",
        "cu_seqlens",
        lambda pm: masks.to_cu_seqlens(pm)[0],
        {"query_tokens": 1},
    ),
    # a correct mask of another convention than the intended one: not one of the intended
    "sdpa-meant-as-kpm": (
        "unrecognised",
        "key_padding_mask",
        lambda pm: masks.to_sdpa_mask(pm, 1),
        {"query_tokens": 1, "intended": "key_padding_mask"},
    ),
    "attention_mask-meant-as-kpm": (
        "unrecognised",
        "key_padding_mask",
        lambda pm: masks.to_attention_mask(pm),  # int64 1 = valid, N columns: q read as 0
        {"intended": "key_padding_mask"},
    ),
    # nothing fits
    "kpm-per-sample": ("unrecognised", None, lambda pm: ~pm.flatten(1), {}),
    "kpm-missing-a-lane": (
        "unrecognised",
        None,
        lambda pm: masks.to_key_padding_mask(pm)[:-1],
        {},
    ),
    "sdpa-5d": ("unrecognised", None, lambda pm: masks.to_sdpa_mask(pm)[None], {}),
    "a-list": ("unrecognised", None, lambda pm: masks.to_key_padding_mask(pm).tolist(), {}),
    "lengths-float": ("unrecognised", None, lambda pm: pm.sum(-1).flatten().float(), {}),
    "attention_mask-of-2s": (
        "unrecognised",
        None,
        lambda pm: masks.to_attention_mask(pm) * 2,
        {},
    ),
    "3d-one-query-row": (  # kpm[:, None, :] "made 3-D": torch refuses L = 1 for self-attention
        "unrecognised",
        "attn_mask_3d",
        lambda pm: masks.to_key_padding_mask(pm, 1)[:, None, :].repeat_interleave(H, 0),
        {"query_tokens": 1, "num_heads": H},
    ),
    "3d-rows-not-a-multiple": (
        "unrecognised",
        None,
        lambda pm: masks.to_attn_mask_3d(pm, H)[:-1],
        {},
    ),
    "3d-wrong-head-count": (
        "unrecognised",
        "attn_mask_3d",
        lambda pm: masks.to_attn_mask_3d(pm, 3, 1),
        {"query_tokens": 1, "num_heads": 4},
    ),
    "additive-random-values": (
        "unrecognised",
        None,
        lambda pm: torch.randn(6, 1, 1, 4),
        {},
    ),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(
    ("mistake", "convention", "build", "kwargs"),
    [pytest.param(*case, id=name) for name, case in MISTAKE_CASES.items()],
)
def test_every_mistake_is_named(
    layout: str,
    mistake: str,
    convention: str | None,
    build: Callable[[Tensor], Any],
    kwargs: dict[str, Any],
) -> None:
    point_mask = LAYOUTS[layout]
    d = diagnose(build(point_mask), point_mask, **kwargs)
    assert_diagnosis_is_consistent(d)
    assert not d.ok
    assert (d.mistake, d.convention) == (mistake, convention), d.advice
    if convention is None:  # nothing fits: the advice says so and what it got
        assert "fits no convention lpim knows" in d.advice
    else:
        assert MISTAKES[mistake] in d.advice
    if convention not in (None, "point_mask"):
        q = kwargs.get("query_tokens", 0)
        assert f"query_tokens={q}" in d.fix
        assert_fix_builds_an_ok_mask(d, point_mask, q, kwargs.get("num_heads"), heads=H)
    if convention is None:
        # unrecognised: advise the mask MHA wants; with query_tokens not given nothing in an
        # unrecognised mask says how many there are, so the call leaves Q and says what it is
        q = kwargs.get("query_tokens")
        assert d.fix == f"lpim.masks.to_key_padding_mask(point_mask, query_tokens={q or 'Q'})"
        if q is None:
            assert "Q: the query tokens the model prepends to each lane" in d.advice
        built = evaluate_fix(d, point_mask)
        assert diagnose(built, point_mask, query_tokens=q or 0).ok


def test_every_mistake_has_a_case() -> None:
    assert {case[0] for case in MISTAKE_CASES.values()} == set(MISTAKES)


def test_the_seed_mask_is_missing_head_rows() -> None:
    """8 x 200 lanes, 20 points, 8 heads, 1 query token: the (1600, 21, 21) mask of the crash."""
    point_mask = seed_point_mask()
    valid_ = point_mask.reshape(1600, 20)
    key_padding_mask = torch.cat([torch.zeros(1600, 1, dtype=torch.bool), ~valid_], dim=1)
    attn_mask = key_padding_mask[:, None, :].expand(-1, 21, -1)
    assert attn_mask.shape == (1600, 21, 21)
    for num_heads in (8, None):
        d = diagnose(attn_mask, point_mask, num_heads=num_heads, query_tokens=1)
        assert_diagnosis_is_consistent(d)
        assert (d.convention, d.mistake) == ("attn_mask_3d", "missing_head_rows"), d.advice
        assert "B*M*num_heads" in d.advice and "1600 rows" in d.advice
        assert "lpim.masks.to_key_padding_mask(point_mask, query_tokens=1)" in d.advice
        heads = "8" if num_heads else "H"
        assert d.fix == f"lpim.masks.to_attn_mask_3d(point_mask, num_heads={heads}, query_tokens=1)"
        built = evaluate_fix(d, point_mask, heads=8)
        assert built.shape == (12800, 21, 21)
        assert diagnose(built, point_mask, num_heads=num_heads, query_tokens=1).ok
    # the two fixes the advice gives are both right
    fixed = masks.to_key_padding_mask(point_mask, query_tokens=1)
    assert torch.equal(fixed, key_padding_mask)
    assert diagnose(fixed, point_mask, query_tokens=1).ok
    # and the tempting `repeat` is named, not passed
    head_major = attn_mask.repeat(8, 1, 1)
    d = diagnose(head_major, point_mask, num_heads=8, query_tokens=1)
    assert d.mistake == "head_major_3d_mask" and "repeat_interleave" in d.advice


def test_head_count_given_or_inferred_agree() -> None:
    attn_mask = masks.to_attn_mask_3d(RIGHT, num_heads=4, query_tokens=1)
    inferred = diagnose(attn_mask, RIGHT, query_tokens=1)
    given_ = diagnose(attn_mask, RIGHT, num_heads=4, query_tokens=1)
    assert inferred.ok and given_.ok
    assert given_.fix == "lpim.masks.to_attn_mask_3d(point_mask, num_heads=4, query_tokens=1)"
    assert inferred.fix == given_.fix  # the head count is read off the row count
    wrong = diagnose(attn_mask, RIGHT, num_heads=2, query_tokens=1)
    assert wrong.mistake == "unrecognised" and "num_heads = 2" in wrong.advice


def test_a_3d_mask_with_one_query_row_is_refused_by_torch_and_not_ok() -> None:
    key_padding_mask = masks.to_key_padding_mask(RIGHT, 1)
    one_row = key_padding_mask[:, None, :].repeat_interleave(2, 0)  # (12, 1, 5)
    attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(6, 5, 8)
    with pytest.raises(RuntimeError, match="shape of the 3D attn_mask"):
        attention(x, x, x, attn_mask=one_row)
    d = diagnose(one_row, RIGHT, num_heads=2, query_tokens=1)
    assert (d.convention, d.mistake) == ("attn_mask_3d", "unrecognised")
    assert "L = 1 query rows for S = 5 keys" in d.advice


def test_a_finite_fill_with_a_layout_mistake_names_both() -> None:
    per_lane = per_lane_3d(masks.to_key_padding_mask(RIGHT, 1))  # (6, 5, 5) True = blocked
    head_major = torch.zeros(24, 5, 5).masked_fill(per_lane.repeat(4, 1, 1), -1e9)
    d = diagnose(head_major, RIGHT, num_heads=4, query_tokens=1)
    assert (d.convention, d.mistake) == ("attn_mask_3d", "head_major_3d_mask")
    assert d.advice.endswith("The fill is also -1e+09, not -inf.")
    per_lane_filled = torch.zeros(6, 5, 5).masked_fill(per_lane, -1e4)
    d = diagnose(per_lane_filled, RIGHT, num_heads=4, query_tokens=1)
    assert (d.convention, d.mistake) == ("attn_mask_3d", "missing_head_rows")
    assert "The fill is also -10000, not -inf." in d.advice
    assert_fix_builds_an_ok_mask(d, RIGHT, 1, 4)


def test_a_point_mask_shaped_one_head_3d_mask_reads_the_correct_way() -> None:
    """``[B, M=1, N=1]`` is also ``(B*M*1, L=1, S=1)``: as for 2-D bools, the right reading wins."""
    point_mask = torch.tensor([[[True]], [[False]]])
    attn_mask = masks.to_attn_mask_3d(point_mask, num_heads=1)  # == ~point_mask
    assert attn_mask.shape == point_mask.shape
    d = diagnose(attn_mask, point_mask, num_heads=1)
    assert d.ok and d.convention == "attn_mask_3d"
    assert "Read as a point_mask (True = real point) it is inverted" in d.advice
    meant = diagnose(attn_mask, point_mask, num_heads=1, intended="point_mask")
    assert (meant.convention, meant.mistake) == ("point_mask", "inverted_polarity")
    assert diagnose(point_mask, point_mask, num_heads=1).convention == "point_mask"
    assert diagnose(point_mask, point_mask, num_heads=1, intended="attn_mask_3d").mistake == (
        "inverted_polarity"
    )


def test_lengths_of_left_padding_disagree_and_the_fix_is_offsets() -> None:
    """Right counts, wrong layout: lengths say "the first n slots", which left padding is not."""
    left = LAYOUTS["left"]
    d = diagnose(left.sum(-1).flatten(), left)
    assert_diagnosis_is_consistent(d)
    assert (d.convention, d.mistake) == ("lengths", "disagrees_with_points")
    assert "right-padded" in d.advice and "to_cu_seqlens" in d.advice
    with pytest.raises(MaskConventionError):
        masks.to_lengths(left)  # so the fix cannot be to_lengths
    assert_fix_builds_an_ok_mask(d, left, 0, None)


def test_a_missing_query_column_with_inverted_polarity_says_both() -> None:
    d = diagnose(valid(RIGHT), RIGHT, query_tokens=1)  # True = real, and no query column
    assert (d.convention, d.mistake) == ("key_padding_mask", "missing_query_column")
    assert "polarity is inverted as well" in d.advice
    d = diagnose(~valid(RIGHT), RIGHT, query_tokens=1)
    assert "inverted" not in d.advice


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown convention"):
        diagnose(masks.to_key_padding_mask(RIGHT), RIGHT, intended="padding")
    with pytest.raises(MaskConventionError, match="point_mask must be"):
        diagnose(masks.to_key_padding_mask(RIGHT), RIGHT.float())


# -- properties ---------------------------------------------------------------------------------


@st.composite
def point_masks(draw: st.DrawFn) -> Tensor:
    b = draw(st.integers(1, 3))
    m = draw(st.integers(1, 4))
    n = draw(st.integers(1, 6))
    bits = draw(st.lists(st.booleans(), min_size=b * m * n, max_size=b * m * n))
    return torch.tensor(bits, dtype=torch.bool).reshape(b, m, n)


@given(point_masks(), st.integers(0, 2), st.integers(1, 3), st.booleans())
def test_every_converter_is_diagnosed_ok(
    point_mask: Tensor, q: int, heads: int, pass_heads: bool
) -> None:
    # without num_heads a (B*M, L, S) mask reads as missing its head rows, so one head is named
    num_heads = heads if pass_heads or heads == 1 else None
    built = {
        "point_mask": point_mask,
        "key_padding_mask": masks.to_key_padding_mask(point_mask, q),
        "attn_mask_3d": masks.to_attn_mask_3d(point_mask, heads, q),
        "additive": masks.to_additive_mask(point_mask, torch.float16, q),
        "sdpa": masks.to_sdpa_mask(point_mask, q),
        "attention_mask": masks.to_attention_mask(point_mask, q),
        "lengths": masks.to_lengths(right_padded(point_mask), q),
        "cu_seqlens": masks.to_cu_seqlens(point_mask, q)[0],
    }
    for convention, mask in built.items():
        reference = right_padded(point_mask) if convention == "lengths" else point_mask
        d = diagnose(mask, reference, num_heads=num_heads, query_tokens=q)
        assert d.ok and d.convention == convention, (convention, d.advice)
        if convention != "point_mask":
            assert_fix_builds_an_ok_mask(d, reference, q, num_heads)


@given(point_masks(), st.integers(0, 2), st.integers(1, 3))
def test_inverted_bool_masks_are_named_inverted(point_mask: Tensor, q: int, heads: int) -> None:
    _, m, n = point_mask.shape
    # A [B, M=1, N=1] bool is also a one-head (B*M*1, L=1, S=1) attn_mask when q = 0, and the
    # inverse of either is the other, correct, reading: diagnose rightly calls both OK without
    # `intended` (the correct reading wins). That is a coincidence of shapes, not a polarity
    # question the mask can answer, so it is excluded.
    assume(not (m == 1 and n == 1 and q == 0 and heads == 1))
    inverted = {
        "point_mask": (~point_mask, {}),
        "key_padding_mask": (
            ~masks.to_key_padding_mask(point_mask, q),
            {"intended": "key_padding_mask"},  # without it, a correct bool attention_mask
        ),
        "attn_mask_3d": (~masks.to_attn_mask_3d(point_mask, heads, q), {}),
        "sdpa": (~masks.to_sdpa_mask(point_mask, q), {}),
        "attention_mask": (1 - masks.to_attention_mask(point_mask, q), {}),
    }
    for convention, (mask, kwargs) in inverted.items():
        d = diagnose(mask, point_mask, num_heads=heads, query_tokens=q, **kwargs)
        assert (d.convention, d.mistake) == (convention, "inverted_polarity"), d.advice
        if convention != "point_mask":
            assert_fix_builds_an_ok_mask(d, point_mask, q, heads)
    # the inverted key_padding_mask, read with no intent, is a correct bool attention_mask
    d = diagnose(~masks.to_key_padding_mask(point_mask, q), point_mask, query_tokens=q)
    assert d.ok and d.convention == "attention_mask" and "inverted" in d.advice


@given(point_masks(), st.integers(0, 2), st.integers(2, 4), st.booleans())
def test_repeat_is_named_head_major_unless_it_builds_the_same_mask(
    point_mask: Tensor, q: int, heads: int, pass_heads: bool
) -> None:
    right = masks.to_attn_mask_3d(point_mask, heads, q)
    per_lane = per_lane_3d(masks.to_key_padding_mask(point_mask, q))
    head_major = per_lane.repeat(heads, 1, 1)
    num_heads = heads if pass_heads else None
    d = diagnose(head_major, point_mask, num_heads=num_heads, query_tokens=q)
    if torch.equal(head_major, right):
        # every lane has the same mask: `repeat` then builds exactly the right tensor
        assert d.ok
    else:
        assert (d.convention, d.mistake) == ("attn_mask_3d", "head_major_3d_mask"), d.advice
        assert_fix_builds_an_ok_mask(d, point_mask, q, num_heads)


@given(point_masks(), st.integers(0, 2), st.data())
def test_one_flipped_entry_is_never_ok(point_mask: Tensor, q: int, data: st.DataObject) -> None:
    kpm = masks.to_key_padding_mask(point_mask, q)
    row = data.draw(st.integers(0, kpm.shape[0] - 1))
    col = data.draw(st.integers(0, kpm.shape[1] - 1))
    flipped = flip_one(kpm, (row, col))
    cases: list[tuple[Tensor, dict[str, Any]]] = [
        (flipped, {"intended": "key_padding_mask"}),
        (~flipped[:, None, None, :], {}),
        (per_lane_3d(flipped).repeat_interleave(2, 0), {"num_heads": 2}),
    ]
    for mask, kwargs in cases:
        d = diagnose(mask, point_mask, query_tokens=q, **kwargs)
        assert not d.ok, d.advice
        assert d.mistake in MISTAKES and d.mistake != "head_major_3d_mask"


# -- query tokens inferred, intent, and no harmful advice (issue 12, item 5) ---------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_correct_n_plus_1_key_padding_mask_without_query_tokens_is_ok_with_one(
    layout: str,
) -> None:
    """The CLI's old default (query_tokens=0) called it unrecognised and advised query_tokens=0,
    which builds the missing-query-column bug. The width says N + 1: one query token."""
    point_mask = LAYOUTS[layout]
    kpm = masks.to_key_padding_mask(point_mask, query_tokens=1)
    d = diagnose(kpm, point_mask)
    assert_diagnosis_is_consistent(d)
    assert d.ok and d.convention == "key_padding_mask", d.advice
    assert d.fix == "lpim.masks.to_key_padding_mask(point_mask, query_tokens=1)"
    assert "query_tokens was not given: read as 1" in d.advice
    assert "query_tokens=0" not in d.advice
    assert_fix_builds_an_ok_mask(d, point_mask, 1, None)


@pytest.mark.parametrize("q", [0, 1, 2])
def test_query_tokens_are_inferred_from_the_width_for_every_layout_of_mask(q: int) -> None:
    built = {
        "key_padding_mask": masks.to_key_padding_mask(RIGHT, q),
        "attn_mask_3d": masks.to_attn_mask_3d(RIGHT, 2, q),
        "additive": masks.to_additive_mask(RIGHT, torch.float32, q),
        "sdpa": masks.to_sdpa_mask(RIGHT, q),
        "attention_mask": masks.to_attention_mask(RIGHT, q),
    }
    for convention, mask in built.items():
        d = diagnose(mask, RIGHT, num_heads=2)
        assert d.ok and d.convention == convention, d.advice
        assert f"query_tokens={q}" in d.fix and f"read as {q}" in d.advice


def test_an_n_column_mask_without_query_tokens_says_what_a_query_token_would_mean() -> None:
    d = diagnose(masks.to_key_padding_mask(RIGHT), RIGHT)
    assert d.ok and "read as 0" in d.advice
    assert "If the model prepends query tokens to each lane, pass query_tokens=" in d.advice
    # told there is one, the same mask is the missing-query-column mistake
    told = diagnose(masks.to_key_padding_mask(RIGHT), RIGHT, query_tokens=1)
    assert told.mistake == "missing_query_column"


def test_counts_off_by_a_constant_name_both_readings() -> None:
    """lengths + 1 is an off-by-one, or lengths built for one query token: say which needs what."""
    d = diagnose(masks.to_lengths(RIGHT, 1), RIGHT)
    assert (d.convention, d.mistake) == ("lengths", "disagrees_with_points")
    assert "pass query_tokens=1 and it is correct" in d.advice
    assert diagnose(masks.to_lengths(RIGHT, 1), RIGHT, query_tokens=1).ok


def test_an_unrecognised_mask_without_query_tokens_names_what_is_needed() -> None:
    d = diagnose(torch.zeros(3, dtype=torch.bool), RIGHT)
    assert d.mistake == "unrecognised" and "query_tokens=0" not in d.advice
    assert d.fix.endswith("query_tokens=Q)")
    assert "pass query_tokens= to diagnose" in d.advice
    given_ = diagnose(torch.zeros(3, dtype=torch.bool), RIGHT, query_tokens=1)
    assert given_.fix.endswith("query_tokens=1)") and "Q:" not in given_.advice


@pytest.mark.parametrize("q", [0, 1])
def test_an_inverted_key_padding_mask_meant_as_one_is_named_inverted(q: int) -> None:
    inverted = ~masks.to_key_padding_mask(RIGHT, q)
    # without intent: a correct bool attention_mask, with the warning
    assert diagnose(inverted, RIGHT).convention == "attention_mask"
    d = diagnose(inverted, RIGHT, intended="key_padding_mask")
    assert_diagnosis_is_consistent(d)
    assert (d.convention, d.mistake) == ("key_padding_mask", "inverted_polarity"), d.advice
    assert d.fix == f"lpim.masks.to_key_padding_mask(point_mask, query_tokens={q})"


def test_intent_never_calls_a_correct_mask_of_another_convention_ok() -> None:
    sdpa = masks.to_sdpa_mask(RIGHT, 1)
    assert diagnose(sdpa, RIGHT).ok
    d = diagnose(sdpa, RIGHT, intended="additive")
    assert_diagnosis_is_consistent(d)
    assert (d.convention, d.mistake) == ("additive", "unrecognised"), d.advice
    assert "it is a correct sdpa" in d.advice and "not an additive" in d.advice
    assert d.fix == "lpim.masks.to_additive_mask(point_mask, dtype, query_tokens=1)"
    # a mistake of another convention keeps its name and gets the intended convention's call
    head_major = per_lane_3d(masks.to_key_padding_mask(RIGHT, 1)).repeat(4, 1, 1)
    d = diagnose(head_major, RIGHT, num_heads=4, intended="key_padding_mask")
    assert (d.convention, d.mistake) == ("attn_mask_3d", "head_major_3d_mask"), d.advice
    assert d.fix == "lpim.masks.to_key_padding_mask(point_mask, query_tokens=1)"
    assert "It was meant to be a key_padding_mask" in d.advice


def test_a_given_query_token_count_the_width_contradicts_is_named() -> None:
    """`lpim diagnose` used to pass query_tokens=0 by default: the width still says what fits."""
    kpm = masks.to_key_padding_mask(RIGHT, query_tokens=1)
    d = diagnose(kpm, RIGHT, query_tokens=0)
    assert d.mistake == "unrecognised"
    assert "if the model prepends 1 query token(s), diagnose it with query_tokens=1" in d.advice
    assert diagnose(kpm, RIGHT, query_tokens=1).ok


PM_2_LANES = torch.tensor([[[True, True, False], [True, False, False]]])  # [1, 2, 3]
SDPA_2_LANES = masks.to_sdpa_mask(PM_2_LANES)  # (2, 1, 1, 3)


@pytest.mark.parametrize(
    ("sdpa_mask", "point_mask", "num_heads"),
    [
        (SDPA_2_LANES.expand(-1, 3, -1, -1), PM_2_LANES, 8),  # 3 heads for H = 8
        (SDPA_2_LANES.expand(-1, 1, 2, -1), PM_2_LANES, None),  # 2 rows for L = S = 3
        (torch.ones(0, 0, 0, 0, dtype=torch.bool), torch.ones(0, 0, 0, dtype=torch.bool), None),
        (masks.to_additive_mask(PM_2_LANES).expand(-1, 2, -1, -1), PM_2_LANES, 4),
    ],
    ids=["heads-3-for-8", "rows-2-for-3", "no-head-no-lane", "additive-heads-2-for-4"],
)
def test_a_4d_mask_that_does_not_broadcast_gets_one_verdict_at_every_door(
    sdpa_mask: torch.Tensor, point_mask: torch.Tensor, num_heads: int | None
) -> None:
    """SDPA refuses these shapes (decided by running it: a (B*M, 3, 1, S) mask for 8 heads or
    two query rows for three raise), and `diagnose` once called them correct while `validate`
    refused them: now `diagnose`, `validate` and its shape-only form agree, with one
    expected shape."""
    convention = "additive" if sdpa_mask.is_floating_point() else "sdpa"
    diagnosis = diagnose(sdpa_mask.contiguous(), point_mask, num_heads=num_heads)
    assert not diagnosis.ok and diagnosis.convention == convention
    assert "does not broadcast to (B*M, H, L, S)" in diagnosis.advice
    for against in (point_mask, None):
        with pytest.raises(MaskConventionError, match="does not broadcast") as info:
            masks.validate(
                sdpa_mask.contiguous(), convention, point_mask=against, num_heads=num_heads
            )
        heads = "1 or H" if num_heads is None else f"1 or {num_heads}"
        assert f", {heads}, 1 or " in str(info.value)
    if sdpa_mask.shape[0]:  # SDPA itself refuses it
        b_m, s = sdpa_mask.shape[0], sdpa_mask.shape[-1]
        heads = num_heads or 1
        query = torch.randn(b_m, heads, s, 4)
        with pytest.raises(RuntimeError):
            torch.nn.functional.scaled_dot_product_attention(
                query, query, query, attn_mask=sdpa_mask
            )


def _validate_accepts(mask: torch.Tensor, point_mask: torch.Tensor, num_heads: int) -> bool:
    try:
        masks.validate(mask, "attn_mask_3d", point_mask=point_mask, num_heads=num_heads)
    except MaskConventionError:
        return False
    return True


@pytest.mark.parametrize("num_heads", [1, 2])
@pytest.mark.parametrize(
    "point_mask",
    [torch.ones(0, 2, 3, dtype=torch.bool), torch.ones(1, 2, 0, dtype=torch.bool)],
    ids=["no-lane", "no-token"],
)
def test_an_empty_3d_mask_gets_the_validators_verdict(
    point_mask: torch.Tensor, num_heads: int
) -> None:
    """With no lane (B*M = 0) or no token (S = 0) a 3-D mask has no entry to read, and only
    its shape decides: `diagnose` once called the (0, S, S) mask of 0 lanes "missing_head_rows"
    (it is B*M*H rows for every H) and the (B*M*H, 0, 0) mask "unrecognised", which `validate`
    accepts. Every row count now gets one verdict from both."""
    b, m, n = point_mask.shape
    for rows in sorted({0, 1, b * m, b * m * num_heads, b * m * num_heads + 1}):
        attn_mask = torch.zeros(rows, n, n, dtype=torch.bool)
        diagnosis = diagnose(attn_mask, point_mask, num_heads=num_heads, query_tokens=0)
        assert diagnosis.ok == _validate_accepts(attn_mask, point_mask, num_heads), (
            rows,
            diagnosis,
        )
        if rows == b * m * num_heads:
            assert diagnosis.ok, diagnosis
