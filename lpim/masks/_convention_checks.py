"""One check per convention: does a mask have the layout, dtype and values its convention says?

[`validate`][lpim.masks.validate] picks the check from the convention's registry entry and passes
it the lpim call that builds the right mask (`fix`), which every error quotes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lpim._errors import UsageValueError
from lpim.masks._conventions import Convention
from lpim.masks._convert import (
    broadcast_shape,
    broadcasts,
    check_integer_lengths,
    check_offsets,
    check_zero_one,
    keep_tokens,
    not_broadcasting,
    single_row,
    to_attn_mask_3d,
    to_cu_seqlens,
    to_lengths,
)
from lpim.masks._errors import MaskConventionError, describe_tensor


class Against(NamedTuple):
    """What [`validate`][lpim.masks.validate] checks a mask against.

    Attributes:
        convention: the registry entry of the convention checked.
        point_mask: `[B, M, N]` bool, True = real point, or None to check layout only.
        num_heads: `H`, or None when not given.
        query_tokens: tokens prepended to each lane.
        fix: the lpim call that builds the right mask, quoted by every error.
    """

    convention: Convention
    point_mask: torch.Tensor | None
    num_heads: int | None
    query_tokens: int
    fix: str


__all__ = [
    "Against",
    "check_additive",
    "check_attention_mask",
    "check_attn_mask_3d",
    "check_cu_seqlens",
    "check_key_padding_mask",
    "check_lengths",
    "check_sdpa",
]


def check_key_padding_mask(key_padding_mask: torch.Tensor, against: Against) -> None:
    """Raise unless `key_padding_mask` is a correct one (of `point_mask`, if given)."""
    convention, point_mask, _, q, fix = against
    if key_padding_mask.is_floating_point():
        raise MaskConventionError(
            "a floating key_padding_mask is ADDED to the attention scores: a 0/1 mask adds +1 "
            "to real (or padded) keys and masks nothing",
            convention="key_padding_mask",
            expected="torch.bool, True = ignore",
            got=describe_tensor(key_padding_mask),
            hint=f"{fix}, or mask.bool() if 1 marks padding",
        )
    _expect(key_padding_mask, convention, dtype=torch.bool, rank=2, fix=fix)
    if point_mask is None:
        _query_columns(~key_padding_mask, q, "key_padding_mask", fix)
        return
    _compare(
        ~key_padding_mask, keep_tokens(point_mask, q), "key_padding_mask", fix, "True = ignore"
    )


def check_attn_mask_3d(attn_mask: torch.Tensor, against: Against) -> None:
    """Raise unless `attn_mask` is a correct attn_mask_3d mask (of `point_mask`, if given)."""
    convention, point_mask, num_heads, q, fix = against
    _expect(attn_mask, convention, dtype=torch.bool, rank=3, fix=fix)
    if num_heads is not None and attn_mask.shape[0] % num_heads:
        raise MaskConventionError(
            f"the 3D attn_mask has {attn_mask.shape[0]} rows, not a multiple of "
            f"num_heads = {num_heads}",
            convention="attn_mask_3d",
            expected="B*M*num_heads rows",
            got=describe_tensor(attn_mask),
            hint=fix,
        )
    if point_mask is None:
        return
    b, m, n = point_mask.shape
    s = n + q
    if num_heads is None:
        raise UsageValueError(
            "validate(..., 'attn_mask_3d', point_mask=...) also needs num_heads; got num_heads=None"
        )
    want = (b * m * num_heads, s, s)
    if tuple(attn_mask.shape) != want:
        problem = f"the 3D attn_mask must have shape {want}"
        if attn_mask.shape[0] == b * m and attn_mask.shape[0] != want[0]:
            problem = (
                f"the 3D attn_mask has one row per lane ({b * m}) but nn.MultiheadAttention needs "
                f"one per lane and head: B*M*num_heads = {b}*{m}*{num_heads} = {want[0]} rows"
            )
        raise MaskConventionError(
            problem,
            convention="attn_mask_3d",
            expected=(
                f"shape {want} = (B*M*num_heads, L, S) with B*M = {b * m} lanes, "
                f"num_heads = {num_heads}, L = S = query_tokens + N = {s}; rows b*H + h "
                "(repeat_interleave, not repeat)"
            ),
            got=describe_tensor(attn_mask),
            hint=fix,
        )
    expected = to_attn_mask_3d(point_mask, num_heads, q)
    if torch.equal(attn_mask, expected):
        return
    if num_heads > 1 and torch.equal(attn_mask, _head_major(expected, num_heads)):
        raise MaskConventionError(
            "the 3D attn_mask is head-major (built with repeat(H, 1, 1)): row b*H + h holds "
            "lane (b*H + h) % (B*M)'s mask, so each head reads another lane's padding. It runs "
            "without error and is wrong",
            convention="attn_mask_3d",
            expected="rows in b*H + h order: per_lane_mask.repeat_interleave(num_heads, dim=0)",
            got=f"{describe_tensor(attn_mask)} equal to per_lane_mask.repeat({num_heads}, 1, 1)",
            hint=fix,
        )
    _compare(~attn_mask, ~expected, "attn_mask_3d", fix, "True = blocked")


def check_additive(additive_mask: torch.Tensor, against: Against) -> None:
    """Raise unless `additive_mask` is a correct additive mask (of `point_mask`, if given)."""
    convention, point_mask, num_heads, q, fix = against
    if not additive_mask.is_floating_point():
        raise MaskConventionError(
            "an additive mask is floating (0 = keep, -inf = block)",
            convention="additive",
            expected="a floating tensor broadcastable to (B*M, H, L, S)",
            got=describe_tensor(additive_mask),
            hint=f"{fix}, or lpim.masks.to_sdpa_mask for a boolean SDPA mask",
        )
    _expect(additive_mask, convention, dtype=None, rank=4, fix=fix)
    neg_inf = additive_mask == float("-inf")
    others = additive_mask[~neg_inf & (additive_mask != 0)]
    if others.numel():
        values = sorted({float(v) for v in torch.unique(others)[:4]})
        if set(values) <= {1.0}:
            problem = "a 0/1 float mask is added to the scores: +1 on kept keys masks nothing"
        else:
            problem = (
                f"a finite fill {values} is not -inf: it lets large scores through, and a "
                "fill such as -1e9 overflows to -inf and then NaN in float16"
            )
        raise MaskConventionError(
            problem,
            convention="additive",
            expected="values 0 (keep) and -inf (block) only",
            got=f"{describe_tensor(additive_mask)} with values {values}",
            hint=fix,
        )
    if point_mask is None:
        single_row(~neg_inf, "additive", num_heads=num_heads)  # its shape and heads, alone
        return
    _broadcasts(additive_mask, point_mask, num_heads, q, "additive", fix)
    keep = single_row(~neg_inf, "additive", num_heads=num_heads)
    _compare(keep, keep_tokens(point_mask, q), "additive", fix, "0 = keep")


def check_sdpa(sdpa_mask: torch.Tensor, against: Against) -> None:
    """Raise unless `sdpa_mask` is a correct sdpa mask (of `point_mask`, if given)."""
    convention, point_mask, num_heads, q, fix = against
    _expect(sdpa_mask, convention, dtype=torch.bool, rank=4, fix=fix)
    if point_mask is None:
        single_row(sdpa_mask, "sdpa", num_heads=num_heads)  # its shape and heads, alone
        return
    _broadcasts(sdpa_mask, point_mask, num_heads, q, "sdpa", fix)
    keep = single_row(sdpa_mask, "sdpa", num_heads=num_heads)
    _compare(keep, keep_tokens(point_mask, q), "sdpa", fix, "True = attend")


def check_attention_mask(attention_mask: torch.Tensor, against: Against) -> None:
    """Raise unless `attention_mask` is a correct one (of `point_mask`, if given)."""
    convention, point_mask, _, q, fix = against
    _expect(attention_mask, convention, dtype=None, rank=2, fix=fix)
    check_zero_one(attention_mask, "", hint=fix)
    if point_mask is None:
        _query_columns(attention_mask.bool(), q, "attention_mask", fix)
        return
    _compare(attention_mask.bool(), keep_tokens(point_mask, q), "attention_mask", fix, "1 = valid")


def check_lengths(lengths: torch.Tensor, against: Against) -> None:
    """Raise unless `lengths` is a correct lengths mask (of `point_mask`, if given)."""
    convention, point_mask, _, q, fix = against
    _expect(lengths, convention, dtype=None, rank=1, fix=fix)
    check_integer_lengths(lengths, "", hint=fix)
    if point_mask is None:
        return
    expected = to_lengths(point_mask, q)  # refuses non-right layouts itself
    _same_values(lengths, expected, "lengths", fix)


def check_cu_seqlens(cu_seqlens: torch.Tensor, against: Against) -> None:
    """Raise unless `cu_seqlens` is a correct cu_seqlens mask (of `point_mask`, if given)."""
    convention, point_mask, _, q, fix = against
    _expect(cu_seqlens, convention, dtype=torch.int32, rank=1, fix=fix)
    check_offsets(cu_seqlens, "", hint=fix)
    if point_mask is None:
        return
    expected, _ = to_cu_seqlens(point_mask, q)
    _same_values(cu_seqlens, expected, "cu_seqlens", fix)


# -- shared pieces -----------------------------------------------------------------------------


def _expect(
    mask: torch.Tensor, convention: Convention, *, dtype: torch.dtype | None, rank: int, fix: str
) -> None:
    if dtype is not None and mask.dtype != dtype:
        raise MaskConventionError(
            f"wrong dtype for a {convention.name}",
            convention=convention.name,
            expected=str(dtype),
            got=describe_tensor(mask),
            hint=fix,
        )
    if mask.dim() != rank:
        raise MaskConventionError(
            f"wrong rank for a {convention.name}",
            convention=convention.name,
            expected=f"a {rank}-D tensor of shape {convention.shape}",
            got=describe_tensor(mask),
            hint=fix,
        )


def _broadcasts(
    mask: torch.Tensor,
    point_mask: torch.Tensor,
    num_heads: int | None,
    q: int,
    convention: str,
    fix: str,
) -> None:
    """A 4-D SDPA-style mask must broadcast to `(B*M, H, L, S)` with its own lane axis."""
    b, m, n = point_mask.shape
    s = n + q
    lanes, _, _, cols = mask.shape
    if lanes != b * m or cols != s or not broadcasts(mask.shape, num_heads):
        expected = (
            f"{broadcast_shape(b * m, s, num_heads)} for B*M = {b * m} lanes and "
            f"S = query_tokens + N = {s}"
        )
        raise not_broadcasting(mask, convention, expected, hint=fix)


def _compare(
    got_keep: torch.Tensor, expected_keep: torch.Tensor, convention: str, fix: str, polarity: str
) -> None:
    """Compare two masks in keep form (True = real token) of the same layout."""
    if got_keep.shape != expected_keep.shape:
        raise MaskConventionError(
            f"wrong shape for a {convention}",
            convention=convention,
            expected=f"shape {tuple(expected_keep.shape)} ({polarity})",
            got=f"shape {tuple(got_keep.shape)}",
            hint=fix,
        )
    if torch.equal(got_keep, expected_keep):
        return
    if torch.equal(got_keep, ~expected_keep):
        raise MaskConventionError(
            f"the mask has inverted polarity: every entry is the opposite of the {convention} "
            "for this point_mask",
            convention=convention,
            expected=f"{polarity}",
            got="the opposite polarity everywhere",
            hint=f"{fix} (lpim's point_mask is True = real point)",
        )
    wrong = got_keep != expected_keep
    first = [int(i) for i in wrong.nonzero()[0]]
    raise MaskConventionError(
        f"the mask disagrees with point_mask at {int(wrong.sum())} of {wrong.numel()} entries",
        convention=convention,
        expected=f"{polarity}, as built from point_mask",
        got=f"a mismatch first at index {first}",
        hint=f"{fix}, or lpim.masks.diagnose(mask, point_mask) to name the mistake",
    )


def _same_values(got: torch.Tensor, expected: torch.Tensor, convention: str, fix: str) -> None:
    if got.shape != expected.shape or not torch.equal(got.to(expected.dtype), expected):
        raise MaskConventionError(
            f"the {convention} disagree with point_mask",
            convention=convention,
            expected=f"{describe_tensor(expected)}: {expected.tolist()[:8]}",
            got=f"{describe_tensor(got)}: {got.tolist()[:8]}",
            hint=fix,
        )


def _query_columns(keep: torch.Tensor, q: int, convention: str, fix: str) -> None:
    if q and not bool(keep[:, :q].all()):
        raise MaskConventionError(
            "a query column is masked: query tokens are real and must never be masked",
            convention=convention,
            expected=f"the first {q} column(s) unmasked",
            got=f"{int((~keep[:, :q]).sum())} masked query entries",
            hint=fix,
        )


def _head_major(interleaved: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The mask `repeat(H, 1, 1)` would have built from the same per-lane mask."""
    per_lane = interleaved[::num_heads]  # [B*M, L, S]
    return per_lane.repeat(num_heads, 1, 1)  # [H*B*M, L, S], head-major
