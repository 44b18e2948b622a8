"""`validate`: check that a mask is what its convention says, before a consumer misreads it.

Torch checks some shapes and no meanings: a mask with the wrong polarity, a head-major 3D mask or a
float 0/1 ``key_padding_mask`` all run without a word. :func:`validate` checks shape, dtype and
device always, and, given the ``point_mask`` the mask was meant to encode, every value too.
"""

from __future__ import annotations

import torch

from lpim.masks.conventions import (
    CONVENTIONS,
    MaskConventionError,
    check_count,
    check_has_values,
    check_point_mask,
    describe,
)
from lpim.masks.convert import keep_tokens, to_attn_mask_3d, to_cu_seqlens, to_lengths


def validate(
    mask: torch.Tensor,
    convention: str,
    *,
    point_mask: torch.Tensor | None = None,
    num_heads: int | None = None,
    query_tokens: int = 0,
) -> None:
    """Raise :class:`MaskConventionError` unless ``mask`` is a correct mask of ``convention``.

    Args:
        mask: the mask to check (for ``"cu_seqlens"``, the offsets tensor).
        convention: one of ``"key_padding_mask"``, ``"attn_mask_3d"``, ``"additive"``,
            ``"sdpa"``, ``"attention_mask"``, ``"lengths"``, ``"cu_seqlens"``.
        point_mask: ``[B, M, N]`` bool, True = real point. When given, the exact shape, the
            device and every value are checked against it; without it, only rank, dtype and
            the values the convention allows.
        num_heads: ``H``; needed to check an ``"attn_mask_3d"`` row count and head order.
        query_tokens: tokens prepended to each lane (never masked).

    Raises:
        MaskConventionError: naming the convention assumed, the expected shape, dtype, device
            and polarity, what came, and the lpim call that builds the right mask; also for a
            mask or ``point_mask`` on the ``meta`` device (no values to check).
        ValueError: ``convention`` is not a name lpim knows, or ``num_heads < 1`` or
            ``query_tokens < 0``.
        TypeError: ``num_heads`` or ``query_tokens`` is not an int.
    """
    checks = {
        "key_padding_mask": _key_padding_mask,
        "attn_mask_3d": _attn_mask_3d,
        "additive": _additive,
        "sdpa": _sdpa,
        "attention_mask": _attention_mask,
        "lengths": _lengths,
        "cu_seqlens": _cu_seqlens,
    }
    if convention not in checks:
        raise ValueError(
            f"unknown convention: got {convention!r}; expected one of {sorted(checks)} "
            f"(all conventions: {list(CONVENTIONS)})"
        )
    if not isinstance(mask, torch.Tensor):
        raise MaskConventionError(
            "the mask must be a tensor",
            convention=convention,
            expected=f"a tensor of shape {CONVENTIONS[convention].shape}",
            got=type(mask).__name__,
        )
    if num_heads is not None:
        num_heads = check_count(num_heads, "num_heads", "validate", minimum=1)
    query_tokens = check_count(query_tokens, "query_tokens", "validate", minimum=0)
    if point_mask is not None:
        check_point_mask(point_mask, "validate")
        check_has_values(point_mask, "point_mask", "validate", "point_mask")
        if mask.device != point_mask.device:
            raise MaskConventionError(
                "mask and point_mask are on different devices",
                convention=convention,
                expected=f"device {point_mask.device} (that of point_mask)",
                got=describe(mask),
                hint="move it with .to(point_mask.device)",
            )
    check_has_values(mask, "the mask", "validate", convention)
    checks[convention](mask, point_mask, num_heads, query_tokens)


# -- one check per convention ------------------------------------------------------------------


def _key_padding_mask(
    mask: torch.Tensor, point_mask: torch.Tensor | None, num_heads: int | None, q: int
) -> None:
    fix = f"lpim.masks.to_key_padding_mask(point_mask, query_tokens={q})"
    if mask.is_floating_point():
        raise MaskConventionError(
            "a floating key_padding_mask is ADDED to the attention scores: a 0/1 mask adds +1 "
            "to real (or padded) keys and masks nothing",
            convention="key_padding_mask",
            expected="torch.bool, True = ignore",
            got=describe(mask),
            hint=f"{fix}, or mask.bool() if 1 marks padding",
        )
    _expect(mask, "key_padding_mask", dtype=torch.bool, rank=2, fix=fix)
    if point_mask is None:
        _query_columns(~mask, q, "key_padding_mask", fix)
        return
    _compare(~mask, keep_tokens(point_mask, q), "key_padding_mask", fix, "True = ignore")


def _attn_mask_3d(
    mask: torch.Tensor, point_mask: torch.Tensor | None, num_heads: int | None, q: int
) -> None:
    fix_2d = f"lpim.masks.to_key_padding_mask(point_mask, query_tokens={q})"
    fix = (
        f"lpim.masks.to_attn_mask_3d(point_mask, num_heads={num_heads or 'H'}, query_tokens={q})"
        f", or better pass a 2D key_padding_mask: {fix_2d}"
    )
    _expect(mask, "attn_mask_3d", dtype=torch.bool, rank=3, fix=fix)
    if num_heads is not None and mask.shape[0] % num_heads:
        raise MaskConventionError(
            f"the 3D attn_mask has {mask.shape[0]} rows, not a multiple of num_heads = {num_heads}",
            convention="attn_mask_3d",
            expected="B*M*num_heads rows",
            got=describe(mask),
            hint=fix,
        )
    if point_mask is None:
        return
    b, m, n = point_mask.shape
    s = n + q
    if num_heads is None:
        raise ValueError("validate(..., 'attn_mask_3d', point_mask=...) also needs num_heads")
    want = (b * m * num_heads, s, s)
    if tuple(mask.shape) != want:
        problem = f"the 3D attn_mask must have shape {want}"
        if mask.shape[0] == b * m and mask.shape[0] != want[0]:
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
            got=describe(mask),
            hint=fix,
        )
    expected = to_attn_mask_3d(point_mask, num_heads, q)
    if torch.equal(mask, expected):
        return
    if num_heads > 1 and torch.equal(mask, _head_major(expected, num_heads)):
        raise MaskConventionError(
            "the 3D attn_mask is head-major (built with repeat(H, 1, 1)): row b*H + h holds "
            "lane (b*H + h) % (B*M)'s mask, so each head reads another lane's padding. It runs "
            "without error and is wrong",
            convention="attn_mask_3d",
            expected="rows in b*H + h order: per_lane_mask.repeat_interleave(num_heads, dim=0)",
            got=f"{describe(mask)} equal to per_lane_mask.repeat({num_heads}, 1, 1)",
            hint=fix,
        )
    _compare(~mask, ~expected, "attn_mask_3d", fix, "True = blocked")


def _additive(
    mask: torch.Tensor, point_mask: torch.Tensor | None, num_heads: int | None, q: int
) -> None:
    fix = f"lpim.masks.to_additive_mask(point_mask, dtype, query_tokens={q})"
    if not mask.is_floating_point():
        raise MaskConventionError(
            "an additive mask is floating (0 = keep, -inf = block)",
            convention="additive",
            expected="a floating tensor broadcastable to (B*M, H, L, S)",
            got=describe(mask),
            hint=f"{fix}, or lpim.masks.to_sdpa_mask for a boolean SDPA mask",
        )
    _expect(mask, "additive", dtype=None, rank=4, fix=fix)
    neg_inf = mask == float("-inf")
    others = mask[~neg_inf & (mask != 0)]
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
            got=f"{describe(mask)} with values {values}",
            hint=fix,
        )
    if point_mask is None:
        return
    _broadcasts(mask, point_mask, num_heads, q, "additive", fix)
    _compare(_rows(~neg_inf, "additive"), keep_tokens(point_mask, q), "additive", fix, "0 = keep")


def _sdpa(
    mask: torch.Tensor, point_mask: torch.Tensor | None, num_heads: int | None, q: int
) -> None:
    fix = f"lpim.masks.to_sdpa_mask(point_mask, query_tokens={q})"
    _expect(mask, "sdpa", dtype=torch.bool, rank=4, fix=fix)
    if point_mask is None:
        return
    _broadcasts(mask, point_mask, num_heads, q, "sdpa", fix)
    _compare(_rows(mask, "sdpa"), keep_tokens(point_mask, q), "sdpa", fix, "True = attend")


def _attention_mask(
    mask: torch.Tensor, point_mask: torch.Tensor | None, num_heads: int | None, q: int
) -> None:
    fix = f"lpim.masks.to_attention_mask(point_mask, query_tokens={q})"
    _expect(mask, "attention_mask", dtype=None, rank=2, fix=fix)
    if mask.is_floating_point() or not bool(((mask == 0) | (mask == 1)).all()):
        raise MaskConventionError(
            "an attention_mask holds integer 0 (pad) and 1 (valid) only",
            convention="attention_mask",
            expected="int64 (or bool) values in {0, 1}",
            got=describe(mask),
            hint=fix,
        )
    if point_mask is None:
        _query_columns(mask.bool(), q, "attention_mask", fix)
        return
    _compare(mask.bool(), keep_tokens(point_mask, q), "attention_mask", fix, "1 = valid")


def _lengths(
    mask: torch.Tensor, point_mask: torch.Tensor | None, num_heads: int | None, q: int
) -> None:
    fix = f"lpim.masks.to_lengths(point_mask, query_tokens={q})"
    _expect(mask, "lengths", dtype=None, rank=1, fix=fix)
    if mask.is_floating_point() or mask.dtype == torch.bool:
        raise MaskConventionError(
            "lengths are integers",
            convention="lengths",
            expected="an integer (B*M,) tensor",
            got=describe(mask),
            hint=fix,
        )
    if point_mask is None:
        return
    expected = to_lengths(point_mask, q)  # refuses non-right layouts itself
    _same_values(mask, expected, "lengths", fix)


def _cu_seqlens(
    mask: torch.Tensor, point_mask: torch.Tensor | None, num_heads: int | None, q: int
) -> None:
    fix = f"lpim.masks.to_cu_seqlens(point_mask, query_tokens={q})"
    _expect(mask, "cu_seqlens", dtype=torch.int32, rank=1, fix=fix)
    if mask.numel() == 0 or int(mask[0]) != 0 or bool((mask.diff() < 0).any()):
        raise MaskConventionError(
            "cu_seqlens must start at 0 and never decrease",
            convention="cu_seqlens",
            expected="(B*M + 1,) int32 offsets, cu_seqlens[0] == 0, non-decreasing",
            got=f"{describe(mask)}: {mask.tolist()[:8]}",
            hint=fix,
        )
    if point_mask is None:
        return
    expected, _ = to_cu_seqlens(point_mask, q)
    _same_values(mask, expected, "cu_seqlens", fix)


# -- shared pieces -----------------------------------------------------------------------------


def _expect(
    mask: torch.Tensor, convention: str, *, dtype: torch.dtype | None, rank: int, fix: str
) -> None:
    if dtype is not None and mask.dtype != dtype:
        raise MaskConventionError(
            f"wrong dtype for a {convention}",
            convention=convention,
            expected=str(dtype),
            got=describe(mask),
            hint=fix,
        )
    if mask.dim() != rank:
        raise MaskConventionError(
            f"wrong rank for a {convention}",
            convention=convention,
            expected=f"a {rank}-D tensor of shape {CONVENTIONS[convention].shape}",
            got=describe(mask),
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
    """A 4-D SDPA-style mask must broadcast to ``(B*M, H, L, S)`` with its own lane axis."""
    b, m, n = point_mask.shape
    s = n + q
    lanes, heads, rows, cols = mask.shape
    ok = (
        lanes == b * m
        and cols == s
        and rows in (1, s)
        and (heads == 1 or num_heads is None or heads == num_heads)
    )
    if not ok:
        raise MaskConventionError(
            f"the {convention} mask does not broadcast to (B*M, H, L, S)",
            convention=convention,
            expected=(
                f"shape ({b * m}, 1 or H, 1 or {s}, {s}) for B*M = {b * m} lanes and "
                f"S = query_tokens + N = {s}"
            ),
            got=describe(mask),
            hint=fix,
        )


def _rows(mask4d: torch.Tensor, convention: str) -> torch.Tensor:
    """Reduce a 4-D per-lane mask to ``(B*M, S)``, failing loudly if heads or rows disagree."""
    first = mask4d[:, :1, :1, :]
    if not torch.equal(mask4d, first.expand_as(mask4d)):
        # A padding mask treats every head and query row alike; anything else is a mistake
        # or not a padding mask, and comparing one slice would hide it.
        differ = (mask4d != first).any(dim=(1, 2, 3)).nonzero()[0].item()
        raise MaskConventionError(
            "heads or query rows of one lane disagree: not a padding mask",
            convention=convention,
            expected="one row per lane, broadcast over heads and query rows",
            got=f"{describe(mask4d)}; lane {differ} differs between heads or rows",
        )
    return first[:, 0, 0, :]


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
            expected=f"{describe(expected)}: {expected.tolist()[:8]}",
            got=f"{describe(got)}: {got.tolist()[:8]}",
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
    """The mask ``repeat(H, 1, 1)`` would have built from the same per-lane mask."""
    per_lane = interleaved[::num_heads]  # [B*M, L, S]
    return per_lane.repeat(num_heads, 1, 1)  # [H*B*M, L, S], head-major
