"""The mask mistakes lpim names, one name each, and the head-order tests that tell two apart.

Two tools name mistakes: [`diagnose`][lpim.masks.diagnose] reads a mask someone built against the
`point_mask` it was meant to encode, and the sanitizer ([`lpim.sanitize`][lpim.sanitizer]) reads
the tensors of a live attention call. Where both can see a mistake they call it by the same name,
the one users meet in the sanitizer's reports, with the same meaning: both read them here.
`lpim.masks.MISTAKES` (what `diagnose` names) and `lpim.sanitizer.KINDS` (what the sanitizer
finds) are views of `MEANINGS`.

Private to lpim and below both `lpim.masks` and `lpim.sanitizer`, so each may import it; it
imports nothing of lpim.
"""

from __future__ import annotations

import torch

__all__ = ["DIAGNOSED", "MEANINGS", "WATCHED", "heads_agree", "repeats_with_period"]

MEANINGS: dict[str, str] = {
    "inverted_polarity": "True and False (or 0 and 1) are swapped for this convention",
    "head_major_3d_mask": "a 3D attn_mask built with repeat(H, 1, 1) instead of "
    "repeat_interleave(H, 0): each head reads another sequence's mask; it runs without error",
    "missing_head_rows": "a 3D attn_mask with one row per sequence (batch entry, or lane: B*M) "
    "where nn.MultiheadAttention needs one per sequence and head (batch * num_heads rows)",
    "missing_query_column": "the mask covers the N points but not the query token(s) prepended "
    "to each lane",
    "shifted_query_column": "the query column is at the wrong end, so every point's mask is off "
    "by one slot",
    "masked_query_column": "the query token is masked: lanes see no query and empty lanes have "
    "no real key at all",
    "float_mask_as_additive": "a float mask holding only 0 and 1, which torch ADDS to the "
    "scores: +1 on some keys masks nothing",
    "finite_fill": "an additive mask blocking with a finite value (-10, -1e4, -1e9) instead of "
    "-inf; the sanitizer reports it where it does harm in the call: masked keys keep measurable "
    "attention weight (a leaky fill), or the fill overflows the dtype it is added in",
    "fully_masked_rows": "query rows with every key masked: this call gives NaN or 0 for them, "
    "other paths (need_weights=True, other backends) the other, and their gradient can be NaN",
    "nonfinite_output": "NaN or inf in an attention output at query rows that had a key to "
    "attend to",
    "disagrees_with_points": "the layout fits a convention but the values disagree with point_mask",
    "unrecognised": "no convention's shape and dtype fit (given intended=, the intended one's do "
    "not)",
}
"""Every mistake lpim names, with what it means."""

DIAGNOSED = (
    "inverted_polarity",
    "head_major_3d_mask",
    "missing_head_rows",
    "missing_query_column",
    "shifted_query_column",
    "masked_query_column",
    "float_mask_as_additive",
    "finite_fill",
    "disagrees_with_points",
    "unrecognised",
)
"""The mistakes [`diagnose`][lpim.masks.diagnose] names: a mask against its `point_mask`."""

WATCHED = (
    "missing_head_rows",
    "head_major_3d_mask",
    "float_mask_as_additive",
    "fully_masked_rows",
    "finite_fill",
    "nonfinite_output",
)
"""The mistakes the sanitizer finds: what one attention call's own tensors prove."""


def heads_agree(rows: torch.Tensor, batch: int, num_heads: int) -> bool:
    """True when each batch entry's `num_heads` rows are equal, read head-minor.

    `rows` is a 3D mask `(batch * num_heads, L, S)` (any dtype) read the way
    `nn.MultiheadAttention` reads it: row `n * num_heads + h` is entry `n`, head `h`. A padding
    mask built with `repeat_interleave(num_heads, 0)` has this property. The caller has checked
    that `rows` has `batch * num_heads` rows.
    """
    per_entry = rows.reshape(batch, num_heads, *rows.shape[1:])  # [batch, H, L, S]
    return torch.equal(per_entry, per_entry[:, :1].expand_as(per_entry))


def repeats_with_period(rows: torch.Tensor, batch: int, num_heads: int) -> bool:
    """True when row `r` of `(batch * num_heads, L, S)` equals row `r + batch`, for all `r`.

    That is the layout `per_entry_mask.repeat(num_heads, 1, 1)` builds (head-major,
    `head_major_3d_mask`): the `num_heads` blocks of `batch` rows are copies of each other. The
    caller has checked that `rows` has `batch * num_heads` rows.
    """
    blocks = rows.reshape(num_heads, batch, *rows.shape[1:])  # [H, batch, L, S]
    return torch.equal(blocks, blocks[:1].expand_as(blocks))
