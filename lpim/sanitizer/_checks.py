"""What one attention call's own tensors prove about its masks: the six finding kinds.

Pure functions of the tensors of one call; no hooks, no state. Two conventions:

- MHA (`nn.MultiheadAttention`, `F.multi_head_attention_forward`,
  `nn.TransformerEncoderLayer`, `nn.TransformerEncoder`): `attn_mask` `(L, S)` or
  `(N*H, L, S)` with row `n*H + h`, `key_padding_mask` `(N, S)`; bool True = blocked,
  a float mask is added to the scores.
- SDPA (`F.scaled_dot_product_attention`): `attn_mask` broadcastable to `(N, H, L, S)`;
  bool True = **attend**, a float mask is added.

A finding is made only where these tensors prove it. Inverted polarity, a shifted query column
or a mask that disagrees with the points are wrong only relative to the points, which the call
does not see: `lpim.testing.check_encoder` finds those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lpim._mistakes import MEANINGS, WATCHED, heads_agree, repeats_with_period
from lpim.masks import CONVENTIONS

KINDS: dict[str, str] = {kind: MEANINGS[kind] for kind in WATCHED}
"""Every finding kind, with what it means (named as `lpim.masks.diagnose` names them)."""

# A float mask value whose exp() is exactly 0 in float32 blocks its key like -inf does (for
# scores of order 1): exp(x) underflows float32's smallest subnormal (1.4e-45) below ~-103.3.
# Such a value in a two-valued {0, fill} mask is a blocking fill; a milder one is a bias.
_BLOCKING_BELOW = -103.3


class Hazard:
    """One finding of one call, before it is tied to a site: `kind` and the advice text.

    `detail` may be given as a function, called only when the text is read: the sanitizer
    reads it once per site and kind, and some texts count over a whole mask.
    """

    def __init__(self, kind: str, detail: str | Callable[[], str]) -> None:
        self.kind = kind
        self._detail = detail

    @property
    def detail(self) -> str:
        if callable(self._detail):
            self._detail = self._detail()
        return self._detail

    def __repr__(self) -> str:
        return f"Hazard({self.kind!r})"


@dataclass
class Inspection:
    """What `inspect_mha` / `inspect_sdpa` found before the call runs.

    `blocked_parts` (bool, True = blocked, each broadcastable to the call's `(..., L, S)`)
    are kept so that `fully_masked` can be computed only when an output row is not finite:
    reading a large 3D mask in full at every call would cost more than the call.
    """

    hazards: list[Hazard] = field(default_factory=list)
    check_output: bool = True
    query_tokens: int | None = None
    num_heads: int | None = None
    blocked_parts: list[Tensor] = field(default_factory=list)
    head_axis: int | None = None  # MHA merges heads: a row is lost if any head has no key

    def fully_masked(self) -> Tensor | None:
        """Bool, broadcastable to the output's rows, True = no key left; None if no mask."""
        if not self.blocked_parts:
            return None
        blocked = self.blocked_parts[0]
        for part in self.blocked_parts[1:]:
            blocked = blocked | part
        if blocked.shape[-1] == 0:
            return None
        fully = blocked.all(dim=-1)  # broadcastable to (N, H, L) or the SDPA output's rows
        if self.head_axis is not None:
            fully = fully.any(dim=self.head_axis)  # (N, L), MHA's output rows
        return fully


@dataclass(frozen=True)
class _FloatMask:
    """How a float mask reads: `kind` is additive (0 / -inf), zero_one, finite_fill or bias."""

    kind: str
    fill: float | None = None


def _read_float(mask: Tensor) -> _FloatMask:
    """Classify a float mask by its values without sorting them (masks can be large)."""
    is_zero = mask == 0
    is_neg_inf = torch.isneginf(mask)
    other = mask[~(is_zero | is_neg_inf)]  # values that are neither 0 nor -inf
    if other.numel() == 0:
        return _FloatMask("additive")
    low, high = float(other.min()), float(other.max())
    if low != high:
        return _FloatMask("bias")  # several values: a learned or positional bias, not a mask
    if low == 1.0 and not bool(is_neg_inf.any()):
        return _FloatMask("zero_one")
    if low < _BLOCKING_BELOW and low != float("-inf"):
        return _FloatMask("finite_fill", low)
    return _FloatMask("bias")


def _blocked(
    mask: Tensor, reading: _FloatMask | None, true_blocks: bool, *, intended: bool = False
) -> Tensor:
    """Bool tensor, True where `mask` blocks a key (bool polarity per convention).

    With `intended`, a 0/1 float mask is read as the bool mask its author meant (1 = blocked
    in MHA's convention, 1 = attend in SDPA's), to name the right query tokens in the advice;
    otherwise as what torch does with it, which blocks nothing.
    """
    if reading is None:
        return mask if true_blocks else ~mask
    if intended and reading.kind == "zero_one":
        return (mask == 1) if true_blocks else (mask == 0)
    blocked = torch.isneginf(mask)
    if reading.kind == "finite_fill":
        blocked = blocked | (mask == reading.fill)
    return blocked


def infer_query_tokens(blocked_rows: Tensor) -> int | None:
    """Leading key columns that no row blocks, when a row proves it (an empty lane), else None.

    `blocked_rows` is `(R, S)` bool, True = blocked. A lane with no real point keeps only
    its query tokens: if some row keeps exactly the leading never-blocked columns, that count
    is the number of query tokens prepended to each lane.
    """
    if blocked_rows.dim() != 2 or blocked_rows.numel() == 0:
        return None
    kept_everywhere = ~blocked_rows.any(dim=0)  # [S]
    lead = int(torch.cumprod(kept_everywhere.int(), dim=0).sum())
    if lead == blocked_rows.shape[1]:
        return None
    keeps_lead_only = (~blocked_rows[:, lead:]).any(dim=1).logical_not()  # [R]
    return lead if bool(keeps_lead_only.any()) else None


def _converter_call(convention: str, query_tokens: int | str, num_heads: int | None) -> str:
    """The lpim call that builds `convention`, as advice text (`"Q"` where unknown)."""
    return CONVENTIONS[convention].call(query_tokens, num_heads)


def _q(query_tokens: int | None) -> int | str:
    return query_tokens if query_tokens is not None else "Q"


def _q_note(query_tokens: int | None) -> str:
    if query_tokens is not None:
        return ""
    return " (Q = the tokens you prepend to each lane, 0 if none)"


def _float_hazards(
    mask: Tensor, reading: _FloatMask, name: str, api: str, sdpa: bool, q: int | None
) -> list[Hazard]:
    where = f"{api}'s float {name} {tuple(mask.shape)} ({mask.dtype})"
    if sdpa:
        fix_bool = (
            f"a bool mask with True = attend, {_converter_call('sdpa', _q(q), None)}, or an "
            f"additive 0 / -inf mask, {_converter_call('additive', _q(q), None)}"
        )
    else:
        fix_bool = (
            f"a bool key_padding_mask with True = ignore, "
            f"{_converter_call('key_padding_mask', _q(q), None)} (point_mask [B, M, N] bool, "
            "True = real point)"
        )
    if reading.kind == "zero_one":
        return [
            Hazard(
                "float_mask_as_additive",
                f"{where} holds only 0.0 and 1.0. torch adds a float mask to the attention "
                f"scores, so the 1.0 entries get +1 and nothing is masked. Fix: pass {fix_bool}"
                f"{_q_note(q)}; if 1 marks padding, {name}.bool()"
                + (" gives MHA's polarity (True = ignore)." if not sdpa else " then ~ it."),
            )
        ]
    if reading.kind == "finite_fill":
        assert reading.fill is not None
        return [
            Hazard(
                "finite_fill",
                f"{where} blocks keys with {reading.fill:g}, a finite value, not -inf: a key whose "
                f"score is within ~{abs(reading.fill):g} of the others still gets weight, a row "
                "with every key blocked averages the blocked values instead of failing, and "
                f"{reading.fill:g} does not fit float16 (max 65504). Fix: pass {fix_bool}"
                f"{_q_note(q)}; or fill with float('-inf') in the scores' dtype.",
            )
        ]
    return []


def inspect_mha(
    api: str,
    query: Tensor,
    key: Tensor,
    attn_mask: object,
    key_padding_mask: object,
    num_heads: int,
    batch_first: bool,
    *,
    attn_mask_name: str = "attn_mask",
    key_padding_mask_name: str = "key_padding_mask",
) -> Inspection:
    """Check the masks of one `nn.MultiheadAttention`-convention call before it runs.

    Args:
        api: what was called, for the message (`"nn.MultiheadAttention"`, ...).
        query: `(N, L, E)` if `batch_first` else `(L, N, E)`; `(L, E)` unbatched.
        key: `(N, S, E)` / `(S, N, E)` / `(S, E)` like `query`.
        attn_mask: `(L, S)` or `(N*num_heads, L, S)`, row `n*num_heads + h`; bool True =
            blocked, float added to the scores; or None.
        key_padding_mask: `(N, S)` (`(S,)` unbatched); bool True = ignore, float added; or
            None.
        num_heads: `H` of the module.
        batch_first: the module's layout.
    """
    found = Inspection(num_heads=num_heads)
    if not isinstance(query, Tensor) or not isinstance(key, Tensor) or query.is_nested:
        found.check_output = False
        return found
    batched = query.dim() == 3
    if batched:
        n = query.shape[0] if batch_first else query.shape[1]
        length = query.shape[1] if batch_first else query.shape[0]
        s = key.shape[1] if batch_first else key.shape[0]
    else:
        n, length, s = 1, query.shape[0], key.shape[0]
    h = num_heads
    masks = [
        (m, name)
        for m, name in ((attn_mask, attn_mask_name), (key_padding_mask, key_padding_mask_name))
        if isinstance(m, Tensor) and not m.is_nested
    ]
    readings = {name: (_read_float(m) if m.is_floating_point() else None) for m, name in masks}

    blocked_parts: list[Tensor] = []  # each broadcastable to (N, H, L, S)
    kpm_rows: Tensor | None = None  # (N, S) blocked, to infer query tokens
    if isinstance(key_padding_mask, Tensor) and key_padding_mask.shape[-1:] == (s,):
        reading = readings[key_padding_mask_name]
        kpm_blocked = _blocked(key_padding_mask, reading, true_blocks=True)
        meant = _blocked(key_padding_mask, reading, true_blocks=True, intended=True)
        if kpm_blocked.dim() == 2 and kpm_blocked.shape[0] == n:
            kpm_rows = meant
            blocked_parts.append(kpm_blocked[:, None, None, :])
        elif kpm_blocked.dim() == 1:
            kpm_rows = meant[None]
            blocked_parts.append(kpm_blocked[None, None, None, :])

    if (
        isinstance(attn_mask, Tensor)
        and attn_mask.dim() == 3
        and attn_mask.shape[1:]
        == (
            length,
            s,
        )
    ):
        rows = attn_mask.shape[0]
        blocked_3d = _blocked(attn_mask, readings[attn_mask_name], true_blocks=True)
        meant_3d = _blocked(attn_mask, readings[attn_mask_name], True, intended=True)
        q = infer_query_tokens(kpm_rows if kpm_rows is not None else meant_3d[:, 0])
        found.query_tokens = q
        if batched and rows == n and h > 1:
            found.hazards.append(_missing_head_rows(api, attn_mask, attn_mask_name, n, h, q))
            found.check_output = False  # torch raises on it
            return found
        if rows == (n * h if batched else h):
            if (
                batched
                and h > 1
                and n > 1
                and repeats_with_period(attn_mask, n, h)
                and not heads_agree(attn_mask, n, h)
                # a per-head mask shared by every batch entry (each entry's H rows the same as
                # the next entry's) has period N whenever H divides N: that is not a bug
                and not _shared_by_entries(attn_mask, n, h)
            ):
                found.hazards.append(_head_major(api, attn_mask, attn_mask_name, n, h, q))
            blocked_parts.append(blocked_3d.reshape(n, h, length, s))
    elif isinstance(attn_mask, Tensor) and attn_mask.shape == (length, s):
        blocked_parts.append(
            _blocked(attn_mask, readings[attn_mask_name], true_blocks=True)[None, None]
        )
    if found.query_tokens is None and kpm_rows is not None:
        found.query_tokens = infer_query_tokens(kpm_rows)

    for m, name in masks:
        reading = readings[name]
        if reading is not None:
            found.hazards += _float_hazards(m, reading, name, api, False, found.query_tokens)

    # MHA merges heads in out_proj: a query row is lost if any of its heads has no key
    _fully_masked(found, blocked_parts, readings, api, head_axis=1)
    return found


def _fully_masked(
    found: Inspection,
    blocked_parts: list[Tensor],
    readings: dict[str, _FloatMask | None],
    api: str,
    head_axis: int | None = None,
) -> None:
    """Keep the blocked parts; with a finite fill, fully blocked rows are a finding already."""
    found.blocked_parts, found.head_axis = blocked_parts, head_axis
    fills = [r.fill for r in readings.values() if r is not None and r.kind == "finite_fill"]
    if not fills:
        return  # -inf / bool: fully masked rows are judged by the output (NaN or not)
    fully = found.fully_masked()
    if fully is None or not bool(fully.any()):
        return
    found.hazards.append(
        Hazard(
            "fully_masked_rows",
            f"{int(fully.sum())} query row(s) of {api} have every key blocked, by a finite fill "
            f"({fills[0]:g}): softmax gives each blocked key the same weight, so these rows "
            "are the mean of the values they were meant not to see (an arbitrary, finite "
            "number; NaN once the fill overflows to -inf in float16). "
            + _fully_masked_fix(found.query_tokens),
        )
    )


def _fully_masked_fix(q: int | None) -> str:
    return (
        "Fix: give every row a key that is always real (prepend a query token and build the mask "
        f"with {_converter_call('key_padding_mask', q if q else 1, None)}), or leave empty lanes "
        "out of attention (as lpim.PriorEncoder does) and set their outputs by selection, "
        "torch.where(lane_mask[..., None], out, 0). Dropping the NaN rows afterwards is not "
        "enough: their gradient is NaN as well."
    )


def _shared_by_entries(attn_mask: Tensor, n: int, h: int) -> bool:
    """True when every batch entry has the same `h` rows (a per-head mask, no per-entry part)."""
    per_entry = attn_mask.reshape(n, h, *attn_mask.shape[1:])  # [N, H, L, S], rows n*H + h
    return torch.equal(per_entry, per_entry[:1].expand_as(per_entry))


def _missing_head_rows(
    api: str, attn_mask: Tensor, name: str, n: int, h: int, q: int | None
) -> Hazard:
    return Hazard(
        "missing_head_rows",
        f"{api} got a 3D {name} of shape {tuple(attn_mask.shape)}: {n} rows, one per batch "
        f"entry (N = {n}), but with num_heads = {h} it needs N*num_heads = {n}*{h} = {n * h} "
        f"rows, row n*{h} + h for entry n, head h. torch raises RuntimeError on it. Fix: pass "
        f"a 2D key_padding_mask instead, {_converter_call('key_padding_mask', _q(q), h)} ((N, S) "
        "bool, True = ignore; point_mask [B, M, N] bool, True = real point), or expand the mask "
        f"head-minor, {name}.repeat_interleave({h}, dim=0), which is "
        f"{_converter_call('attn_mask_3d', _q(q), h)}{_q_note(q)}. Not {name}.repeat({h}, 1, 1): "
        "that runs and is wrong (head_major_3d_mask).",
    )


def _head_major(api: str, attn_mask: Tensor, name: str, n: int, h: int, q: int | None) -> Hazard:
    def detail() -> str:
        per_entry = attn_mask.reshape(n, h, *attn_mask.shape[1:])  # read as torch: row n*H + h
        disagree = int((per_entry != per_entry[:, :1]).flatten(1).any(dim=1).sum())
        return (
            f"{api}'s 3D {name} {tuple(attn_mask.shape)} for N = {n} batch entries x "
            f"num_heads = {h} repeats with period N (row r equals row r + {n}): it was built "
            f"head-major, with repeat({h}, 1, 1). torch reads row n*{h} + h as entry n, head h, "
            f"so head h of entry n gets entry (n*{h} + h) % {n}'s mask: in {disagree} of {n} "
            "entries the heads disagree. It runs without error and is wrong. Fix: build it with "
            f"{name}_per_entry.repeat_interleave({h}, dim=0), i.e. "
            f"{_converter_call('attn_mask_3d', _q(q), h)}, or better pass a 2D key_padding_mask, "
            f"{_converter_call('key_padding_mask', _q(q), h)} ((N, S) bool, True = ignore; "
            f"point_mask [B, M, N] bool, True = real point){_q_note(q)}."
        )

    return Hazard("head_major_3d_mask", detail)


def inspect_sdpa(query: Tensor, key: Tensor, attn_mask: object) -> Inspection:
    """Check the mask of one `F.scaled_dot_product_attention` call before it runs.

    Args:
        query: `(..., H, L, E)`.
        key: `(..., H_kv, S, E)`.
        attn_mask: broadcastable to `(..., H, L, S)`; bool True = attend, float added to the
            scores; or None. No head-order finding: SDPA's mask has its own head axis, so a
            broadcast or per-head mask is never flattened in an order torch could misread.
    """
    found = Inspection()
    api = "F.scaled_dot_product_attention"
    if not isinstance(attn_mask, Tensor) or attn_mask.is_nested or query.is_nested:
        found.check_output = isinstance(query, Tensor) and not query.is_nested
        return found
    reading = _read_float(attn_mask) if attn_mask.is_floating_point() else None
    blocked = _blocked(attn_mask, reading, true_blocks=False)
    meant = _blocked(attn_mask, reading, true_blocks=False, intended=True)
    if meant.dim() >= 1 and meant.shape[-1] in (key.shape[-2], 1):
        rows = meant.reshape(-1, meant.shape[-1]) if meant.dim() >= 2 else meant[None]
        found.query_tokens = infer_query_tokens(rows)
    if reading is not None:
        found.hazards += _float_hazards(
            attn_mask, reading, "attn_mask", api, True, found.query_tokens
        )
    _fully_masked(found, [blocked], {"attn_mask": reading}, api)
    return found


def check_output(api: str, found: Inspection, out: Tensor, inputs: list[Tensor]) -> list[Hazard]:
    """Findings in an attention output: NaN / inf rows, with or without a key to attend to.

    `out` has its feature axis last and its query rows laid out so that `out.shape[:-1]`
    matches the rows of `found.fully_masked()` under broadcasting (`(N, L)` for MHA after the
    caller moved the batch first, `(..., H, L)` for SDPA). `inputs` (query, key, value) are
    read only to say whether a NaN came in or was made.
    """
    if not found.check_output or out.is_nested or not out.is_floating_point():
        return []
    finite_rows = torch.isfinite(out).all(dim=-1)  # out.shape[:-1]
    if bool(finite_rows.all()):
        return []
    bad = ~finite_rows
    hazards: list[Hazard] = []
    fully = found.fully_masked()
    if fully is not None:
        try:
            fully = torch.broadcast_to(fully, bad.shape)
        except RuntimeError:
            fully = None
    with_key = bad if fully is None else bad & ~fully
    total = bad.numel()
    if bool(with_key.any()):
        nonfinite_inputs = sum(
            int((~torch.isfinite(t)).sum()) for t in inputs if t.is_floating_point()
        )
        cause = (
            f"Its inputs held {nonfinite_inputs} NaN / inf entries: a NaN or inf value at a "
            "masked key still reaches every row as 0 * NaN = NaN. Select padded slots away "
            "before the model, torch.where(point_mask[..., None], points, 0), never "
            "points * point_mask[..., None]."
            if nonfinite_inputs
            else "Its inputs were finite: the scores overflowed (float16 / bfloat16 range) or a "
            "-inf mask met an inf score. Check the dtype, and scale the inputs."
        )
        hazards.append(
            Hazard(
                "nonfinite_output",
                f"{int(with_key.sum())} of {total} query row(s) of {api} that had at least one "
                f"key to attend to came out NaN or inf. {cause}",
            )
        )
    if fully is not None and bool((bad & fully).any()):
        hazards.append(
            Hazard(
                "fully_masked_rows",
                f"{int((bad & fully).sum())} of {total} query row(s) of {api} have every key "
                "masked, and on this path they came out NaN (MHA with need_weights=True, its "
                "fused fast path, and some GPU kernels give NaN; SDPA on CPU gives 0). "
                + _fully_masked_fix(found.query_tokens),
            )
        )
    return hazards
