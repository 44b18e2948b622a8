"""`validate`: check that a mask is what its convention says, before a consumer misreads it.

Torch checks some shapes and no meanings: a mask with the wrong polarity, a head-major 3D mask or a
float 0/1 `key_padding_mask` all run without a word. [`validate`][lpim.masks.validate] checks
shape, dtype and device always, and, given the `point_mask` the mask was meant to encode, every
value too. What it checks for each convention of
[`CONVENTIONS`][lpim.masks.CONVENTIONS] is that convention's entry in `CHECKS`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lpim._errors import UsageValueError
from lpim._validation import check_int
from lpim.masks import _convention_checks as _checks
from lpim.masks._conventions import CONVENTIONS
from lpim.masks._errors import (
    MaskConventionError,
    check_dense_mask,
    check_has_values,
    check_point_mask,
    describe_tensor,
)

__all__ = ["CHECKS", "validate"]

CHECKS: dict[str, Callable[[torch.Tensor, _checks.Against], None]] = {
    "key_padding_mask": _checks.check_key_padding_mask,
    "attn_mask_3d": _checks.check_attn_mask_3d,
    "additive": _checks.check_additive,
    "sdpa": _checks.check_sdpa,
    "attention_mask": _checks.check_attention_mask,
    "lengths": _checks.check_lengths,
    "cu_seqlens": _checks.check_cu_seqlens,
}
"""The check `validate` runs for each convention it can validate (`point_mask` is lpim's own and
`nested` holds no mask), by convention name."""


def validate(
    mask: torch.Tensor,
    convention: str,
    *,
    point_mask: torch.Tensor | None = None,
    num_heads: int | None = None,
    query_tokens: int = 0,
) -> None:
    """Raise [`MaskConventionError`][lpim.masks.MaskConventionError] unless `mask` is a correct
    mask of `convention`.

    Args:
        mask: the mask to check (for `"cu_seqlens"`, the offsets tensor); its polarity is
            what `convention` says.
        convention: one of `"key_padding_mask"`, `"attn_mask_3d"`, `"additive"`, `"sdpa"`,
            `"attention_mask"`, `"lengths"`, `"cu_seqlens"`.
        point_mask: `[B, M, N]` bool, True = real point. When given, the exact shape, the
            device and every value are checked against it; without it, only rank, dtype and
            the values the convention allows.
        num_heads: `H`; needed to check an `"attn_mask_3d"` row count and head order.
        query_tokens: tokens prepended to each lane (never masked).

    Raises:
        MaskConventionError: naming the convention assumed, the expected shape, dtype, device
            and polarity, what came, and the lpim call that builds the right mask; also for a
            mask or `point_mask` on the `meta` device (no values to check) or a sparse or
            nested one.
        lpim._errors.UsageValueError: (a `ValueError`) `convention` is not a name lpim knows,
            `num_heads < 1`, `query_tokens < 0`, an `"attn_mask_3d"` with `point_mask` but no
            `num_heads`, or a `query_tokens` too large to allocate the expected mask.
        lpim._errors.UsageTypeError: (a `TypeError`) `num_heads` or `query_tokens` is not an
            int.
    """
    checkable = list(CHECKS)
    if not isinstance(convention, str) or convention not in checkable:
        raise UsageValueError(
            f"unknown convention: got {convention!r}; expected one of {sorted(checkable)} "
            f"(all conventions: {list(CONVENTIONS)})"
        )
    entry = CONVENTIONS[convention]
    if not isinstance(mask, torch.Tensor):
        raise MaskConventionError(
            "the mask must be a tensor",
            convention=convention,
            expected=f"a tensor of shape {entry.shape}",
            got=type(mask).__name__,
        )
    check_dense_mask(mask, "mask", "validate", convention)
    if num_heads is not None:
        num_heads = check_int(num_heads, "num_heads", "validate", minimum=1)
    query_tokens = check_int(query_tokens, "query_tokens", "validate", minimum=0)
    if point_mask is not None:
        check_point_mask(point_mask, "validate")
        check_has_values(point_mask, "point_mask", "validate", "point_mask")
        if mask.device != point_mask.device:
            raise MaskConventionError(
                "mask and point_mask are on different devices",
                convention=convention,
                expected=f"device {point_mask.device} (that of point_mask)",
                got=describe_tensor(mask),
                hint="move it with .to(point_mask.device)",
            )
    check_has_values(mask, "the mask", "validate", convention)
    fix = entry.advice(query_tokens, num_heads)
    CHECKS[convention](mask, _checks.Against(entry, point_mask, num_heads, query_tokens, fix))
