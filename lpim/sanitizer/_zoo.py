"""The sanitizer's zoo: one buggy attention call per finding kind, each with a harmless twin.

Drawn from the patterns seen in real repositories outside lane encoders (video-text retrieval,
moment retrieval, sequential recommendation, code summarisation, a from-scratch Transformer):
each example is a few lines of the mask-building code such a model has, on its shapes. The buggy
one gives its kind; the twin, the same call made right or a variant that does no harm in this
call (a `-1e4` fill in float32), gives nothing. The tests and the docs' table run every one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SanitizerExample:
    """One pattern: a buggy call that the sanitizer reports as `kind`, and its harmless twin.

    Attributes:
        name: a short identifier.
        kind: the finding kind the buggy call gives (one of `lpim.sanitizer.KINDS`).
        domain: where the pattern comes from (e.g. "video-text retrieval"), with its shapes.
        bug: what the buggy call does wrong, one line.
        twin: what the harmless twin does, one line.
        buggy: runs the buggy call once (under whatever sanitizer is active).
        harmless: runs the twin once.
    """

    name: str
    kind: str
    domain: str
    bug: str
    twin: str
    buggy: Callable[[], object]
    harmless: Callable[[], object]


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _mha(embed: int, heads: int) -> nn.MultiheadAttention:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.MultiheadAttention(embed, heads, batch_first=True).eval()


# -- missing_head_rows: a code-summarisation encoder, 3 snippets x 7 tokens, 4 heads ------------


def _snippets() -> tuple[nn.MultiheadAttention, Tensor, Tensor]:
    tokens = torch.randn(3, 7, 16, generator=_gen())  # [N, L, E]
    lengths = torch.tensor([7, 5, 2])
    key_padding_mask = torch.arange(7)[None] >= lengths[:, None]  # [N, S], True = padded
    per_snippet = key_padding_mask[:, None, :].expand(3, 7, 7)  # [N, L, S], True = blocked
    return _mha(16, 4), tokens, per_snippet


def _missing_head_rows_bug() -> None:
    mha, tokens, per_snippet = _snippets()
    try:
        mha(tokens, tokens, tokens, attn_mask=per_snippet)  # N rows where N*H are needed
    except RuntimeError:
        pass  # torch raises after the sanitizer has spoken


def _missing_head_rows_twin() -> None:
    mha, tokens, per_snippet = _snippets()
    mha(tokens, tokens, tokens, attn_mask=per_snippet.repeat_interleave(4, dim=0))


# -- head_major_3d_mask: moment retrieval over clips, 2 videos x 6 clips, 4 heads ----------------


def _clips() -> tuple[nn.MultiheadAttention, Tensor, Tensor]:
    clips = torch.randn(2, 6, 16, generator=_gen())  # [N, L, E]
    lengths = torch.tensor([6, 3])
    padded = torch.arange(6)[None] >= lengths[:, None]  # [N, S], True = padded
    per_video = padded[:, None, :].expand(2, 6, 6)  # [N, L, S], True = blocked
    return _mha(16, 4), clips, per_video


def _head_major_bug() -> None:
    mha, clips, per_video = _clips()
    attn_mask = per_video.repeat(4, 1, 1)  # head-major: N = 2 divides H = 4
    mha(clips, clips, clips, attn_mask=attn_mask, need_weights=False)


def _head_major_twin() -> None:
    mha, clips, per_video = _clips()
    attn_mask = per_video.repeat_interleave(4, dim=0)  # head-minor: row n*H + h
    mha(clips, clips, clips, attn_mask=attn_mask, need_weights=False)


# -- float_mask_as_additive: a from-scratch Transformer decoder, 2 sentences x 5 tokens ---------


def _decoder_inputs() -> Tensor:
    return torch.randn(2, 4, 5, 8, generator=_gen())  # [N, H, L, E/H]


def _float_causal_bug() -> None:
    q = _decoder_inputs()
    causal = torch.tril(torch.ones(5, 5))  # 1 = may attend, 0 = future: added, masks nothing
    F.scaled_dot_product_attention(q, q, q, attn_mask=causal)


def _float_causal_twin() -> None:
    q = _decoder_inputs()
    F.scaled_dot_product_attention(q, q, q, is_causal=True)


# -- fully_masked_rows: video-text retrieval captions, left padding and a causal mask ----------


def _captions() -> tuple[Tensor, Tensor]:
    q = torch.randn(2, 2, 6, 8, generator=_gen())  # [N, H, L, E/H]
    real = torch.arange(6)[None] >= torch.tensor([0, 3])[:, None]  # [N, S] left padded
    return q, real


def _fully_masked_bug() -> None:
    q, real = _captions()
    causal = torch.ones(6, 6, dtype=torch.bool).tril()  # [L, S], True = attend
    sdpa_mask = causal & real[:, None, None, :]  # a padded query row keeps no key
    F.scaled_dot_product_attention(q, q, q, attn_mask=sdpa_mask)


def _fully_masked_twin() -> None:
    q, real = _captions()
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    own = torch.eye(6, dtype=torch.bool)  # every row keeps its own key
    sdpa_mask = causal & (real[:, None, None, :] | own)
    F.scaled_dot_product_attention(q, q, q, attn_mask=sdpa_mask)


# -- finite_fill: sequential recommendation, 4 users x 8 items, a float key_padding_mask --------


def _histories(fill: float) -> tuple[nn.MultiheadAttention, Tensor, Tensor]:
    items = 3 * torch.randn(4, 8, 16, generator=_gen())  # [N, S, E]
    padded = torch.arange(8)[None] >= torch.tensor([8, 6, 3, 1])[:, None]  # True = padded
    key_padding_mask = torch.zeros(4, 8).masked_fill(padded, fill)  # added to the scores
    return _mha(16, 2), items, key_padding_mask


def _leaky_fill_bug() -> None:
    mha, items, key_padding_mask = _histories(-10.0)  # leaves weight on padded items
    mha(items, items, items, key_padding_mask=key_padding_mask, need_weights=False)


def _leaky_fill_twin() -> None:
    mha, items, key_padding_mask = _histories(-1e4)  # float32: exp(-1e4) is exactly 0
    mha(items, items, items, key_padding_mask=key_padding_mask, need_weights=False)


# -- finite_fill, written by hand: a code-summarisation attention, masked_fill then softmax ------


def _hand_scores() -> tuple[Tensor, Tensor]:
    scores = torch.randn(3, 7, 7, generator=_gen())  # [N, L, S]
    valid = (torch.arange(7)[None] < torch.tensor([7, 4, 2])[:, None]).int()[:, None, :]
    return scores, valid  # valid [N, 1, S], 1 = real token


def _hand_fill_bug() -> None:
    scores, valid = _hand_scores()
    scores.masked_fill(valid == 0, -1e-12).softmax(dim=-1)  # -1e-12 masks nothing


def _hand_fill_twin() -> None:
    scores, valid = _hand_scores()
    scores.masked_fill(valid == 0, float("-inf")).softmax(dim=-1)


# -- nonfinite_output: video frames with NaN in padded slots, scaled instead of selected --------


def _frames() -> tuple[Tensor, Tensor]:
    frames = torch.randn(2, 5, 8, generator=_gen())  # [N, S, E]
    real = torch.arange(5)[None] < torch.tensor([5, 2])[:, None]  # [N, S], True = real
    frames[~real] = float("nan")  # what a loader leaves in padded slots
    return frames, real


def _nonfinite_bug() -> None:
    frames, real = _frames()
    values = frames * real[..., None]  # NaN * 0 is NaN
    F.scaled_dot_product_attention(values, values, values, attn_mask=real[:, None, :])


def _nonfinite_twin() -> None:
    frames, real = _frames()
    values = torch.where(real[..., None], frames, 0.0)  # selected: padded slots are 0
    F.scaled_dot_product_attention(values, values, values, attn_mask=real[:, None, :])


EXAMPLES: list[SanitizerExample] = [
    SanitizerExample(
        "per_snippet_3d_mask", "missing_head_rows",
        "code summarisation, nn.MultiheadAttention, 3 snippets x 7 tokens, 4 heads",
        "a per-snippet (N, L, S) attn_mask where N*H rows are needed (torch raises)",
        "the same mask with repeat_interleave(4, dim=0)",
        _missing_head_rows_bug, _missing_head_rows_twin,
    ),
    SanitizerExample(
        "clip_mask_repeat", "head_major_3d_mask",
        "moment retrieval, nn.MultiheadAttention, 2 videos x 6 clips, 4 heads (N divides H)",
        "per_video.repeat(4, 1, 1): head h of video n reads another video's padding",
        "per_video.repeat_interleave(4, dim=0)",
        _head_major_bug, _head_major_twin,
    ),
    SanitizerExample(
        "float_tril_causal", "float_mask_as_additive",
        "from-scratch Transformer decoder, SDPA, 2 sentences x 5 tokens",
        "torch.tril(torch.ones(5, 5)) as attn_mask: added to the scores, masks nothing",
        "is_causal=True",
        _float_causal_bug, _float_causal_twin,
    ),
    SanitizerExample(
        "left_padded_causal", "fully_masked_rows",
        "video-text retrieval captions, SDPA, 2 captions x 6 tokens, left padding + causal",
        "padded query rows keep no key (SDPA gives 0 here, other paths NaN)",
        "every row keeps its own key",
        _fully_masked_bug, _fully_masked_twin,
    ),
    SanitizerExample(
        "leaky_float_kpm", "finite_fill",
        "sequential recommendation, nn.MultiheadAttention, 4 users x 8 items",
        "a float key_padding_mask filled with -10: padded items keep weight",
        "the same mask filled with -1e4 in float32 (outputs equal the -inf mask's)",
        _leaky_fill_bug, _leaky_fill_twin,
    ),
    SanitizerExample(
        "masked_fill_minus_1e_12", "finite_fill",
        "code summarisation, attention written by hand (masked_fill + softmax)",
        "scores.masked_fill(valid == 0, -1e-12).softmax(-1): masks nothing",
        "masked_fill(valid == 0, float('-inf'))",
        _hand_fill_bug, _hand_fill_twin,
    ),
    SanitizerExample(
        "nan_frames_scaled", "nonfinite_output",
        "video frames with NaN in padded slots, SDPA, 2 videos x 5 frames",
        "frames * real[..., None]: NaN * 0 is NaN, and reaches every row",
        "torch.where(real[..., None], frames, 0.0)",
        _nonfinite_bug, _nonfinite_twin,
    ),
]  # fmt: skip
"""Every sanitizer zoo example, at least one per finding kind."""
