"""`diagnose`: given a mask someone built, say what it is, what is wrong with it, and what to call.

`validate` answers "is this a correct `X`?". `diagnose` answers the question a user
with a failing model has: "what did I build?". It reads the mask under every convention whose
shape and dtype fit, compares each reading with what `point_mask` says, and names the first
match: a correct convention, or one of the known mistakes in `MISTAKES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lpim._errors import UsageValueError
from lpim._mistakes import DIAGNOSED, MEANINGS, heads_agree, repeats_with_period
from lpim._validation import check_int
from lpim.masks._conventions import CONVENTIONS
from lpim.masks._convert import broadcast_shape, broadcasts, keep_tokens, to_cu_seqlens
from lpim.masks._errors import (
    check_dense_mask,
    check_has_values,
    check_point_mask,
    describe_tensor,
)

__all__ = ["MISTAKES", "Diagnosis", "diagnose"]

MISTAKES: dict[str, str] = {name: MEANINGS[name] for name in DIAGNOSED}
"""Every mistake `diagnose` can name, with what it means. Where the sanitizer finds the same
mistake in a live call (`lpim.sanitizer.KINDS`), the name and meaning are the same."""


@dataclass(frozen=True)
class Diagnosis:
    """What `diagnose` found.

    Attributes:
        convention: the convention whose layout the mask has (a key of
            `CONVENTIONS`), or None when none fits.
        mistake: None for a correct mask, else a key of `MISTAKES`.
        advice: what was found and what to do; also `str(diagnosis)`.
        fix: the lpim call that builds the right mask.
    """

    convention: str | None
    mistake: str | None
    advice: str
    fix: str

    @property
    def ok(self) -> bool:
        """True when the mask is a correct mask of `convention`."""
        return self.mistake is None and self.convention is not None

    def __str__(self) -> str:
        return self.advice


def diagnose(
    mask: torch.Tensor,
    point_mask: torch.Tensor,
    num_heads: int | None = None,
    query_tokens: int | None = None,
    *,
    intended: str | None = None,
) -> Diagnosis:
    """Name the convention `mask` follows, or the known mistake it is.

    Args:
        mask: the mask to examine, built by someone for `point_mask`.
        point_mask: `[B, M, N]` bool, True = real point: what the mask should encode.
        num_heads: `H`, to judge a 3D `attn_mask`; inferred from its row count if omitted.
        query_tokens: tokens prepended to each lane, never masked. If omitted, inferred from
            the mask's width against `point_mask`'s `N`: `N + q` columns are read as `q`
            query tokens (for `lengths` and `cu_seqlens`, from a constant surplus over the
            real points), and the advice says so. Where the width cannot tell, the advice
            writes `query_tokens=Q` and says what `Q` must be, rather than guessing 0.
        intended: the convention the mask is meant to be (a key of
            [`CONVENTIONS`][lpim.masks.CONVENTIONS], e.g. `"key_padding_mask"`). A mask is
            then judged as that convention: an inverted mask of it is `inverted_polarity`,
            and a correct mask of another convention is `unrecognised` as the intended one (the
            advice names what it is), never "OK".
            Without `intended`, some masks are correct under one convention and inverted under
            another (a `(B*M, S)` bool with True = real is a fine `attention_mask` and an
            inverted `key_padding_mask`): the correct reading wins and the advice warns about
            the other.

    Returns:
        A [`Diagnosis`][lpim.masks.Diagnosis]; `str()` of it is the advice. Any `mask` gets one,
        whatever its rank, dtype or size (`unrecognised` when nothing fits); a mask on another
        device is read on `point_mask`'s.

    Raises:
        MaskConventionError: `point_mask` is not a `[B, M, N]` bool tensor, or `mask` or
            `point_mask` is on the `meta` device (no values to read), sparse or nested.
        lpim._errors.UsageValueError: (a `ValueError`) `num_heads < 1`, `query_tokens < 0`,
            a `query_tokens` too large to allocate the expected mask, or an unknown
            `intended`.
        lpim._errors.UsageTypeError: (a `TypeError`) `num_heads` or `query_tokens` is not an
            int.
    """
    check_point_mask(point_mask, "diagnose")
    check_has_values(point_mask, "point_mask", "diagnose", "point_mask")
    if num_heads is not None:
        num_heads = check_int(num_heads, "num_heads", "diagnose", minimum=1)
    if query_tokens is not None:
        query_tokens = check_int(query_tokens, "query_tokens", "diagnose", minimum=0)
    if intended is not None and (not isinstance(intended, str) or intended not in CONVENTIONS):
        raise UsageValueError(
            f"unknown convention: got intended={intended!r}; expected one of {list(CONVENTIONS)}"
        )
    if not isinstance(mask, torch.Tensor):
        reader = _Reader(point_mask, num_heads, query_tokens, intended)
        return reader.judge(None, f"a {type(mask).__name__}, not a tensor")
    check_dense_mask(mask, "mask", "diagnose", intended or "point_mask")
    check_has_values(mask, "the mask", "diagnose", "point_mask")
    if mask.device != point_mask.device:
        mask = mask.to(point_mask.device)
    reader = _Reader(point_mask, num_heads, query_tokens, intended, mask)
    return reader.judge(mask)


def _infer_query_tokens(mask: torch.Tensor, point_mask: torch.Tensor) -> int | None:
    """The query tokens a mask built for `point_mask` has columns for, or None if it cannot tell.

    A mask with `S` columns (2-D to 4-D) was built for `S - N` query tokens. Counts (1-D
    `lengths`, `cu_seqlens`) have no width: they are read with 0, and a constant surplus over
    the real points is named in the advice instead (see `_count_surplus`), because it is also
    what an off-by-one looks like.
    """
    n = point_mask.shape[-1]
    if 2 <= mask.dim() <= 4:
        width = mask.shape[-1]
        return width - n if width >= n else None
    return 0 if mask.dim() == 1 else None


def _count_surplus(mask: torch.Tensor, point_mask: torch.Tensor) -> int | None:
    """`k > 0` if the counts of a 1-D mask are every lane's real points plus the same `k`."""
    if mask.dim() != 1 or mask.is_floating_point() or mask.dtype == torch.bool:
        return None
    b, m, n = point_mask.shape
    counts = point_mask.reshape(b * m, n).sum(dim=1)  # [B*M]
    if mask.numel() == b * m:
        surplus = mask.long() - counts
    elif mask.numel() == b * m + 1:
        surplus = mask.long().diff() - counts
    else:
        return None
    if surplus.numel() == 0:
        return None
    k = int(surplus[0])
    return k if k > 0 and bool((surplus == k).all()) else None


class _Reader:
    """Reads one mask against one `point_mask`; each `_rank*` method handles one rank."""

    def __init__(
        self,
        point_mask: torch.Tensor,
        num_heads: int | None,
        query_tokens: int | None,
        intended: str | None,
        mask: torch.Tensor | None = None,
    ):
        self.point_mask = point_mask
        b, m, n = point_mask.shape
        self.given_q = query_tokens is not None
        inferred = _infer_query_tokens(mask, point_mask) if mask is not None else None
        q = query_tokens if query_tokens is not None else inferred
        # the query tokens the fix calls name: a number when given or read off the mask, else Q
        self.q_label: int | str = q if q is not None else "Q"
        q = q or 0
        self.lanes, self.n, self.q, self.s = b * m, n, q, n + q
        self.num_heads = num_heads
        self.intended = intended
        self.keep = keep_tokens(point_mask, q)  # [B*M, S], True = real token

    def judge(self, mask: torch.Tensor | None, what: str = "") -> Diagnosis:
        """The reading of `mask`, held to `intended`, with how the query tokens were found."""
        diagnosis = self.read(mask) if mask is not None else self._unrecognised(what)
        if self.intended is not None and diagnosis.convention != self.intended:
            diagnosis = self._against_intent(diagnosis)
        if not self.given_q and isinstance(self.q_label, int) and diagnosis.convention:
            diagnosis = self._note_inferred_query_tokens(diagnosis, mask)
        return diagnosis

    def read(self, mask: torch.Tensor) -> Diagnosis:
        if mask.dim() == 1:
            return self._rank1(mask)
        if mask.dim() == 2:
            return self._rank2(mask)
        if mask.dim() == 3:
            library_shape = tuple(mask.shape) == tuple(self.point_mask.shape)
            if library_shape and mask.dtype == torch.bool and self.intended != "attn_mask_3d":
                as_library = self._library(mask)
                if as_library.ok or self.intended == "point_mask":
                    return as_library
                # [B, M=1, N=1] is also the shape of a one-head (B*M, L=1, S=1) attn_mask: as
                # for 2-D bool masks, without `intended` the correct reading wins.
                as_3d = self._rank3(mask)
                if as_3d.ok:
                    warn = " Read as a point_mask (True = real point) it is inverted."
                    return Diagnosis(as_3d.convention, None, as_3d.advice + warn, as_3d.fix)
                return as_library
            return self._rank3(mask)
        if mask.dim() == 4:
            return self._rank4(mask)
        return self._unrecognised(f"a {mask.dim()}-D mask ({describe_tensor(mask)})")

    def _against_intent(self, diagnosis: Diagnosis) -> Diagnosis:
        """A reading of another convention than `intended`: say so, and build the intended one."""
        assert self.intended is not None
        meant = CONVENTIONS[self.intended]
        fix = self._call(self.intended)
        if diagnosis.ok:
            found = CONVENTIONS[str(diagnosis.convention)]
            detail = (
                f"it is a correct {found.name} ({found.shape}, {found.dtype}, {found.meaning}), "
                f"not {_article(meant.name)} ({meant.shape}, {meant.dtype}, {meant.meaning})"
            )
            return self._wrong(meant.name, "unrecognised", detail)
        advice = f"{diagnosis.advice} It was meant to be a {meant.name}: build that with {fix}."
        return Diagnosis(diagnosis.convention, diagnosis.mistake, advice, fix)

    def _note_inferred_query_tokens(
        self, diagnosis: Diagnosis, mask: torch.Tensor | None
    ) -> Diagnosis:
        """Say that `query_tokens` was read off the mask, and what a different count would mean."""
        if mask is None or diagnosis.convention in ("point_mask", "nested"):
            return diagnosis
        if mask.dim() == 1:
            note = " query_tokens was not given: read as 0 (counts do not show query tokens)."
            surplus = _count_surplus(mask, self.point_mask)
            if surplus is not None and not diagnosis.ok:
                call = CONVENTIONS[str(diagnosis.convention)].call(surplus, self.num_heads)
                note += (
                    f" Its counts are every lane's real points + {surplus}, which is {call}: "
                    f"if the model prepends {surplus} query token(s), pass "
                    f"query_tokens={surplus} and it is correct."
                )
            return Diagnosis(
                diagnosis.convention, diagnosis.mistake, diagnosis.advice + note, diagnosis.fix
            )
        source = f"from its {mask.shape[-1]} columns for N = {self.n} point slots"
        note = f" query_tokens was not given: read as {self.q}, {source}."
        if self.q == 0:
            note += (
                " If the model prepends query tokens to each lane, pass query_tokens= to "
                "have the mask judged for them: it has no column for them."
            )
        return Diagnosis(
            diagnosis.convention, diagnosis.mistake, diagnosis.advice + note, diagnosis.fix
        )

    # -- by rank --------------------------------------------------------------------------------

    def _rank1(self, mask: torch.Tensor) -> Diagnosis:
        if mask.is_floating_point() or mask.dtype == torch.bool:
            return self._unrecognised(f"a 1-D {mask.dtype} tensor")
        counts = self.keep.sum(dim=1)  # [B*M]
        if mask.numel() == self.lanes + 1:
            expected, _ = to_cu_seqlens(self.point_mask, self.q)
            if torch.equal(mask.long(), expected.long()):
                note = "" if mask.dtype == torch.int32 else " (flash-attn wants int32)"
                return self._ok("cu_seqlens", extra=note)
            return self._wrong("cu_seqlens", "disagrees_with_points", self._detail_counts(mask))
        if mask.numel() == self.lanes:
            # right-padded: every lane's real tokens first (no lane or no token: trivially)
            right = self.keep.numel() == 0 or torch.equal(
                self.keep, torch.arange(self.s, device=mask.device) < counts[:, None]
            )
            if not right:
                # to_lengths refuses this layout, so the fix is offsets over packed points
                offsets = self._call("cu_seqlens")
                counts_note = (
                    "the counts are right but"
                    if torch.equal(mask.long(), counts)
                    else "the counts differ, and"
                )
                detail = (
                    f"{counts_note} the points are not right-padded, so 'the first n slots' is "
                    "false; pack with lpim.masks.pack and use to_cu_seqlens"
                )
                return self._wrong("lengths", "disagrees_with_points", detail, fix=offsets)
            if torch.equal(mask.long(), counts):
                return self._ok("lengths")
            return self._wrong("lengths", "disagrees_with_points", "the counts differ")
        return self._unrecognised(
            f"a 1-D tensor of {mask.numel()} entries for B*M = {self.lanes} lanes"
        )

    def _rank2(self, mask: torch.Tensor) -> Diagnosis:
        if mask.shape[0] != self.lanes:
            return self._unrecognised(
                f"a 2-D mask with {mask.shape[0]} rows for B*M = {self.lanes} lanes"
            )
        if mask.is_floating_point():
            # A 2-D float key_padding_mask is added to the scores: fine with 0 / -inf only.
            reading = _float_reading(mask)
            if reading is None:
                return self._floating(mask, "key_padding_mask")
            return self._judge(~reading, "additive")
        if mask.dtype == torch.bool:
            # Bool (B*M, S) is key_padding_mask (True = ignore) or attention_mask (True = valid).
            as_kpm = self._judge(~mask, "key_padding_mask")
            as_am = self._judge(mask, "attention_mask")
            if self.intended in ("key_padding_mask", "attention_mask"):
                return as_kpm if self.intended == "key_padding_mask" else as_am
            if as_kpm.ok:
                return as_kpm
            if as_am.ok:
                warn = (
                    " Read as a key_padding_mask (True = ignore) it is inverted: for "
                    "nn.MultiheadAttention call lpim.masks.to_key_padding_mask(point_mask, "
                    f"query_tokens={self.q})."
                )
                return Diagnosis(as_am.convention, None, as_am.advice + warn, as_am.fix)
            return as_kpm
        if bool(((mask == 0) | (mask == 1)).all()):
            return self._judge(mask.bool(), "attention_mask")
        return self._unrecognised("an integer mask with values other than 0/1")

    def _rank3(self, mask: torch.Tensor) -> Diagnosis:
        rows, length, width = mask.shape
        if mask.numel() == 0:
            return self._empty_rank3(mask)
        if mask.is_floating_point():
            reading = _float_reading(mask)
            if reading is None:
                return self._floating(mask, "attn_mask_3d")
            blocked = reading
        elif mask.dtype == torch.bool:
            blocked = mask
        else:
            return self._unrecognised(f"a 3-D {mask.dtype} mask")
        if rows == self.lanes and (self.num_heads or 0) != 1:
            per_lane = self._judge_rows(~blocked, "attn_mask_3d")
            return self._missing_head_rows(rows) if per_lane.mistake is None else per_lane
        if length != width:
            # nn.MultiheadAttention wants (B*M*H, L, S) with L = S for self-attention over the
            # lane's tokens; (B*M*H, 1, S) from kpm[:, None, :] is refused by torch
            return self._wrong(
                "attn_mask_3d",
                "unrecognised",
                f"it is {tuple(mask.shape)}: L = {length} query rows for S = {width} keys, but "
                f"self-attention over a lane's tokens needs L = S = {self.s}",
            )
        wrong_rows = self._wrong_row_count(rows)
        if wrong_rows is not None:
            return wrong_rows
        heads = rows // self.lanes
        self.num_heads = heads  # inferred from the rows when not given: the fix can name it
        as_lane_head = (~blocked).reshape(self.lanes, heads, length, width)  # rows b*H + h
        as_head_lane = (~blocked).reshape(heads, self.lanes, length, width)  # rows h*B*M + b
        interleaved = self._judge_rows(as_lane_head.flatten(0, 1)[::heads], "attn_mask_3d")
        if interleaved.mistake is None and heads_agree(~blocked, self.lanes, heads):
            return interleaved
        if heads > 1 and repeats_with_period(~blocked, self.lanes, heads):
            head_major = self._judge_rows(as_head_lane[0], "attn_mask_3d")
            if head_major.mistake is None:
                return self._wrong(
                    "attn_mask_3d",
                    "head_major_3d_mask",
                    "row b*H + h holds lane (b*H + h) % (B*M)'s mask: built with repeat(H, 1, 1) "
                    "instead of repeat_interleave(H, 0)",
                )
        if interleaved.mistake is None:  # head 0 of every lane is right, another head is not
            return self._wrong(
                "attn_mask_3d",
                "disagrees_with_points",
                "the heads of one lane block different keys: not a padding mask",
            )
        return interleaved

    def _empty_rank3(self, mask: torch.Tensor) -> Diagnosis:
        """A 3-D mask with no entry (no lane, or no token): only its shape can be judged, and
        it is judged as `validate` judges it."""
        rows, length, width = mask.shape
        fits = mask.dtype == torch.bool or mask.is_floating_point()
        if not fits or length != self.s or width != self.s or (self.lanes == 0 and rows):
            return self._unrecognised(
                f"an empty 3-D mask {tuple(mask.shape)} for B*M = {self.lanes} lanes of "
                f"S = {self.s} tokens"
            )
        if self.lanes == 0:  # (0, S, S) is B*M*H rows for every H
            return self._ok("attn_mask_3d")
        if rows == self.lanes and (self.num_heads or 0) != 1:
            return self._missing_head_rows(rows)
        wrong_rows = self._wrong_row_count(rows)
        if wrong_rows is not None:
            return wrong_rows
        self.num_heads = rows // self.lanes
        return self._ok("attn_mask_3d")

    def _wrong_row_count(self, rows: int) -> Diagnosis | None:
        """A 3-D mask's rows that are not `B*M*H` (for the given `num_heads`, or some H), or
        None when they are."""
        if self.lanes == 0 or rows % self.lanes:
            return self._unrecognised(
                f"a 3-D mask with {rows} rows: not a multiple of B*M = {self.lanes}"
            )
        heads = rows // self.lanes
        if self.num_heads is not None and heads != self.num_heads:
            return self._wrong(
                "attn_mask_3d",
                "unrecognised",
                f"it has {rows} rows = B*M*{heads}, but num_heads = {self.num_heads}",
            )
        return None

    def _missing_head_rows(self, rows: int) -> Diagnosis:
        return self._wrong(
            "attn_mask_3d",
            "missing_head_rows",
            f"it has {rows} rows (one per lane); nn.MultiheadAttention needs B*M*num_heads"
            f" = {self.lanes}*{self.num_heads or 'H'}"
            + (f" = {self.lanes * self.num_heads}" if self.num_heads else "")
            + " rows in b*H + h order",
        )

    def _rank4(self, mask: torch.Tensor) -> Diagnosis:
        if mask.shape[0] != self.lanes:
            return self._unrecognised(
                f"a 4-D mask with {mask.shape[0]} lanes for B*M = {self.lanes}"
            )
        if (mask.is_floating_point() or mask.dtype == torch.bool) and not broadcasts(
            mask.shape, self.num_heads
        ):
            convention = "additive" if mask.is_floating_point() else "sdpa"
            expected = broadcast_shape(self.lanes, mask.shape[3], self.num_heads)
            detail = (
                f"{tuple(mask.shape)} does not broadcast to (B*M, H, L, S): expected {expected}"
            )
            return self._wrong(convention, "unrecognised", detail)
        if mask.is_floating_point():
            reading = _float_reading(mask)
            if reading is None:
                return self._floating(mask, "additive")
            return self._judge_rows(_one_row(~reading), "additive")
        if mask.dtype == torch.bool:
            return self._judge_rows(_one_row(mask), "sdpa")
        return self._unrecognised(f"a 4-D {mask.dtype} mask")

    def _library(self, mask: torch.Tensor) -> Diagnosis:
        if torch.equal(mask, self.point_mask):
            return self._ok("point_mask")
        if torch.equal(mask, ~self.point_mask):
            return self._wrong("point_mask", "inverted_polarity", "True marks padded slots")
        return self._wrong("point_mask", "disagrees_with_points", "")

    # -- judging a reading -----------------------------------------------------------------------

    def _floating(self, mask: torch.Tensor, convention: str) -> Diagnosis:
        """A float mask whose values are not 0 / -inf: 0/1, or a finite fill."""
        values = torch.unique(mask)
        if bool(((values == 0) | (values == 1)).all()):
            return self._wrong(
                convention,
                "float_mask_as_additive",
                "torch adds a float mask to the attention scores; use a bool mask",
            )
        negative = values[values < 0]
        if negative.numel() == 1 and bool(((values == 0) | (values == negative)).all()):
            fill = float(negative[0])
            # read it as if the fill were -inf: rows, heads and polarity are judged as usual
            reading = self.read(mask.masked_fill(mask == fill, float("-inf")))
            if reading.ok and reading.convention is not None:
                return self._wrong(
                    reading.convention, "finite_fill", f"the fill is {fill:g}, not -inf"
                )
            if reading.convention is not None and reading.mistake != "unrecognised":
                # a layout mistake as well (head order, rows, polarity): name it, note the fill
                note = f" The fill is also {fill:g}, not -inf."
                return Diagnosis(
                    reading.convention, reading.mistake, reading.advice + note, reading.fix
                )
        return self._unrecognised(f"a float mask with values {values[:6].tolist()}")

    def _judge_rows(self, keep_rows: torch.Tensor, convention: str) -> Diagnosis:
        """`keep_rows [B*M, L, W]` or `[B*M, W]` in keep form: rows must agree, then judge."""
        if keep_rows.dim() == 3:
            if keep_rows.shape[1] == 0 and keep_rows.shape[0]:
                return self._wrong(
                    convention,
                    "unrecognised",
                    f"it is {tuple(keep_rows.shape)} read per lane: no head or query row holds "
                    "the lane's keys",
                )
            if not torch.equal(keep_rows, keep_rows[:, :1].expand_as(keep_rows)):
                return self._wrong(
                    convention,
                    "disagrees_with_points",
                    "query rows of one lane differ: not a padding mask",
                )
            # (no lane: no row either, and nothing to read)
            keep_rows = keep_rows[:, 0] if keep_rows.shape[1] else keep_rows.flatten(0, 1)
        return self._judge(keep_rows, convention)

    def _judge(self, got_keep: torch.Tensor, convention: str) -> Diagnosis:
        """Compare `got_keep [B*M, W]` (True = real token) with the expected `[B*M, S]`."""
        per_lane = self.point_mask.reshape(self.lanes, self.n)  # [B*M, N]
        if got_keep.shape == self.keep.shape:
            if torch.equal(got_keep, self.keep):
                return self._ok(convention)
            if torch.equal(got_keep, ~self.keep):
                return self._wrong(convention, "inverted_polarity", _polarity_advice(convention))
            if self.q:
                ones = torch.ones_like(got_keep[:, : self.q])
                if torch.equal(got_keep, torch.cat([per_lane, ones], dim=1)):
                    return self._wrong(
                        convention,
                        "shifted_query_column",
                        "the query column(s) were appended after the points, but the query "
                        "token is prepended",
                    )
                if torch.equal(got_keep[:, self.q :], per_lane):
                    return self._wrong(convention, "masked_query_column", "")
            wrong = int((got_keep != self.keep).sum())
            return self._wrong(
                convention,
                "disagrees_with_points",
                f"{wrong} of {got_keep.numel()} entries disagree with point_mask",
            )
        if self.q and got_keep.shape == (self.lanes, self.n):
            if torch.equal(got_keep, per_lane) or torch.equal(got_keep, ~per_lane):
                inverted = torch.equal(got_keep, ~per_lane) and bool(per_lane.any())
                return self._wrong(
                    convention,
                    "missing_query_column",
                    f"it has N = {self.n} columns; with {self.q} query token(s) the consumer "
                    f"sees S = {self.s} keys"
                    + ("; its polarity is inverted as well" if inverted else ""),
                )
        detail = (
            f"shape {tuple(got_keep.shape)} where ({self.lanes}, {self.s}) = (B*M, S) was expected"
        )
        width = got_keep.shape[-1]
        if self.given_q and got_keep.shape[0] == self.lanes and width > self.n and width != self.s:
            # the width says another query-token count: name it rather than rebuild with this one
            detail += (
                f"; its {width} columns are N + {width - self.n}: if the model prepends "
                f"{width - self.n} query token(s), diagnose it with query_tokens={width - self.n}"
            )
        return self._wrong(convention, "unrecognised", detail)

    def _detail_counts(self, mask: torch.Tensor) -> str:
        expected, _ = to_cu_seqlens(self.point_mask, self.q)
        return f"expected offsets {expected.tolist()[:8]}, got {mask.tolist()[:8]}"

    # -- building results ------------------------------------------------------------------------

    def _ok(self, convention: str, extra: str = "") -> Diagnosis:
        c = CONVENTIONS[convention]
        fix = self._call(convention)
        advice = f"OK: a correct {convention} ({c.shape}, {c.dtype}, {c.meaning}) for {c.used_by}."
        return Diagnosis(convention, None, advice + extra, fix)

    def _wrong(
        self, convention: str, mistake: str, detail: str, fix: str | None = None
    ) -> Diagnosis:
        fix = fix or self._call(convention)
        advice = f"{mistake}: {MISTAKES[mistake]}."
        if detail:
            advice += f" Here: {detail}."
        advice += f" Read as convention {convention}. Build it with {fix}"
        prefer = CONVENTIONS[convention].prefer
        if prefer is not None:
            advice += f", or better pass a 2D {prefer}: {self._call(prefer)}"
        advice += "."
        if "query_tokens=Q" in fix:
            advice += _NEEDS_QUERY_TOKENS
        return Diagnosis(convention, mistake, advice, fix)

    def _unrecognised(self, what: str) -> Diagnosis:
        # Nothing was recognised, so a width-inferred count is no evidence: only a given one is.
        convention = self.intended or "key_padding_mask"
        q_label = self.q_label if self.given_q else "Q"
        fix = CONVENTIONS[convention].call(q_label, self.num_heads)
        consumer = (
            "nn.MultiheadAttention" if convention == "key_padding_mask" else f"a {convention}"
        )
        advice = (
            f"unrecognised: {what} fits no convention lpim knows (see `lpim conventions`). For "
            f"{consumer} build {fix}."
        )
        if q_label == "Q":
            advice += _NEEDS_QUERY_TOKENS
        return Diagnosis(None, "unrecognised", advice, fix)

    def _call(self, convention: str) -> str:
        """The lpim call that builds `convention` for this `point_mask`."""
        return CONVENTIONS[convention].call(self.q_label, self.num_heads)


_NEEDS_QUERY_TOKENS = (
    " Q: the query tokens the model prepends to each lane; the mask's width does not tell, so "
    "pass query_tokens= to diagnose to have them checked."
)


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _polarity_advice(convention: str) -> str:
    meaning = CONVENTIONS[convention].meaning
    return f"this convention means '{meaning}'; lpim's point_mask means True = real point"


def _float_reading(mask: torch.Tensor) -> torch.Tensor | None:
    """Blocked entries of a 0 / -inf float mask, or None if it holds other values."""
    neg_inf = mask == float("-inf")
    if bool((neg_inf | (mask == 0)).all()):
        return neg_inf
    return None


def _one_row(mask4d: torch.Tensor) -> torch.Tensor:
    """`(B*M, h, l, S)` -> `(B*M, h*l, S)`: every head and query row, for _judge_rows."""
    lanes, heads, rows, width = mask4d.shape
    return mask4d.reshape(lanes, heads * rows, width)  # explicit: -1 is ambiguous at 0 lanes
