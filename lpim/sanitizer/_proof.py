"""Findings proved on a call's own tensors, and advice checked on them before it is printed.

- A `{0, fill}` float mask is a finding only where it does harm in this call: masked keys keep
  measurable weight in the call's softmax (a leaky fill), or adding the fill overflows the dtype
  so that rows become NaN. Both are computed from the call's scores, and only for such masks.
- Fully masked rows are read from the mask; the message says what this call gave for them.
- A fix is printed only after it was applied to the same call: the mask it builds must block
  exactly what the original meant (causal stays causal, padded keys stay masked) and the call
  must give finite output on every row that has a key.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lpim.masks import to_key_padding_mask, to_sdpa_mask
from lpim.sanitizer._inspect import (
    Hazard,
    Inspection,
    MaskPart,
    RepeatRecord,
    blocked_by,
    read_float,
)

# what advice may name, as pasted: `lpim.masks.to_key_padding_mask(point_mask, ...)`
_LPIM_NAMES = SimpleNamespace(
    masks=SimpleNamespace(to_key_padding_mask=to_key_padding_mask, to_sdpa_mask=to_sdpa_mask)
)

Rerun = Callable[[dict[str, Any]], Tensor | None]
"""Runs the call again with some arguments replaced; returns its output rows-first."""


@dataclass
class Call:
    """One attention call, as the proofs and the advice need it.

    Attributes:
        api: what was called (`"nn.MultiheadAttention"`, ...).
        sdpa: SDPA's bool polarity (True = attend) rather than MHA's (True = blocked).
        n, h, length, s: batch entries, heads, query rows `L` and keys `S`.
        names: the argument names of the API for `attn_mask` and `key_padding_mask`.
        masks: the masks passed, by role (`"attn_mask"`, `"key_padding_mask"`).
        scores: the raw scaled scores `(N, H, L, S)` in the call's dtype (None where they
            cannot be computed); called only for a suspect mask.
        rerun: the call again with arguments (by the API's names) replaced, output rows-first.
        built_by: the `repeat` that built a 3D attn_mask, where it was seen.
    """

    api: str
    sdpa: bool
    n: int
    h: int
    length: int
    s: int
    names: dict[str, str]
    masks: dict[str, Tensor | None]
    scores: Callable[[], Tensor | None]
    rerun: Rerun
    built_by: RepeatRecord | None = None
    dtype: torch.dtype = torch.float32
    is_causal: bool = False
    _lane: list[tuple[Tensor, int] | None] = field(default_factory=list, repr=False)

    def lane(self) -> tuple[Tensor, int] | None:
        """`(point_mask, query_tokens)` of the lane encoder this call comes from, if lpim sees
        one: a caller's local `point_mask` `[B, M, N]` bool with `B*M` = the call's batch."""
        if not self._lane:
            self._lane.append(_find_lane(self.n, self.s))
        return self._lane[0]


def _find_lane(n: int, s: int) -> tuple[Tensor, int] | None:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        point_mask = frame.f_locals.get("point_mask")
        if (
            isinstance(point_mask, Tensor)
            and point_mask.dtype == torch.bool
            and point_mask.dim() == 3
            and point_mask.shape[0] * point_mask.shape[1] == n
            and 0 <= s - point_mask.shape[2] <= s
        ):
            return point_mask, s - point_mask.shape[2]
        frame = frame.f_back
    return None


# -- the scores ----------------------------------------------------------------------------------


def mha_scores(
    query: Tensor,
    key: Tensor,
    num_heads: int,
    batch_first: bool,
    in_proj_weight: Tensor | None,
    in_proj_bias: Tensor | None,
    q_proj_weight: Tensor | None = None,
    k_proj_weight: Tensor | None = None,
) -> Tensor | None:
    """`(N, H, L, S)` scaled dot products of an MHA call, as torch computes them before masking.

    None where the projection cannot be read (extra key columns and such are left out by the
    caller).
    """
    if query.dim() == 2:
        query, key = query[None], key[None]  # unbatched (L, E) -> (1, L, E)
    elif not batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)  # (L, N, E) -> (N, L, E)
    e = query.shape[-1]
    if in_proj_weight is not None:
        wq, wk = in_proj_weight[:e], in_proj_weight[e : 2 * e]
    elif q_proj_weight is not None and k_proj_weight is not None:
        wq, wk = q_proj_weight, k_proj_weight
    else:
        return None
    bq = bk = None
    if in_proj_bias is not None:
        bq, bk = in_proj_bias[:e], in_proj_bias[e : 2 * e]
    n, length, s, hd = query.shape[0], query.shape[1], key.shape[1], e // num_heads
    q = F.linear(query, wq, bq).reshape(n, length, num_heads, hd).transpose(1, 2)  # (N,H,L,hd)
    k = F.linear(key, wk, bk).reshape(n, s, num_heads, hd).transpose(1, 2)  # (N, H, S, hd)
    return (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (N, H, L, S)


def sdpa_scores(query: Tensor, key: Tensor, scale: float | None, enable_gqa: bool) -> Tensor:
    """`(..., H, L, S)` scaled dot products of an SDPA call, before masking."""
    if enable_gqa and key.dim() >= 3 and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
    factor = scale if scale is not None else 1 / math.sqrt(query.shape[-1])
    return (query @ key.transpose(-2, -1)) * factor


# -- fills -----------------------------------------------------------------------------------------


def measurable(dtype: torch.dtype) -> float:
    """Weight on masked keys that counts as leaked: the dtype's machine epsilon.

    Below it, adding the masked keys' share changes a weight by less than one rounding step,
    so outputs match the -inf mask's; above it, outputs move.
    """
    return torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo().eps


@dataclass
class FillHarm:
    """What a finite fill did in one softmax: leaked weight, and rows that overflowed."""

    fill: float
    leak: float = 0.0  # the largest share of a row's weight on masked keys (rows with a key)
    leak_rows: int = 0  # rows whose masked keys kept more than `measurable`
    rows: int = 0  # rows with a key
    overflow_rows: int = 0  # rows that a finite fill turned all -inf (NaN)


def fill_harm(
    total: Tensor, weights: Tensor, fill_blocked: Tensor, hard_blocked: Tensor, fill: float
) -> FillHarm:
    """Measure a finite fill in one softmax over the last axis.

    Args:
        total: the softmax's input, scores plus masks, in the dtype they were added in.
        weights: the softmax's output (same shape).
        fill_blocked: bool, broadcastable, True where the fill was put.
        hard_blocked: bool, broadcastable, True where a key is masked otherwise (-inf, bool).
    """
    shape = total.shape
    fill_blocked = torch.broadcast_to(fill_blocked, shape) & ~torch.broadcast_to(
        hard_blocked, shape
    )
    hard = torch.broadcast_to(hard_blocked, shape)
    has_key = (~(fill_blocked | hard)).any(dim=-1)  # rows the fill was not meant to empty
    harm = FillHarm(fill, rows=int(has_key.sum()))
    share = (weights.float().nan_to_num(0.0) * fill_blocked).sum(dim=-1)[has_key]
    if share.numel():
        harm.leak = float(share.max())
        harm.leak_rows = int((share > measurable(total.dtype)).sum())
    # overflow: a finite fill plus a finite score became -inf, and a row lost every key to it
    overflowed = fill_blocked & torch.isneginf(total)
    if bool(overflowed.any()):
        nan_rows = torch.isneginf(total).all(dim=-1) & overflowed.any(dim=-1)
        harm.overflow_rows = int(nan_rows.sum())
    return harm


def harm_text(harm: FillHarm, where: str, dtype: torch.dtype) -> str | None:
    """The finding's text, or None when the fill did no harm here."""
    parts = []
    if harm.leak_rows:
        parts.append(
            f"masked keys keep up to {harm.leak:.3g} of a row's attention weight "
            f"({harm.leak * 100:.3g}%) in {harm.leak_rows} of {harm.rows} row(s) that have a "
            f"key: the fill {harm.fill:g} is too weak to mask at these scores (measurable = "
            f"above {dtype}'s epsilon, {measurable(dtype):.3g})"
        )
    if harm.overflow_rows:
        parts.append(
            f"adding the fill {harm.fill:g} to the scores overflows {dtype} to -inf, leaving "
            f"{harm.overflow_rows} row(s) with every key -inf: NaN"
        )
    if not parts:
        return None
    return f"{where}: " + "; ".join(parts) + "."


def prove_fill(call: Call, found: Inspection) -> list[Hazard]:
    """`finite_fill` for a `{0, fill}` mask of this call, where the call's scores prove harm."""
    scores = call.scores()
    if scores is None:
        return []
    total = scores
    hard = torch.zeros((), dtype=torch.bool, device=scores.device)
    fill_blocked = torch.zeros((), dtype=torch.bool, device=scores.device)
    fills: list[tuple[MaskPart, float]] = []
    for part in found.parts:
        reading = part.reading
        if reading is None:
            hard = hard | part.blocked
            continue
        total = total + part.laid_out.to(scores.dtype)  # torch adds it in the call's dtype
        hard = hard | torch.isneginf(part.laid_out)
        if reading.kind == "fill" and reading.fill is not None:
            fill_blocked = fill_blocked | (part.laid_out == reading.fill)
            fills.append((part, reading.fill))
    if not fills:
        return []
    total = total.masked_fill(torch.broadcast_to(hard, total.shape), float("-inf"))
    weights = torch.softmax(total.float(), dim=-1)
    part, fill = fills[0]
    harm = fill_harm(total, weights, fill_blocked, hard, fill)
    where = f"{call.api}'s float {part.name} {tuple(part.original.shape)} ({part.original.dtype})"
    text = harm_text(harm, where, scores.dtype)
    if text is None:
        return []
    return [Hazard("finite_fill", lambda: text + fill_fix(call, found, part, fill))]


# -- fully masked rows and non-finite outputs ---------------------------------------------------


def rows_gave(rows: Tensor) -> str:
    """What a call gave for rows `(K, E)`: NaN, 0, or other finite values."""
    nan = int((~torch.isfinite(rows)).any(dim=-1).sum())
    zero = int((rows == 0).all(dim=-1).sum())
    if nan == rows.shape[0]:
        return "NaN"
    if zero == rows.shape[0]:
        return "0"
    if nan:
        return f"NaN in {nan} of them and finite values in the rest"
    return (
        "finite values that are not 0 (a 0 row after the output projection's bias, or the "
        "mean of the masked values under a finite fill)"
    )


def check_output(
    call_api: str,
    found: Inspection,
    out: Tensor,
    inputs: list[Tensor],
    lane: Callable[[], tuple[Tensor, int] | None] = lambda: None,
) -> list[Hazard]:
    """Findings in an attention output: fully masked rows (from the mask), NaN rows with a key.

    `out` has its feature axis last and its query rows laid out so that `out.shape[:-1]`
    matches `found.fully_masked` under broadcasting (`(N, L)` for MHA after the caller moved
    the batch first, `(..., H, L)` for SDPA). `inputs` (query, key, value) are read only to
    say whether a NaN came in or was made.
    """
    if not found.check_output or out.is_nested or not out.is_floating_point():
        return []
    fully = found.fully_masked
    if fully is None and math.isfinite(out.sum().item()):
        return []  # one reduction: any NaN or inf makes the sum non-finite (an overflow of a
        # finite sum only sends it on to the row-by-row check below)
    hazards: list[Hazard] = []
    if fully is not None:
        try:
            fully = torch.broadcast_to(fully, out.shape[:-1])
        except RuntimeError:
            fully = None
    if fully is not None and bool(fully.any()):
        gave = rows_gave(out[fully])
        count, total = int(fully.sum()), fully.numel()
        hazards.append(
            Hazard(
                "fully_masked_rows",
                lambda: fully_masked_text(call_api, count, total, gave) + fully_masked_fix(lane()),
            )
        )
    finite_rows = torch.isfinite(out).all(dim=-1)  # out.shape[:-1]
    if bool(finite_rows.all()):
        return hazards
    with_key = ~finite_rows if fully is None else ~finite_rows & ~fully
    if bool(with_key.any()):
        nonfinite_inputs = sum(
            int((~torch.isfinite(t)).sum()) for t in inputs if t.is_floating_point()
        )
        cause = (
            f"Its inputs held {nonfinite_inputs} NaN / inf entries: a NaN or inf value at a "
            "masked key still reaches every row as 0 * NaN = NaN. Select padded slots away "
            "before the model with torch.where(valid[..., None], x, 0), never x * valid[..., None]."
            if nonfinite_inputs
            else "Its inputs were finite: the scores overflowed (float16 / bfloat16 range) or a "
            "-inf mask met an inf score. Check the dtype, and scale the inputs."
        )
        hazards.append(
            Hazard(
                "nonfinite_output",
                f"{int(with_key.sum())} of {with_key.numel()} query row(s) of {call_api} that "
                f"had at least one key to attend to came out NaN or inf. {cause}",
            )
        )
    return hazards


def fully_masked_text(api: str, count: int, total: int, gave: str) -> str:
    return (
        f"{count} of {total} query row(s) of {api} have every key masked (read from the mask). "
        f"In this call they came out {gave}. Other paths differ: nn.MultiheadAttention with "
        "need_weights=True and its fused fast path give NaN, SDPA and need_weights=False give 0 "
        "on CPU, and GPU kernels may give NaN; the gradient through such rows can be NaN even "
        "where the output is 0. "
    )


def fully_masked_fix(lane: tuple[Tensor, int] | None) -> str:
    if lane is not None:
        _, q = lane
        return (
            "Fix: give every lane a key that is always real (prepend a query token and build "
            f"the mask with lpim.masks.to_key_padding_mask(point_mask, query_tokens={max(q, 1)})), "
            "or leave empty lanes out of attention (as lpim.PriorEncoder does) and set their "
            "outputs with torch.where(lane_mask[..., None], out, 0). If the pattern is intended, "
            "silence it with lpim.sanitize(allow=[('fully_masked_rows', 'FILE:LINE')])."
        )
    return (
        "Fix: give every query row at least one key it may attend to, or leave those rows out "
        "of attention and set their outputs with torch.where(row_has_key[..., None], out, 0); "
        "dropping NaN rows afterwards is not enough, their gradient is NaN as well. If the "
        "pattern is intended, silence it with "
        "lpim.sanitize(allow=[('fully_masked_rows', 'FILE:LINE')])."
    )


# -- advice, checked on the call ------------------------------------------------------------------


def blocked_of(call: Call, masks: dict[str, Any], is_causal: bool) -> Tensor:
    """Bool `(N, H, L, S)`, True = masked, for the call with these masks (by role)."""
    shape = (call.n, call.h, call.length, call.s)
    blocked = torch.zeros(shape, dtype=torch.bool)
    for role, mask in masks.items():
        if not isinstance(mask, Tensor):
            continue
        reading = read_float(mask) if mask.is_floating_point() else None
        laid = blocked_by(mask, reading, true_blocks=not call.sdpa).cpu()
        if role == "key_padding_mask":
            laid = laid.reshape(-1, 1, 1, call.s)
        elif laid.dim() == 3 and not call.sdpa:
            laid = laid.reshape(call.n, call.h, call.length, call.s)
        blocked = blocked | torch.broadcast_to(laid, shape)
    if is_causal:
        blocked = blocked | torch.ones(call.length, call.s, dtype=torch.bool).triu(1)
    return blocked


@dataclass
class Fix:
    """A fix as text (`name=expression` pairs, pasteable) and what it must keep."""

    assignments: dict[str, str]  # API argument name -> Python expression over the call's names
    note: str = ""

    def text(self) -> str:
        return ", ".join(f"{name}={expr}" for name, expr in self.assignments.items())


def verify(call: Call, fix: Fix, intended: Tensor, scope: dict[str, Any]) -> bool:
    """Apply `fix` to this call's tensors: True when the masks it builds block exactly
    `intended` and the call then gives finite output on every row with a key."""
    role_of = {name: role for role, name in call.names.items()}
    namespace: dict[str, Any] = {"torch": torch, "lpim": _LPIM_NAMES, **scope}
    namespace.update({call.names[role]: t for role, t in call.masks.items() if role in call.names})
    try:
        values = {name: eval(expr, namespace) for name, expr in fix.assignments.items()}
    except Exception:
        return False
    masks = dict(call.masks)
    is_causal = False
    for name, value in values.items():
        if name == "is_causal":
            is_causal = bool(value)
        elif name in role_of:
            masks[role_of[name]] = value
        else:
            return False
    if is_causal and call.sdpa and any(isinstance(m, Tensor) for m in masks.values()):
        return False  # SDPA refuses a mask together with is_causal
    try:
        if not torch.equal(blocked_of(call, masks, is_causal), intended):
            return False
        out = call.rerun(values)
    except Exception:
        return False
    if out is None:
        return False
    rows_with_key = (~intended).any(dim=-1)  # (N, H, L)
    rows_with_key = rows_with_key.all(dim=1) if not call.sdpa else rows_with_key
    try:
        keep = torch.broadcast_to(rows_with_key.to(out.device), out.shape[:-1])
    except RuntimeError:
        keep = torch.ones(out.shape[:-1], dtype=torch.bool, device=out.device)
    return bool(torch.isfinite(out[keep]).all())


def first_verified(
    call: Call, fixes: list[Fix], intended: Tensor, scope: dict[str, Any] | None = None
) -> list[Fix]:
    return [fix for fix in fixes if verify(call, fix, intended, scope or {})]


def _fix_sentence(fixes: list[Fix], checked: str) -> str:
    if not fixes:
        return (
            " No fix is printed: none that lpim could check on this call kept what the mask meant."
        )
    options = " or ".join(f"`{fix.text()}`{fix.note}" for fix in fixes)
    return f" Fix: pass {options} (checked on this call: {checked} and the output is finite)."


def _causal(ones: Tensor, length: int, s: int) -> str | None:
    """'attend' when the 1s are the causal lower triangle, 'blocked' when the upper one."""
    if ones.shape[-2:] != (length, s):
        return None
    flat = ones.reshape(-1, length, s)
    if not torch.equal(flat, flat[:1].expand_as(flat)):
        return None
    tri = torch.ones(length, s, dtype=torch.bool, device=ones.device).tril()
    if torch.equal(flat[0], tri):
        return "attend"
    if torch.equal(flat[0], ~tri):
        return "blocked"
    return None


def zero_one_fix(call: Call, found: Inspection, part: MaskPart) -> str:
    """The checked fix for a float 0/1 mask: its meaning read from its structure."""
    role = next(r for r, n in call.names.items() if n == part.name)
    name, mask = part.name, part.original
    ones = mask == 1
    others = {r: m for r, m in call.masks.items() if r != role}
    # what the mask meant, by structure: causal (a triangle) or padding (whole key columns)
    causal = _causal(ones, call.length, call.s)
    meant_blocked: Tensor | None = None
    fixes: list[Fix] = []
    checked = ""
    lane = call.lane()
    if causal is not None:
        one_blocks = causal == "blocked"
        meant_blocked = ones if one_blocks else ~ones
        checked = "the mask stays causal"
        attend = f"{name}.bool()" if not one_blocks else f"{name} == 0"
        block = f"{name} == 0" if not one_blocks else f"{name}.bool()"
        if call.sdpa:
            if call.length == call.s and not any(isinstance(m, Tensor) for m in others.values()):
                fixes.append(Fix({name: "None", "is_causal": "True"}))
            fixes.append(Fix({name: attend}, " (a bool mask, True = attend)"))
        else:
            fixes.append(
                Fix(
                    {name: block, "is_causal": "True"},
                    " (a bool mask, True = blocked; is_causal=True lets torch use a causal kernel)",
                )
            )
    else:
        key_rows = ones.reshape(-1, ones.shape[-1]) if ones.dim() >= 1 else ones[None]
        padding_shaped = part.laid_out.shape[-2] == 1 and part.laid_out.shape[-3] == 1
        if padding_shaped:
            checked = "padded keys stay masked"
            one_pads: bool | None = None
            if lane is not None:
                point_mask, q = lane
                lane_pad = to_key_padding_mask(point_mask, query_tokens=q).to(ones.device)
                if lane_pad.shape == key_rows.shape:
                    one_pads = True if torch.equal(lane_pad, key_rows) else None
                    if one_pads is None and torch.equal(lane_pad, ~key_rows):
                        one_pads = False
            else:
                # a batch has a row without padding: all 0 where 1 pads, all 1 where 1 is real
                all_one = bool(key_rows.all(dim=-1).any())
                all_zero = bool((~key_rows).all(dim=-1).any())
                if all_zero != all_one:
                    one_pads = all_zero
            if one_pads is not None:
                meant_blocked = ones if one_pads else ~ones
                pads = f"{name}.bool()" if one_pads else f"{name} == 0"
                reals = f"{name} == 0" if one_pads else f"{name}.bool()"
                if lane is not None:
                    q = lane[1]
                    if call.sdpa:
                        expr = f"lpim.masks.to_sdpa_mask(point_mask, query_tokens={q})"
                    else:
                        expr = f"lpim.masks.to_key_padding_mask(point_mask, query_tokens={q})"
                    fixes.append(Fix({name: expr}, " (point_mask [B, M, N] bool, True = real)"))
                polarity = "True = attend" if call.sdpa else "True = ignore"
                fixes.append(
                    Fix({name: reals if call.sdpa else pads}, f" (a bool mask, {polarity})")
                )
    if meant_blocked is None:
        return (
            " Which value marks the masked keys cannot be told from this mask (neither a causal "
            "triangle nor padding with one unpadded row): pass a bool mask, "
            + ("True = attend (SDPA)." if call.sdpa else "True = ignore (MHA).")
        )
    intended = blocked_of(call, {**others, role: _as_blocking(meant_blocked, call.sdpa)}, False)
    good = first_verified(call, fixes, intended, {"point_mask": lane[0]} if lane else {})
    return _fix_sentence(good, checked)


def _as_blocking(meant_blocked: Tensor, sdpa: bool) -> Tensor:
    """A bool mask in the API's polarity that blocks `meant_blocked`."""
    return ~meant_blocked if sdpa else meant_blocked


def fill_fix(call: Call, found: Inspection, part: MaskPart, fill: float) -> str:
    name = part.name
    fixes = [Fix({name: f"{name}.masked_fill({name} == {fill!r}, float('-inf'))"})]
    intended = blocked_of(call, dict(call.masks), call.is_causal)
    return _fix_sentence(
        first_verified(call, fixes, intended), "the same keys stay masked, now with weight 0"
    )


def head_major_fix(call: Call, found: Inspection) -> str:
    name = call.names["attn_mask"]
    h, n = call.h, call.n
    built = call.built_by
    scope: dict[str, Any] = {}
    if built is not None:
        source = built.source
        scope["per_entry"] = source
        expr = f"per_entry.repeat_interleave({h}, dim=0)"
        shown = f" (per_entry: the ({n}, L, S) mask repeated at {built.where})"
    else:
        mask = call.masks["attn_mask"]
        assert mask is not None
        source = mask[:n]
        expr = f"{name}[:{n}].repeat_interleave({h}, dim=0)"
        shown = f" (rows 0..{n - 1} are each entry's mask)"
    meant = source.repeat_interleave(h, dim=0)
    others = {r: m for r, m in call.masks.items() if r != "attn_mask"}
    intended = blocked_of(call, {**others, "attn_mask": meant}, False)
    fixes = [Fix({name: expr}, shown)]
    fixes += _padding_instead(call, source, "per_entry" if built is not None else f"{name}[:{n}]")
    fixes += _lane_padding_instead(
        call, scope, " (a 2D key_padding_mask has no head axis to get wrong)"
    )
    good = first_verified(call, fixes, intended, scope)
    return _fix_sentence(good, "every head of entry n reads entry n's mask")


def _padding_instead(call: Call, per_entry: Tensor, shown: str) -> list[Fix]:
    """A 2D key_padding_mask in place of a per-entry `(N, L, S)` mask whose rows are the same
    for every query (a padding mask): it has no head axis to get wrong."""
    if "key_padding_mask" not in call.names or call.masks.get("key_padding_mask") is not None:
        return []
    if per_entry.dim() != 3 or not torch.equal(per_entry, per_entry[:, :1].expand_as(per_entry)):
        return []
    return [
        Fix(
            {call.names["attn_mask"]: "None", call.names["key_padding_mask"]: f"{shown}[:, 0]"},
            " (a 2D key_padding_mask, True = ignore: no head axis to get wrong)",
        )
    ]


def _lane_padding_instead(call: Call, scope: dict[str, Any], shown: str = "") -> list[Fix]:
    """lpim's 2D `key_padding_mask` built from the lane encoder's `point_mask` (put in `scope`
    for the check), when the call comes from a lane encoder lpim can see; else nothing."""
    lane = call.lane()
    if lane is None or "key_padding_mask" not in call.names:
        return []
    scope["point_mask"] = lane[0]
    converted = f"lpim.masks.to_key_padding_mask(point_mask, query_tokens={lane[1]})"
    return [
        Fix({call.names["attn_mask"]: "None", call.names["key_padding_mask"]: converted}, shown)
    ]


def missing_rows_fix(call: Call) -> str:
    name = call.names["attn_mask"]
    mask = call.masks["attn_mask"]
    assert mask is not None
    meant = mask.repeat_interleave(call.h, dim=0)
    others = {r: m for r, m in call.masks.items() if r != "attn_mask"}
    intended = blocked_of(call, {**others, "attn_mask": meant}, False)
    fixes = [Fix({name: f"{name}.repeat_interleave({call.h}, dim=0)"})]
    fixes += _padding_instead(call, mask, name)
    scope: dict[str, Any] = {}
    fixes += _lane_padding_instead(call, scope)
    return _fix_sentence(first_verified(call, fixes, intended, scope), "each entry keeps its mask")


def with_advice(call: Call, found: Inspection) -> list[Hazard]:
    """`found.hazards` with each one's checked fix appended to its text (read lazily)."""
    out = []
    for hazard in found.hazards:
        out.append(Hazard(hazard.kind, _advised(call, found, hazard)))
    return out


def _advised(call: Call, found: Inspection, hazard: Hazard) -> Callable[[], str]:
    def text() -> str:
        base = hazard.detail
        try:
            if hazard.kind == "float_mask_as_additive":
                part = next(
                    p for p in found.parts if p.reading is not None and p.reading.kind == "zero_one"
                )
                return base + zero_one_fix(call, found, part)
            if hazard.kind == "head_major_3d_mask":
                return base + head_major_fix(call, found)
            if hazard.kind == "missing_head_rows":
                return base + missing_rows_fix(call)
        except Exception as error:  # advice must never break the user's call
            return base + f" (lpim could not check a fix: {type(error).__name__}: {error})"
        return base

    return text
