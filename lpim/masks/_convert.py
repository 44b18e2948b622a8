"""Converters between lpim's `point_mask` and what each consumer takes, and back.

Every `to_*` takes `point_mask [B, M, N]` (bool, True = real point) and returns the mask in
the consumer's convention with samples and lanes flattened into `B*M` sequences of
`S = query_tokens + N` tokens, the query tokens first and never masked. Every `from_*` undoes
its `to_*` and refuses, with `MaskConventionError`, a mask whose information
does not fit a point mask (a masked query column, heads or rows that disagree).

The key fact behind two of them: `nn.MultiheadAttention` reads its 3D `attn_mask` as
`(B*M*H, L, S)` with row `b*H + h` (heads minor), so a per-lane mask must be expanded with
`repeat_interleave(H, 0)`; `repeat(H, 1, 1)` has the right shape, runs, and hands each head
another lane's mask.
"""

from __future__ import annotations

import torch

from lpim._validation import (
    allocating,
    check_allocatable,
    check_fill,
    check_floating_dtype,
    check_int,
)
from lpim.masks._errors import (
    MaskConventionError,
    check_dense_mask,
    check_has_values,
    check_point_mask,
    describe_tensor,
)

# -- the library mask, flattened to token sequences ---------------------------------------------


def keep_tokens(point_mask: torch.Tensor, query_tokens: int = 0) -> torch.Tensor:
    """`(B*M, q + N)` bool, True = real token, with `q` always-real query tokens in front.

    The common root of every converter: each one is this tensor in its consumer's dtype,
    polarity and layout.
    """
    check_point_mask(point_mask, "keep_tokens")
    query_tokens = check_int(query_tokens, "query_tokens", "keep_tokens", minimum=0)
    b, m, n = point_mask.shape
    per_lane = point_mask.reshape(b * m, n)  # [B*M, N]
    size = f"keep_tokens: the (B*M, query_tokens + N) = ({b * m}, {query_tokens + n}) mask"
    check_allocatable((b * m, query_tokens + n), size, "query_tokens")  # even on meta
    tensors = [((b * m, query_tokens), torch.bool), ((b * m, query_tokens + n), torch.bool)]
    with allocating(size, "query_tokens", tensors=tensors, device=point_mask.device):
        query = torch.ones(b * m, query_tokens, dtype=torch.bool, device=point_mask.device)
        return torch.cat([query, per_lane], dim=1)  # [B*M, S]


def _lanes_to_point_mask(
    keep: torch.Tensor, num_lanes: int, query_tokens: int, convention: str, inverse: str
) -> torch.Tensor:
    """Invert `keep_tokens`: `(B*M, q + N)` keep -> `[B, M, N]` point mask."""
    num_lanes = check_int(num_lanes, "num_lanes", inverse, minimum=1)
    query_tokens = check_int(query_tokens, "query_tokens", inverse, minimum=0)
    check_has_values(keep, "the mask", inverse, convention)
    rows, s = keep.shape
    if rows % num_lanes:
        raise MaskConventionError(
            f"{inverse}: cannot split {rows} rows into samples of num_lanes = {num_lanes}",
            convention=convention,
            expected=f"a row count that is a multiple of num_lanes = {num_lanes} (B*M rows)",
            got=f"{rows} rows",
        )
    if s < query_tokens:
        raise MaskConventionError(
            f"{inverse}: fewer columns than query tokens",
            convention=convention,
            expected=f"S = query_tokens + N >= {query_tokens} columns",
            got=f"{s} columns",
        )
    if not bool(keep[:, :query_tokens].all()):
        raise MaskConventionError(
            f"{inverse}: a query column is masked, so this is not a padding mask of real points",
            convention=convention,
            expected=f"the first {query_tokens} column(s) (query tokens) never masked",
            got=f"{int((~keep[:, :query_tokens]).sum())} masked query entries",
            hint="check query_tokens, or diagnose the mask with lpim.masks.diagnose",
        )
    shape = (rows // num_lanes, num_lanes, s - query_tokens)
    with allocating(
        f"{inverse}: the [B, M, N] = {list(shape)} point_mask",
        "num_lanes",
        tensors=[(shape, torch.bool)],
        device=keep.device,
    ):
        return keep[:, query_tokens:].reshape(shape)


# -- nn.MultiheadAttention ---------------------------------------------------------------------


def to_key_padding_mask(point_mask: torch.Tensor, query_tokens: int = 0) -> torch.Tensor:
    """MHA `key_padding_mask`: `(B*M, S)` bool, **True = ignore** this key.

    Args:
        point_mask: `[B, M, N]` bool, True = real point.
        query_tokens: tokens prepended to each lane (e.g. 1 learned query); never masked.

    Returns:
        `(B*M, query_tokens + N)` bool for `nn.MultiheadAttention(key_padding_mask=...)` or
        `nn.TransformerEncoder(src_key_padding_mask=...)`. This 2D mask is the right fix for
        the "shape of the 3D attn_mask" error: it has no head axis to get wrong.
    """
    return ~keep_tokens(point_mask, query_tokens)


def from_key_padding_mask(
    key_padding_mask: torch.Tensor, num_lanes: int, query_tokens: int = 0
) -> torch.Tensor:
    """Inverse of `to_key_padding_mask`: `(B*M, S)` True = ignore -> `[B, M, N]`."""
    _expect_dtype(key_padding_mask, torch.bool, "key_padding_mask", "from_key_padding_mask")
    _expect_rank(key_padding_mask, 2, "key_padding_mask", "from_key_padding_mask")
    return _lanes_to_point_mask(
        ~key_padding_mask, num_lanes, query_tokens, "key_padding_mask", "from_key_padding_mask"
    )


def to_attn_mask_3d(
    point_mask: torch.Tensor, num_heads: int, query_tokens: int = 0
) -> torch.Tensor:
    """MHA 3D `attn_mask`: `(B*M*num_heads, L, S)` bool, **True = blocked**.

    Row `b*num_heads + h` belongs to lane `b` (of the flattened `B*M`) and head `h`,
    the order `nn.MultiheadAttention` uses internally, hence `repeat_interleave`. Every query
    row `l` of a lane blocks the same keys, so this is equivalent to
    `to_key_padding_mask` but costs `B*M*H*L*S` elements: prefer the 2D mask unless you
    need per-query structure (causal, local).

    Args:
        point_mask: `[B, M, N]` bool, True = real point.
        num_heads: `H`, the attention module's `num_heads`.
        query_tokens: tokens prepended to each lane; never blocked.

    Returns:
        `(B*M*H, q + N, q + N)` bool. A lane with no real token (only possible with
        `query_tokens=0`) has fully blocked rows, which MHA turns into NaN or 0.
    """
    num_heads = check_int(num_heads, "num_heads", "to_attn_mask_3d", minimum=1)
    blocked = ~keep_tokens(point_mask, query_tokens)  # [B*M, S]
    lanes, s = blocked.shape
    size = f"to_attn_mask_3d: the (B*M*num_heads, L, S) = ({lanes * num_heads}, {s}, {s}) mask"
    with allocating(
        size,
        "num_heads or query_tokens",
        tensors=[((lanes * num_heads, s, s), torch.bool)],
        device=blocked.device,
    ):
        # The copy `reshape` makes of the expanded view is the only allocation (unlike
        # `repeat_interleave`, which also builds a B*M*H index); its rows are in
        # `repeat_interleave(num_heads, 0)` order.
        per_head = blocked[:, None, None, :].expand(-1, num_heads, s, -1)  # [B*M, H, L, S]
        return per_head.reshape(lanes * num_heads, s, s)  # [B*M*H, L, S]


def from_attn_mask_3d(
    attn_mask: torch.Tensor, num_heads: int, num_lanes: int, query_tokens: int = 0
) -> torch.Tensor:
    """Inverse of `to_attn_mask_3d`; refuses masks whose heads or query rows disagree."""
    _expect_dtype(attn_mask, torch.bool, "attn_mask_3d", "from_attn_mask_3d")
    _expect_rank(attn_mask, 3, "attn_mask_3d", "from_attn_mask_3d")
    num_heads = check_int(num_heads, "num_heads", "from_attn_mask_3d", minimum=1)
    check_has_values(attn_mask, "attn_mask", "from_attn_mask_3d", "attn_mask_3d")
    rows, length, s = attn_mask.shape
    if length == 0 and rows:
        raise MaskConventionError(
            "from_attn_mask_3d: the mask has no query row (L = 0) to read each lane's keys from",
            convention="attn_mask_3d",
            expected="(B*M*num_heads, L, S) with L = S >= 1 query rows",
            got=describe_tensor(attn_mask),
        )
    if rows % num_heads:
        raise MaskConventionError(
            f"from_attn_mask_3d: {rows} rows is not a multiple of num_heads = {num_heads}",
            convention="attn_mask_3d",
            expected="B*M*num_heads rows",
            got=describe_tensor(attn_mask),
        )
    per_head = attn_mask.reshape(rows // num_heads, num_heads, length, s)  # [B*M, H, L, S]
    first = per_head[:, :1, :1, :]  # [B*M, 1, 1, S]
    if not torch.equal(per_head, first.expand_as(per_head)):
        raise MaskConventionError(
            "from_attn_mask_3d: heads or query rows of one lane block different keys, so the mask "
            "is not a padding mask (or its rows are head-major: built with repeat instead of "
            "repeat_interleave)",
            convention="attn_mask_3d",
            expected="every head and every query row of a lane equal",
            got=describe_tensor(attn_mask),
            hint="lpim.masks.diagnose(mask, point_mask, num_heads) names the mistake",
        )
    return _lanes_to_point_mask(
        ~first[:, 0, 0, :], num_lanes, query_tokens, "attn_mask_3d", "from_attn_mask_3d"
    )


# -- F.scaled_dot_product_attention ------------------------------------------------------------


def to_sdpa_mask(point_mask: torch.Tensor, query_tokens: int = 0) -> torch.Tensor:
    """SDPA boolean `attn_mask`: `(B*M, 1, 1, S)` bool, **True = attend** (MHA's opposite).

    Broadcasts against `(B*M, H, L, S)` scores in `F.scaled_dot_product_attention`.
    """
    return keep_tokens(point_mask, query_tokens)[:, None, None, :]  # [B*M, 1, 1, S]


def from_sdpa_mask(sdpa_mask: torch.Tensor, num_lanes: int, query_tokens: int = 0) -> torch.Tensor:
    """Inverse of `to_sdpa_mask`: `(B*M, 1, 1, S)` True = attend -> `[B, M, N]`."""
    _expect_dtype(sdpa_mask, torch.bool, "sdpa", "from_sdpa_mask")
    _expect_rank(sdpa_mask, 4, "sdpa", "from_sdpa_mask")
    check_has_values(sdpa_mask, "sdpa_mask", "from_sdpa_mask", "sdpa")
    return _lanes_to_point_mask(
        single_row(sdpa_mask, "sdpa", "from_sdpa_mask"),
        num_lanes,
        query_tokens,
        "sdpa",
        "from_sdpa_mask",
    )


def to_additive_mask(
    point_mask: torch.Tensor, dtype: torch.dtype = torch.float32, query_tokens: int = 0
) -> torch.Tensor:
    """Additive float mask: `(B*M, 1, 1, S)` of `dtype`, **0 = keep, -inf = block**.

    Added to the attention scores by SDPA and MHA. `-inf` rather than a large negative number:
    `-1e9` overflows float16 and `-1e4` lets huge scores through.
    """
    check_floating_dtype(dtype)
    keep = keep_tokens(point_mask, query_tokens)[:, None, None, :]  # [B*M, 1, 1, S]
    zeros = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return zeros.masked_fill(~keep, float("-inf"))


def from_additive_mask(
    additive_mask: torch.Tensor, num_lanes: int, query_tokens: int = 0
) -> torch.Tensor:
    """Inverse of `to_additive_mask`; refuses values other than 0 and -inf."""
    _expect_rank(additive_mask, 4, "additive", "from_additive_mask")
    if not additive_mask.is_floating_point():
        raise MaskConventionError(
            "from_additive_mask: an additive mask is floating",
            convention="additive",
            expected="a floating tensor of 0 (keep) and -inf (block)",
            got=describe_tensor(additive_mask),
        )
    check_has_values(additive_mask, "additive_mask", "from_additive_mask", "additive")
    neg_inf = additive_mask == float("-inf")
    if not bool((neg_inf | (additive_mask == 0)).all()):
        raise MaskConventionError(
            "from_additive_mask: values other than 0 and -inf cannot be read as a padding mask",
            convention="additive",
            expected="0 (keep) or -inf (block) only",
            got=f"values {torch.unique(additive_mask)[:6].tolist()}",
            hint="lpim.masks.diagnose names a 0/1 mask or a finite fill such as -1e4",
        )
    keep = single_row(~neg_inf, "additive", "from_additive_mask")
    return _lanes_to_point_mask(keep, num_lanes, query_tokens, "additive", "from_additive_mask")


# -- flash-attn / Hugging Face -----------------------------------------------------------------


def to_attention_mask(point_mask: torch.Tensor, query_tokens: int = 0) -> torch.Tensor:
    """BERT / flash-attn `attention_mask`: `(B*M, S)` int64, **1 = valid** token."""
    return keep_tokens(point_mask, query_tokens).long()


def check_zero_one(attention_mask: torch.Tensor, where: str, hint: str = "") -> None:
    """The values rule of the `attention_mask` convention, for the converter and the validator:
    integer (or bool) 0 = pad, 1 = valid, nothing else.

    Raises:
        MaskConventionError: a floating mask, or a value other than 0 and 1.
    """
    if attention_mask.is_floating_point() or not bool(
        ((attention_mask == 0) | (attention_mask == 1)).all()
    ):
        raise MaskConventionError(
            f"{where}an attention_mask holds integer 0 (pad) and 1 (valid) only",
            convention="attention_mask",
            expected="int64 (or bool) values in {0, 1}",
            got=describe_tensor(attention_mask),
            hint=hint,
        )


def _is_integer(tensor: torch.Tensor) -> bool:
    """An integer dtype, as counts and offsets need: not floating, complex or bool."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def check_integer_lengths(lengths: torch.Tensor, where: str, hint: str = "") -> None:
    """The dtype rule of the `lengths` convention, for the converter and the validator: an
    integer tensor (not floating, complex or bool).

    Raises:
        MaskConventionError: lengths of another dtype.
    """
    if not _is_integer(lengths):
        raise MaskConventionError(
            f"{where}lengths are integers",
            convention="lengths",
            expected="an integer (B*M,) tensor",
            got=describe_tensor(lengths),
            hint=hint,
        )


def check_offsets(cu_seqlens: torch.Tensor, where: str, hint: str = "") -> None:
    """The rule of the `cu_seqlens` convention's values, for the converter and the validator:
    offsets start at 0 and never decrease (one more offset than lanes).

    Raises:
        MaskConventionError: an empty tensor, a first offset other than 0, or a decrease.
    """
    if cu_seqlens.numel() == 0 or int(cu_seqlens[0]) != 0 or bool((cu_seqlens.diff() < 0).any()):
        raise MaskConventionError(
            f"{where}cu_seqlens offsets start at 0 and never decrease",
            convention="cu_seqlens",
            expected="(B*M + 1,) integer offsets, cu_seqlens[0] == 0, non-decreasing",
            got=f"{describe_tensor(cu_seqlens)}: {cu_seqlens.tolist()[:8]}",
            hint=hint,
        )


def from_attention_mask(
    attention_mask: torch.Tensor, num_lanes: int, query_tokens: int = 0
) -> torch.Tensor:
    """Inverse of `to_attention_mask`; accepts int or bool 0/1."""
    _expect_rank(attention_mask, 2, "attention_mask", "from_attention_mask")
    check_has_values(attention_mask, "attention_mask", "from_attention_mask", "attention_mask")
    check_zero_one(attention_mask, "from_attention_mask: ")
    return _lanes_to_point_mask(
        attention_mask.bool(), num_lanes, query_tokens, "attention_mask", "from_attention_mask"
    )


def to_lengths(point_mask: torch.Tensor, query_tokens: int = 0) -> torch.Tensor:
    """`(B*M,)` int64 count of real tokens per lane: **right padding only**.

    A length says "the first n slots are real", which is false under left or scattered padding,
    so those layouts are refused rather than converted into a silently wrong answer. Use
    `to_cu_seqlens` with `pack` for any layout.
    """
    keep = keep_tokens(point_mask, query_tokens)  # [B*M, S]
    check_has_values(point_mask, "point_mask", "to_lengths", "lengths")
    lengths = keep.sum(dim=1)  # [B*M]
    if keep.numel() == 0:  # no lane, or no token: nothing is out of place
        return lengths
    slot = torch.arange(keep.shape[1], device=keep.device)
    right_aligned = keep == (slot < lengths[:, None])
    if not bool(right_aligned.all()):
        lane = int((~right_aligned.all(dim=1)).nonzero()[0])
        raise MaskConventionError(
            "to_lengths: lengths can only describe right padding (real points first)",
            convention="lengths",
            expected="every lane's real points in slots 0..n-1",
            got=f"lane {lane} (of the flattened B*M) has real points after a padded slot",
            hint="pack the real points with lpim.masks.pack and describe them with "
            "lpim.masks.to_cu_seqlens, which work for any layout",
        )
    return lengths


def from_lengths(
    lengths: torch.Tensor, num_lanes: int, num_points: int, query_tokens: int = 0
) -> torch.Tensor:
    """Inverse of `to_lengths`: `(B*M,)` counts -> right-padded `[B, M, N]`."""
    _expect_rank(lengths, 1, "lengths", "from_lengths")
    check_integer_lengths(lengths, "from_lengths: ")
    return _right_padded(lengths, num_lanes, num_points, query_tokens, "lengths", "from_lengths")


def _right_padded(
    lengths: torch.Tensor,
    num_lanes: int,
    num_points: int,
    query_tokens: int,
    convention: str,
    inverse: str,
) -> torch.Tensor:
    """`(B*M,)` integer token counts -> a right-padded `[B, M, N]` point mask; errors name
    `inverse`, the door the user called, and `convention`, the form the counts came in."""
    num_points = check_int(num_points, "num_points", inverse, minimum=0)
    query_tokens = check_int(query_tokens, "query_tokens", inverse, minimum=0)
    check_has_values(lengths, convention, inverse, convention)
    s = num_points + query_tokens
    size = f"{inverse}: the (B*M, query_tokens + N) = ({lengths.numel()}, {s}) mask"
    check_allocatable((lengths.numel(), s), size, "num_points or query_tokens")
    if bool(((lengths < query_tokens) | (lengths > s)).any()):
        counts = "a length" if convention == "lengths" else "a lane's span (cu_seqlens diff)"
        raise MaskConventionError(
            f"{inverse}: {counts} is out of range",
            convention=convention,
            expected=f"query_tokens = {query_tokens} <= length <= query_tokens + N = {s}",
            got=f"min {int(lengths.min())}, max {int(lengths.max())}",
        )
    with allocating(
        size,
        "num_points or query_tokens",
        tensors=[((s,), torch.int64), ((lengths.numel(), s), torch.bool)],
        device=lengths.device,
    ):
        keep = torch.arange(s, device=lengths.device) < lengths[:, None]  # [B*M, S]
    return _lanes_to_point_mask(keep, num_lanes, query_tokens, convention, inverse)


def to_cu_seqlens(point_mask: torch.Tensor, query_tokens: int = 0) -> tuple[torch.Tensor, int]:
    """flash-attn varlen offsets: `cu_seqlens (B*M + 1,)` int32 and `max_seqlen`.

    Lane `i`'s tokens are `packed[cu_seqlens[i]:cu_seqlens[i + 1]]`. With
    `query_tokens=0` they index the output of `pack` for any padding layout; with query
    tokens, each lane's span includes its `q` query tokens, which the caller packs in front of
    the lane's points. Empty lanes have empty spans.
    """
    lengths = keep_tokens(point_mask, query_tokens).sum(dim=1)  # [B*M]
    check_has_values(point_mask, "point_mask", "to_cu_seqlens", "cu_seqlens")
    cu_seqlens = torch.zeros(lengths.numel() + 1, dtype=torch.int32, device=lengths.device)
    cu_seqlens[1:] = lengths.cumsum(0)
    max_seqlen = int(lengths.max()) if lengths.numel() else 0
    return cu_seqlens, max_seqlen


def from_cu_seqlens(
    cu_seqlens: torch.Tensor, num_lanes: int, num_points: int, query_tokens: int = 0
) -> torch.Tensor:
    """`cu_seqlens` -> a right-padded `[B, M, N]` point mask (offsets carry no layout)."""
    _expect_rank(cu_seqlens, 1, "cu_seqlens", "from_cu_seqlens")
    if not _is_integer(cu_seqlens):
        raise MaskConventionError(
            "from_cu_seqlens: offsets are integers",
            convention="cu_seqlens",
            expected="an integer (B*M + 1,) tensor (int32 for flash-attn)",
            got=describe_tensor(cu_seqlens),
        )
    check_has_values(cu_seqlens, "cu_seqlens", "from_cu_seqlens", "cu_seqlens")
    check_offsets(cu_seqlens, "from_cu_seqlens: ")
    lengths = cu_seqlens.diff().long()  # [B*M]
    return _right_padded(
        lengths, num_lanes, num_points, query_tokens, "cu_seqlens", "from_cu_seqlens"
    )


# -- packing -----------------------------------------------------------------------------------


def pack(points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
    """Gather real points into `[T, D]`, `T` = number of real points, in (b, m, n) order.

    The inverse is `unpack`; `to_cu_seqlens` gives each lane's span. Padded slots
    are never read, so their content (NaN included) cannot leak.
    """
    _check_points(points, point_mask, "pack")
    return points[point_mask]  # [T, D]


def unpack(packed: torch.Tensor, point_mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Scatter `packed [T, C]` back to `[B, M, N, C]`; padded slots hold `fill`."""
    check_point_mask(point_mask, "unpack")
    if not isinstance(packed, torch.Tensor):
        raise MaskConventionError(
            "unpack: packed must be a tensor",
            convention="cu_seqlens",
            expected="a [T, C] tensor with T = point_mask.sum()",
            got=type(packed).__name__,
        )
    check_dense_mask(packed, "packed", "unpack", "cu_seqlens")
    check_has_values(point_mask, "point_mask", "unpack", "point_mask")
    if packed.device != point_mask.device:
        raise MaskConventionError(
            "unpack: packed and point_mask on different devices",
            convention="point_mask",
            expected=f"packed on {point_mask.device} (that of point_mask)",
            got=describe_tensor(packed),
        )
    real = int(point_mask.sum())
    if packed.dim() != 2 or packed.shape[0] != real:
        raise MaskConventionError(
            "unpack: packed must have one row per real point of point_mask",
            convention="cu_seqlens",
            expected=f"a [T, C] tensor with T = point_mask.sum() = {real}",
            got=describe_tensor(packed),
        )
    fill = check_fill(fill, packed.dtype, "fill", "unpack")
    out = packed.new_full((*point_mask.shape, packed.shape[1]), fill)  # [B, M, N, C]
    out[point_mask] = packed
    return out


def to_nested(points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
    """A jagged nested tensor `(B*M, j, D)` holding each lane's real points and nothing else.

    Components keep slot order; empty lanes are zero-length components. Nested tensors carry
    no mask: `F.scaled_dot_product_attention` on them rejects `attn_mask` altogether.
    """
    packed = pack(points, point_mask)  # [T, D]
    cu_seqlens, _ = to_cu_seqlens(point_mask)
    return torch.nested.nested_tensor_from_jagged(packed, cu_seqlens.long())


# -- shared checks -----------------------------------------------------------------------------


def _check_points(points: torch.Tensor, point_mask: torch.Tensor, where: str) -> None:
    check_point_mask(point_mask, where)
    check_dense_mask(points, "points", where, "point_mask")
    if (
        not isinstance(points, torch.Tensor)
        or points.dim() != 4
        or points.shape[:-1] != point_mask.shape
    ):
        got = describe_tensor(points) if isinstance(points, torch.Tensor) else type(points).__name__
        raise MaskConventionError(
            f"{where}: points must be [B, M, N, D] matching point_mask [B, M, N]",
            convention="point_mask",
            expected=f"points of shape ({', '.join(map(str, point_mask.shape))}, D)",
            got=got,
        )
    if points.device != point_mask.device:
        raise MaskConventionError(
            f"{where}: points and point_mask on different devices",
            convention="point_mask",
            expected=f"points on {point_mask.device}",
            got=describe_tensor(points),
        )
    check_has_values(point_mask, "point_mask", where, "point_mask")


_ARGUMENT = {"attn_mask_3d": "attn_mask", "sdpa": "sdpa_mask", "additive": "additive_mask"}
"""The argument name of each `from_*` mask whose convention has another name."""


def _expect_dtype(tensor: torch.Tensor, dtype: torch.dtype, convention: str, where: str) -> None:
    check_dense_mask(tensor, _ARGUMENT.get(convention, convention), where, convention)
    if not isinstance(tensor, torch.Tensor) or tensor.dtype != dtype:
        got = describe_tensor(tensor) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise MaskConventionError(
            f"{where}: wrong dtype", convention=convention, expected=str(dtype), got=got
        )


def _expect_rank(tensor: torch.Tensor, rank: int, convention: str, where: str) -> None:
    check_dense_mask(tensor, _ARGUMENT.get(convention, convention), where, convention)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != rank:
        got = describe_tensor(tensor) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise MaskConventionError(
            f"{where}: wrong rank", convention=convention, expected=f"a {rank}-D tensor", got=got
        )


def broadcasts(shape: tuple[int, ...] | torch.Size, num_heads: int | None) -> bool:
    """The head and row rule of a 4-D per-lane mask `(B*M, heads, rows, S)`, for the
    converters, `validate` and `diagnose`: `heads` is 1 or `num_heads` (any count from 1 when
    it is not known), `rows` is 1 or `S` (a lane's tokens attend over themselves: L = S), and
    there is a row wherever there is a lane to read. SDPA broadcasts such a mask to
    `(B*M, H, L, S)`; it refuses any other once a lane is there."""
    lanes, heads, rows, width = shape
    heads_fit = heads == 1 or heads == num_heads or (num_heads is None and heads > 1)
    return heads_fit and rows in (1, width) and (rows >= 1 or lanes == 0)


def broadcast_shape(lanes: int | str, width: int | str, num_heads: int | None) -> str:
    """The shapes `broadcasts` accepts, as the `expected:` line shows them."""
    heads = "1 or H" if num_heads is None else ("1" if num_heads == 1 else f"1 or {num_heads}")
    return f"shape ({lanes}, {heads}, 1 or {width}, {width})"


def not_broadcasting(
    mask4d: torch.Tensor, convention: str, expected: str, where: str = "", hint: str = ""
) -> MaskConventionError:
    """The one wording of "this 4-D mask does not broadcast to `(B*M, H, L, S)`"."""
    return MaskConventionError(
        f"{where}the {convention} mask does not broadcast to (B*M, H, L, S)",
        convention=convention,
        expected=expected,
        got=describe_tensor(mask4d),
        hint=hint,
    )


def single_row(
    mask4d: torch.Tensor, convention: str, where: str = "", num_heads: int | None = None
) -> torch.Tensor:
    """`(B*M, 1|H, 1|S, S)` whose heads and rows agree -> `(B*M, S)`: the one reading of a 4-D
    per-lane mask, for the converters (`where` names the caller) and the validator.

    Raises:
        MaskConventionError: a shape `broadcasts` refuses (no head, a head count other than 1
            or `num_heads`, rows other than 1 or S), or heads or rows of a lane that differ (a
            padding mask treats them alike; comparing one slice would hide it).
    """
    prefix = f"{where}: " if where else ""
    lanes, width = mask4d.shape[0], mask4d.shape[3]
    if not broadcasts(mask4d.shape, num_heads):
        expected = broadcast_shape("B*M", "S", num_heads) + f" with S = {width} columns"
        raise not_broadcasting(mask4d, convention, expected, prefix)
    if lanes == 0:  # no lane: nothing to read
        return mask4d.new_empty((0, width))
    first = mask4d[:, :1, :1, :]
    if not torch.equal(mask4d, first.expand_as(mask4d)):
        differ = (mask4d != first).any(dim=(1, 2, 3)).nonzero()[0].item()
        raise MaskConventionError(
            f"{prefix}heads or query rows of one lane disagree: not a padding mask",
            convention=convention,
            expected="one row per lane, broadcast over heads and query rows",
            got=f"{describe_tensor(mask4d)}; lane {differ} differs between heads or rows",
        )
    return first[:, 0, 0, :]
