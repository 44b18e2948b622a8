"""`diagnose`: given a mask someone built, say what it is, what is wrong with it, and what to call.

:func:`validate` answers "is this a correct ``X``?". :func:`diagnose` answers the question a user
with a failing model has: "what did I build?". It reads the mask under every convention whose
shape and dtype fit, compares each reading with what ``point_mask`` says, and names the first
match: a correct convention, or one of the known mistakes in :data:`MISTAKES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lpim.masks.conventions import (
    CONVENTIONS,
    check_count,
    check_has_values,
    check_point_mask,
    describe,
)
from lpim.masks.convert import keep_tokens, to_cu_seqlens

MISTAKES: dict[str, str] = {
    "inverted_polarity": "True and False (or 0 and 1) are swapped for this convention",
    "head_major_order": "a 3D mask built with repeat(H, 1, 1): each head reads another lane's "
    "mask; it runs without error",
    "missing_head_rows": "a 3D mask with one row per lane (B*M) where nn.MultiheadAttention "
    "needs one per lane and head (B*M*num_heads)",
    "missing_query_column": "the mask covers the N points but not the query token(s) prepended "
    "to each lane",
    "shifted_query_column": "the query column is at the wrong end, so every point's mask is off "
    "by one slot",
    "masked_query_column": "the query token is masked: lanes see no query and empty lanes have "
    "no real key at all",
    "float_01_mask": "a float 0/1 mask is ADDED to the scores: +1 on some keys masks nothing",
    "finite_fill": "a finite fill (-1e4, -1e9) instead of -inf: large scores leak through, and "
    "-1e9 overflows float16",
    "disagrees_with_points": "the layout fits a convention but the values disagree with point_mask",
    "unrecognised": "no convention's shape and dtype fit",
}
"""Every mistake :func:`diagnose` can name, with what it means."""


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found.

    Attributes:
        convention: the convention whose layout the mask has (a key of
            :data:`~lpim.masks.CONVENTIONS`), or None when none fits.
        mistake: None for a correct mask, else a key of :data:`MISTAKES`.
        advice: what was found and what to do; also ``str(diagnosis)``.
        fix: the lpim call that builds the right mask.
    """

    convention: str | None
    mistake: str | None
    advice: str
    fix: str

    @property
    def ok(self) -> bool:
        """True when the mask is a correct mask of ``convention``."""
        return self.mistake is None and self.convention is not None

    def __str__(self) -> str:
        return self.advice


def diagnose(
    mask: torch.Tensor,
    point_mask: torch.Tensor,
    num_heads: int | None = None,
    query_tokens: int = 0,
    *,
    intended: str | None = None,
) -> Diagnosis:
    """Name the convention ``mask`` follows, or the known mistake it is.

    Args:
        mask: the mask to examine, built by someone for ``point_mask``.
        point_mask: ``[B, M, N]`` bool, True = real point: what the mask should encode.
        num_heads: ``H``, to judge a 3D ``attn_mask``; inferred from its row count if omitted.
        query_tokens: tokens prepended to each lane, never masked.
        intended: the convention the mask is meant to be (e.g. ``"key_padding_mask"``). Some
            masks are correct under one convention and inverted under another: a ``(B*M, S)``
            bool with True = real is a fine ``attention_mask`` and an inverted
            ``key_padding_mask``. Without ``intended`` the correct reading wins and the advice
            warns about the other.

    Returns:
        A :class:`Diagnosis`; ``str()`` of it is the advice. Any ``mask`` gets one, whatever its
        rank, dtype or size (``unrecognised`` when nothing fits); a mask on another device is
        read on ``point_mask``'s.

    Raises:
        MaskConventionError: ``point_mask`` is not a ``[B, M, N]`` bool tensor, or ``mask`` or
            ``point_mask`` is on the ``meta`` device (no values to read).
        ValueError: ``num_heads < 1``, ``query_tokens < 0`` or an unknown ``intended``.
        TypeError: ``num_heads`` or ``query_tokens`` is not an int.
    """
    check_point_mask(point_mask, "diagnose")
    check_has_values(point_mask, "point_mask", "diagnose", "point_mask")
    if num_heads is not None:
        num_heads = check_count(num_heads, "num_heads", "diagnose", minimum=1)
    query_tokens = check_count(query_tokens, "query_tokens", "diagnose", minimum=0)
    if intended is not None and intended not in CONVENTIONS:
        raise ValueError(
            f"unknown convention: got intended={intended!r}; expected one of {list(CONVENTIONS)}"
        )
    if not isinstance(mask, torch.Tensor):
        return _unrecognised(f"a {type(mask).__name__}, not a tensor", query_tokens, num_heads)
    check_has_values(mask, "the mask", "diagnose", "point_mask")
    if mask.device != point_mask.device:
        mask = mask.to(point_mask.device)
    return _Reader(point_mask, num_heads, query_tokens, intended).read(mask)


class _Reader:
    """Reads one mask against one ``point_mask``; each ``_rank*`` method handles one rank."""

    def __init__(
        self, point_mask: torch.Tensor, num_heads: int | None, q: int, intended: str | None
    ):
        self.point_mask = point_mask
        b, m, n = point_mask.shape
        self.lanes, self.n, self.q, self.s = b * m, n, q, n + q
        self.num_heads = num_heads
        self.intended = intended
        self.keep = keep_tokens(point_mask, q)  # [B*M, S], True = real token

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
        return _unrecognised(f"a {mask.dim()}-D mask ({describe(mask)})", self.q, self.num_heads)

    # -- by rank --------------------------------------------------------------------------------

    def _rank1(self, mask: torch.Tensor) -> Diagnosis:
        if mask.is_floating_point() or mask.dtype == torch.bool:
            return _unrecognised(f"a 1-D {mask.dtype} tensor", self.q, self.num_heads)
        counts = self.keep.sum(dim=1)  # [B*M]
        if mask.numel() == self.lanes + 1:
            expected, _ = to_cu_seqlens(self.point_mask, self.q)
            if torch.equal(mask.long(), expected.long()):
                note = "" if mask.dtype == torch.int32 else " (flash-attn wants int32)"
                return self._ok("cu_seqlens", extra=note)
            return self._wrong("cu_seqlens", "disagrees_with_points", self._detail_counts(mask))
        if mask.numel() == self.lanes:
            slot = torch.arange(self.s, device=mask.device)
            if not torch.equal(self.keep, slot < counts[:, None]):
                # to_lengths refuses this layout, so the fix is offsets over packed points
                offsets = _call("cu_seqlens", self.q, self.num_heads)
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
        return _unrecognised(
            f"a 1-D tensor of {mask.numel()} entries for B*M = {self.lanes} lanes",
            self.q,
            self.num_heads,
        )

    def _rank2(self, mask: torch.Tensor) -> Diagnosis:
        if mask.shape[0] != self.lanes:
            return _unrecognised(
                f"a 2-D mask with {mask.shape[0]} rows for B*M = {self.lanes} lanes",
                self.q,
                self.num_heads,
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
        return _unrecognised("an integer mask with values other than 0/1", self.q, self.num_heads)

    def _rank3(self, mask: torch.Tensor) -> Diagnosis:
        rows, length, width = mask.shape
        if mask.numel() == 0 and not (rows == self.lanes == 0 and length == width == self.s):
            return _unrecognised(
                f"an empty 3-D mask {tuple(mask.shape)} for B*M = {self.lanes} lanes of "
                f"S = {self.s} tokens",
                self.q,
                self.num_heads,
            )
        if mask.is_floating_point():
            reading = _float_reading(mask)
            if reading is None:
                return self._floating(mask, "attn_mask_3d")
            blocked = reading
        elif mask.dtype == torch.bool:
            blocked = mask
        else:
            return _unrecognised(f"a 3-D {mask.dtype} mask", self.q, self.num_heads)
        if rows == self.lanes and (self.num_heads or 0) != 1:
            per_lane = self._judge_rows(~blocked, "attn_mask_3d")
            if per_lane.mistake is None:
                return self._wrong(
                    "attn_mask_3d",
                    "missing_head_rows",
                    f"it has {rows} rows (one per lane); nn.MultiheadAttention needs B*M*num_heads"
                    f" = {self.lanes}*{self.num_heads or 'H'}"
                    + (f" = {self.lanes * self.num_heads}" if self.num_heads else "")
                    + " rows in b*H + h order",
                )
            return per_lane
        if length != width:
            # nn.MultiheadAttention wants (B*M*H, L, S) with L = S for self-attention over the
            # lane's tokens; (B*M*H, 1, S) from kpm[:, None, :] is refused by torch
            return self._wrong(
                "attn_mask_3d",
                "unrecognised",
                f"it is {tuple(mask.shape)}: L = {length} query rows for S = {width} keys, but "
                f"self-attention over a lane's tokens needs L = S = {self.s}",
            )
        if self.lanes == 0 or rows % self.lanes:
            return _unrecognised(
                f"a 3-D mask with {rows} rows: not a multiple of B*M = {self.lanes}",
                self.q,
                self.num_heads,
            )
        heads = rows // self.lanes
        if self.num_heads is not None and heads != self.num_heads:
            return self._wrong(
                "attn_mask_3d",
                "unrecognised",
                f"it has {rows} rows = B*M*{heads}, but num_heads = {self.num_heads}",
            )
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
                    "head_major_order",
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

    def _rank4(self, mask: torch.Tensor) -> Diagnosis:
        if mask.shape[0] != self.lanes:
            return _unrecognised(
                f"a 4-D mask with {mask.shape[0]} lanes for B*M = {self.lanes}",
                self.q,
                self.num_heads,
            )
        if mask.is_floating_point():
            reading = _float_reading(mask)
            if reading is None:
                return self._floating(mask, "additive")
            return self._judge_rows(_one_row(~reading), "additive")
        if mask.dtype == torch.bool:
            return self._judge_rows(_one_row(mask), "sdpa")
        return _unrecognised(f"a 4-D {mask.dtype} mask", self.q, self.num_heads)

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
                "float_01_mask",
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
        return _unrecognised(
            f"a float mask with values {values[:6].tolist()}", self.q, self.num_heads
        )

    def _judge_rows(self, keep_rows: torch.Tensor, convention: str) -> Diagnosis:
        """``keep_rows [B*M, L, W]`` or ``[B*M, W]`` in keep form: rows must agree, then judge."""
        if keep_rows.dim() == 3:
            if not torch.equal(keep_rows, keep_rows[:, :1].expand_as(keep_rows)):
                return self._wrong(
                    convention,
                    "disagrees_with_points",
                    "query rows of one lane differ: not a padding mask",
                )
            keep_rows = keep_rows[:, 0]
        return self._judge(keep_rows, convention)

    def _judge(self, got_keep: torch.Tensor, convention: str) -> Diagnosis:
        """Compare ``got_keep [B*M, W]`` (True = real token) with the expected ``[B*M, S]``."""
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
        return self._wrong(
            convention,
            "unrecognised",
            f"shape {tuple(got_keep.shape)} where ({self.lanes}, {self.s}) = (B*M, S) was expected",
        )

    def _detail_counts(self, mask: torch.Tensor) -> str:
        expected, _ = to_cu_seqlens(self.point_mask, self.q)
        return f"expected offsets {expected.tolist()[:8]}, got {mask.tolist()[:8]}"

    # -- building results ------------------------------------------------------------------------

    def _ok(self, convention: str, extra: str = "") -> Diagnosis:
        c = CONVENTIONS[convention]
        fix = _call(convention, self.q, self.num_heads)
        advice = f"OK: a correct {convention} ({c.shape}, {c.dtype}, {c.meaning}) for {c.used_by}."
        return Diagnosis(convention, None, advice + extra, fix)

    def _wrong(
        self, convention: str, mistake: str, detail: str, fix: str | None = None
    ) -> Diagnosis:
        fix = fix or _call(convention, self.q, self.num_heads)
        advice = f"{mistake}: {MISTAKES[mistake]}."
        if detail:
            advice += f" Here: {detail}."
        advice += f" Read as convention {convention}. Build it with {fix}"
        if convention == "attn_mask_3d":
            advice += (
                ", or better pass a 2D key_padding_mask: "
                f"{_call('key_padding_mask', self.q, self.num_heads)}"
            )
        return Diagnosis(convention, mistake, advice + ".", fix)


def heads_agree(rows: torch.Tensor, batch: int, num_heads: int) -> bool:
    """True when each batch entry's ``num_heads`` rows are equal, read head-minor.

    ``rows`` is a 3D mask ``(batch * num_heads, L, S)`` (any dtype) read the way
    ``nn.MultiheadAttention`` reads it: row ``n * num_heads + h`` is entry ``n``, head ``h``.
    A padding mask built with ``repeat_interleave(num_heads, 0)`` has this property.
    """
    per_entry = rows.reshape(batch, num_heads, *rows.shape[1:])  # [batch, H, L, S]
    return torch.equal(per_entry, per_entry[:, :1].expand_as(per_entry))


def repeats_with_period(rows: torch.Tensor, batch: int, num_heads: int) -> bool:
    """True when row ``r`` of ``(batch * num_heads, L, S)`` equals row ``r + batch``, for all ``r``.

    That is the layout ``per_entry_mask.repeat(num_heads, 1, 1)`` builds (head-major): the
    ``num_heads`` blocks of ``batch`` rows are copies of each other.
    """
    blocks = rows.reshape(num_heads, batch, *rows.shape[1:])  # [H, batch, L, S]
    return torch.equal(blocks, blocks[:1].expand_as(blocks))


def converter_call(convention: str, query_tokens: int | str, num_heads: int | str | None) -> str:
    """The lpim call that builds ``convention`` (a key of ``CONVENTIONS``), as advice text.

    ``query_tokens`` and ``num_heads`` are written into the call as given, so a caller that
    does not know them can pass a placeholder such as ``"Q"``.
    """
    return _call(convention, query_tokens, num_heads)


def _unrecognised(what: str, q: int, num_heads: int | None) -> Diagnosis:
    fix = _call("key_padding_mask", q, num_heads)
    advice = (
        f"unrecognised: {what} fits no convention lpim knows (see `lpim conventions`). For "
        f"nn.MultiheadAttention build {fix}."
    )
    return Diagnosis(None, "unrecognised", advice, fix)


def _call(convention: str, q: int | str, num_heads: int | str | None) -> str:
    """The lpim call that builds ``convention`` for this ``point_mask``."""
    heads = num_heads if num_heads is not None else "H"
    return {
        "point_mask": "LaneBatch(points, point_mask) with point_mask True = real point",
        "key_padding_mask": f"lpim.masks.to_key_padding_mask(point_mask, query_tokens={q})",
        "attn_mask_3d": f"lpim.masks.to_attn_mask_3d(point_mask, num_heads={heads}, "
        f"query_tokens={q})",
        "additive": f"lpim.masks.to_additive_mask(point_mask, dtype, query_tokens={q})",
        "sdpa": f"lpim.masks.to_sdpa_mask(point_mask, query_tokens={q})",
        "attention_mask": f"lpim.masks.to_attention_mask(point_mask, query_tokens={q})",
        "lengths": f"lpim.masks.to_lengths(point_mask, query_tokens={q})",
        "cu_seqlens": f"lpim.masks.to_cu_seqlens(point_mask, query_tokens={q})",
        "nested": "lpim.masks.to_nested(points, point_mask)",
    }[convention]


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
    """``(B*M, h, l, S)`` -> ``(B*M, h*l, S)``: every head and query row, for _judge_rows."""
    lanes, heads, rows, width = mask4d.shape
    return mask4d.reshape(lanes, heads * rows, width)  # explicit: -1 is ambiguous at 0 lanes
