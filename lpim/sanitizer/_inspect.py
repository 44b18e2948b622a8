"""What one attention call's own tensors prove about its masks: the six finding kinds.

Pure functions of the tensors of one call; no hooks, no state. Two conventions:

- MHA (`nn.MultiheadAttention`, `F.multi_head_attention_forward`,
  `nn.TransformerEncoderLayer`, `nn.TransformerEncoder`): `attn_mask` `(L, S)` or
  `(N*H, L, S)` with row `n*H + h`, `key_padding_mask` `(N, S)`; bool True = blocked,
  a float mask is added to the scores.
- SDPA (`F.scaled_dot_product_attention`): `attn_mask` broadcastable to `(N, H, L, S)`;
  bool True = **attend**, a float mask is added.

A finding is made only where these tensors prove it. What depends on the masks alone is read
here (and cached by the watcher); what needs the call's scores (does a finite fill leak or
overflow?) is proved in `_proof`, and only for masks whose structure is suspect. Inverted
polarity, a shifted query column or a mask that disagrees with the points are wrong only
relative to the points, which the call does not see: `lpim.testing.check_encoder` finds those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lpim._mistakes import MEANINGS, WATCHED, heads_agree, repeats_with_period

KINDS: dict[str, str] = {kind: MEANINGS[kind] for kind in WATCHED}
"""Every finding kind, with what it means (named as `lpim.masks.diagnose` names them)."""


class Hazard:
    """One finding of one call, before it is tied to a site: `kind` and the advice text.

    `detail` may be given as a function, called only when the text is read: the sanitizer
    reads it once per site and kind, and some texts check a fix by running it.
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


@dataclass(frozen=True)
class FloatReading:
    """How a float mask reads: `kind` is additive (0 / -inf), zero_one, fill or bias.

    `fill` is the one finite negative value of a `{0, fill}` (or `{0, fill, -inf}`) mask: a
    mask whose structure is suspect, whose harm `_proof` decides on the call's scores.
    """

    kind: str
    fill: float | None = None


def read_float(float_mask: Tensor) -> FloatReading:
    """Classify a float mask by its values without sorting them (masks can be large)."""
    is_zero = float_mask == 0
    is_neg_inf = torch.isneginf(float_mask)
    other = float_mask[~(is_zero | is_neg_inf)]  # values that are neither 0 nor -inf
    if other.numel() == 0:
        return FloatReading("additive")
    low, high = float(other.min()), float(other.max())
    if low != high:
        return FloatReading("bias")  # several values: a learned or positional bias, not a mask
    if low == 1.0 and not bool(is_neg_inf.any()):
        return FloatReading("zero_one")
    if low < 0 and low == low:  # one finite negative value beside 0: a fill, maybe a leaky one
        return FloatReading("fill", low)
    return FloatReading("bias")


def blocked_by(mask: Tensor, reading: FloatReading | None, true_blocks: bool) -> Tensor:
    """Bool tensor, True where `mask` blocks a key *as torch uses it*.

    A bool mask blocks by its polarity (`true_blocks`: MHA's True = blocked, SDPA's False =
    blocked); a float mask is added, so it blocks where it is -inf and, for a `{0, fill}`
    mask, where it holds the fill (whether that fill really blocks is `_proof`'s question).
    """
    if reading is None:
        return mask if true_blocks else ~mask
    blocked = torch.isneginf(mask)
    if reading.kind == "fill":
        blocked = blocked | (mask == reading.fill)
    return blocked


@dataclass
class MaskPart:
    """One mask of a call, laid out to broadcast against the scores `(N, H, L, S)`.

    Attributes:
        name: the argument's name (`attn_mask`, `src_key_padding_mask`, ...).
        original: the tensor as passed.
        laid_out: `original` reshaped to broadcast against the scores.
        reading: how a float mask reads (None for a bool mask).
        true_blocks: the bool polarity (True = blocked for MHA, False for SDPA).
    """

    name: str
    original: Tensor
    laid_out: Tensor
    reading: FloatReading | None
    true_blocks: bool

    @property
    def blocked(self) -> Tensor:
        """Bool, broadcastable to the scores, True where torch masks the key."""
        return blocked_by(self.laid_out, self.reading, self.true_blocks)


@dataclass
class Inspection:
    """What `inspect_mha` / `inspect_sdpa` read from a call's masks before it runs.

    Depends on the masks and the call's sizes only, so the watcher caches it by the masks'
    identity, version and shape.

    Attributes:
        hazards: findings the masks alone prove (head order, missing rows, 0/1 float masks).
        check_output: False where the output cannot be read (nested tensors, torch raises).
        num_heads: `H` of an MHA call.
        parts: the masks, laid out against the scores.
        fully_masked: bool, broadcastable to the output's rows (`(N, L)` for MHA, which merges
            heads, `(..., H, L)` for SDPA), True = the row has no key; None if no row is.
        suspect_fill: a `{0, fill}` float mask: `_proof` decides on the scores whether it
            leaks or overflows.
    """

    hazards: list[Hazard] = field(default_factory=list)
    check_output: bool = True
    num_heads: int | None = None
    parts: list[MaskPart] = field(default_factory=list)
    fully_masked: Tensor | None = None
    suspect_fill: bool = False

    def blocked(self) -> Tensor | None:
        """Bool, broadcastable to the scores `(N, H, L, S)`, True = masked; None if no mask."""
        if not self.parts:
            return None
        blocked = self.parts[0].blocked
        for part in self.parts[1:]:
            blocked = blocked | part.blocked
        return blocked


@dataclass(frozen=True)
class RepeatRecord:
    """Where a 3D mask came from: `source.repeat(times, 1, 1)` at `where` (`file:line`).

    `source` is the per-entry mask `(N, L, S)` in the polarity of the repeated tensor (a
    conversion after the repeat, `.bool()`, `~`, `.to(...)`, is applied to it as well);
    `line` is the source text of that line.
    """

    source: Tensor
    times: int
    where: str
    line: str


def _fully_masked_rows(blocked: Tensor | None, head_axis: int | None) -> Tensor | None:
    if blocked is None or blocked.shape[-1] == 0:
        return None
    fully = blocked.all(dim=-1)  # broadcastable to (N, H, L) or the SDPA output's rows
    if head_axis is not None:
        fully = fully.any(dim=head_axis)  # (N, L): MHA merges heads, a row loses a head
    return fully if bool(fully.any()) else None


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
    built_by: RepeatRecord | None = None,
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
        attn_mask_name: the attn_mask's argument name in the API called.
        key_padding_mask_name: the key_padding_mask's argument name in the API called.
        built_by: the `repeat` that built a 3D `attn_mask`, where the watcher saw it.
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

    def reading(mask: Tensor) -> FloatReading | None:
        return read_float(mask) if mask.is_floating_point() else None

    if isinstance(key_padding_mask, Tensor) and not key_padding_mask.is_nested:
        if key_padding_mask.shape in ((n, s), (s,)):
            laid = key_padding_mask.reshape(-1, 1, 1, s)  # (N or 1, 1, 1, S)
            found.parts.append(
                MaskPart(
                    key_padding_mask_name, key_padding_mask, laid, reading(key_padding_mask), True
                )
            )
    if isinstance(attn_mask, Tensor) and not attn_mask.is_nested:
        if attn_mask.dim() == 3 and attn_mask.shape[1:] == (length, s):
            rows = attn_mask.shape[0]
            if batched and rows == n and h > 1:
                found.hazards.append(_missing_head_rows(api, attn_mask, attn_mask_name, n, h))
                found.check_output = False  # torch raises on it
                return found
            if rows == n * h:
                if batched and h > 1 and n > 1 and _head_major(attn_mask, n, h, built_by):
                    found.hazards.append(
                        _head_major_hazard(api, attn_mask, attn_mask_name, n, h, built_by)
                    )
                laid = attn_mask.reshape(n, h, length, s)
                found.parts.append(
                    MaskPart(attn_mask_name, attn_mask, laid, reading(attn_mask), True)
                )
        elif attn_mask.shape == (length, s):
            found.parts.append(
                MaskPart(attn_mask_name, attn_mask, attn_mask[None, None], reading(attn_mask), True)
            )
    _read_parts(found, api, sdpa=False, head_axis=1)
    return found


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
    if not isinstance(attn_mask, Tensor) or attn_mask.is_nested or query.is_nested:
        found.check_output = isinstance(query, Tensor) and not query.is_nested
        return found
    reading = read_float(attn_mask) if attn_mask.is_floating_point() else None
    found.parts.append(MaskPart("attn_mask", attn_mask, attn_mask, reading, False))
    _read_parts(found, "F.scaled_dot_product_attention", sdpa=True, head_axis=None)
    return found


def _read_parts(found: Inspection, api: str, sdpa: bool, head_axis: int | None) -> None:
    """The findings of the masks' values: 0/1 float masks, suspect fills, fully masked rows."""
    for part in found.parts:
        if part.reading is None:
            continue
        if part.reading.kind == "zero_one":
            found.hazards.append(Hazard("float_mask_as_additive", _zero_one_text(api, part)))
        elif part.reading.kind == "fill":
            found.suspect_fill = True
    found.fully_masked = _fully_masked_rows(found.blocked(), head_axis)


def _zero_one_text(api: str, part: MaskPart) -> str:
    mask = part.original
    return (
        f"{api}'s float {part.name} {tuple(mask.shape)} ({mask.dtype}) holds only 0.0 and 1.0. "
        "torch adds a float mask to the attention scores, so the 1.0 entries get +1 and "
        "nothing is masked."
    )


def _head_major(attn_mask: Tensor, n: int, h: int, built_by: RepeatRecord | None) -> bool:
    """True when the `(N*H, L, S)` mask gives some head another entry's mask.

    Proved from where the mask came from when the watcher saw the `repeat` (every ratio of N
    to H, N dividing H included, where each entry gets the same H rows), else from the mask's
    values: rows repeating with period N while an entry's heads disagree, and not one per-head
    mask shared by every entry (that has period N whenever H divides N, and is not a bug).
    """
    if built_by is not None:
        source = built_by.source
        if built_by.times == h and source.shape[0] == n:
            differs = source != source[:1]  # (N, L, S): where each slice differs from the first
            if not bool(differs.any()):
                return False  # every entry's mask is the same: any order is right
            if n != h:
                return True  # (N, L, S) repeated H times: per entry, so head-major
            # N == H: a per-head mask repeated N times (correct) has the same shapes. Slices
            # that differ by whole key columns (padding) are per entry; per-head masks
            # (windows, ALiBi-like) differ by query row.
            return torch.equal(differs, differs[:, :1].expand_as(differs))
    return (
        repeats_with_period(attn_mask, n, h)
        and not heads_agree(attn_mask, n, h)
        and not _shared_by_entries(attn_mask, n, h)
    )


def _shared_by_entries(attn_mask: Tensor, n: int, h: int) -> bool:
    """True when every batch entry has the same `h` rows (a per-head mask, no per-entry part)."""
    per_entry = attn_mask.reshape(n, h, *attn_mask.shape[1:])  # [N, H, L, S], rows n*H + h
    return torch.equal(per_entry, per_entry[:1].expand_as(per_entry))


def _missing_head_rows(api: str, attn_mask: Tensor, name: str, n: int, h: int) -> Hazard:
    return Hazard(
        "missing_head_rows",
        f"{api} got a 3D {name} of shape {tuple(attn_mask.shape)}: {n} rows, one per batch "
        f"entry (N = {n}), but with num_heads = {h} it needs N*num_heads = {n}*{h} = {n * h} "
        f"rows, row n*{h} + h for entry n, head h. torch raises RuntimeError on it. Not "
        f"{name}.repeat({h}, 1, 1): that runs and is wrong (head_major_3d_mask).",
    )


def _head_major_hazard(
    api: str, attn_mask: Tensor, name: str, n: int, h: int, built_by: RepeatRecord | None
) -> Hazard:
    def detail() -> str:
        per_entry = attn_mask.reshape(n, h, *attn_mask.shape[1:])  # read as torch: row n*H + h
        disagree = int((per_entry != per_entry[:, :1]).flatten(1).any(dim=1).sum())
        built = (
            f"It was built at {built_by.where}"
            + (f": `{built_by.line}`" if built_by.line else "")
            + f", which lays rows out head-major (row h*{n} + n)."
            if built_by is not None
            else f"Its rows repeat with period N (row r equals row r + {n}): it was built "
            f"head-major, with repeat({h}, 1, 1)."
        )
        same_rows = (
            f" With N = {n} dividing num_heads = {h}, every entry gets the same {h} rows, "
            "cycling through the batch's masks: it looks like a per-head mask and is not one."
            if h % n == 0
            else ""
        )
        return (
            f"{api}'s 3D {name} {tuple(attn_mask.shape)} for N = {n} batch entries x "
            f"num_heads = {h}. {built} torch reads row n*{h} + h as entry n, head h, so head h "
            f"of entry n gets entry (n*{h} + h) % {n}'s mask: in {disagree} of {n} entries the "
            f"heads disagree.{same_rows} It runs without error and is wrong."
        )

    return Hazard("head_major_3d_mask", detail)
