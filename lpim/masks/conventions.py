"""The mask conventions lpim knows, each named once, and the error that names them.

Every converter, validator and diagnosis in :mod:`lpim.masks` refers to a convention by the
``name`` it has here; ``lpim conventions`` prints this registry as a table.

Shapes use ``B`` samples, ``M`` lanes, ``N`` point slots, ``H`` heads and ``q`` query tokens
prepended to each lane, so a lane is a sequence of ``S = L = q + N`` tokens. Every consumer
convention flattens samples and lanes into one batch axis of ``B*M`` sequences.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Convention:
    """One way of saying which tokens are real.

    Attributes:
        name: the name used across lpim (``validate(mask, name)``, ``diagnose(...).convention``).
        shape: the shape it has, in the symbols of this module.
        dtype: the dtype(s) it has.
        meaning: what ``True`` (or a value) means, i.e. its polarity.
        used_by: who consumes it.
        converter: the lpim call that builds it from a ``point_mask``.
        inverse: the lpim call that turns it back into a ``point_mask`` (empty if it cannot).
    """

    name: str
    shape: str
    dtype: str
    meaning: str
    used_by: str
    converter: str
    inverse: str


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in [
        Convention(
            "point_mask",
            "[B, M, N]",
            "bool",
            "True = real point (lpim's own convention)",
            "lpim, LaneBatch, PriorEncoder",
            "LaneBatch.point_mask",
            "",
        ),
        Convention(
            "key_padding_mask",
            "(B*M, S)",
            "bool",
            "True = ignore this key",
            "nn.MultiheadAttention, nn.Transformer*",
            "to_key_padding_mask(point_mask, query_tokens)",
            "from_key_padding_mask(mask, num_lanes, query_tokens)",
        ),
        Convention(
            "attn_mask_3d",
            "(B*M*H, L, S), row b*H + h",
            "bool",
            "True = blocked; heads are the minor index (repeat_interleave)",
            "nn.MultiheadAttention attn_mask",
            "to_attn_mask_3d(point_mask, num_heads, query_tokens)",
            "from_attn_mask_3d(mask, num_heads, num_lanes, query_tokens)",
        ),
        Convention(
            "additive",
            "(B*M, 1, 1, S), broadcast to (B*M, H, L, S)",
            "floating",
            "0 = keep, -inf = block (added to the scores)",
            "F.scaled_dot_product_attention, MHA, xformers",
            "to_additive_mask(point_mask, dtype, query_tokens)",
            "from_additive_mask(mask, num_lanes, query_tokens)",
        ),
        Convention(
            "sdpa",
            "(B*M, 1, 1, S), broadcast to (B*M, H, L, S)",
            "bool",
            "True = attend (the opposite of MHA)",
            "F.scaled_dot_product_attention",
            "to_sdpa_mask(point_mask, query_tokens)",
            "from_sdpa_mask(mask, num_lanes, query_tokens)",
        ),
        Convention(
            "attention_mask",
            "(B*M, S)",
            "int64 (or bool)",
            "1 = valid token",
            "flash-attn unpad_input, Hugging Face",
            "to_attention_mask(point_mask, query_tokens)",
            "from_attention_mask(mask, num_lanes, query_tokens)",
        ),
        Convention(
            "lengths",
            "(B*M,)",
            "int64",
            "number of real tokens; right padding only",
            "pack_padded_sequence, length-based kernels",
            "to_lengths(point_mask, query_tokens)",
            "from_lengths(lengths, num_lanes, num_points, query_tokens)",
        ),
        Convention(
            "cu_seqlens",
            "(B*M + 1,) and max_seqlen",
            "int32",
            "offsets of each lane's tokens in the packed [T, ...] tensor",
            "flash-attn varlen",
            "to_cu_seqlens(point_mask, query_tokens)",
            "from_cu_seqlens(cu_seqlens, num_lanes, num_points, query_tokens)",
        ),
        Convention(
            "nested",
            "jagged (B*M, j, D), offsets (B*M + 1,)",
            "points' dtype",
            "no mask at all: only real points are stored",
            "torch.nested, SDPA on nested tensors",
            "to_nested(points, point_mask)",
            "unpack(nested.values(), point_mask)",
        ),
    ]
}
"""Every convention by name, the library's own ``point_mask`` first."""


class MaskConventionError(ValueError):
    """A mask does not have the shape, dtype, device or values its convention requires.

    The message states the convention that was assumed, what was expected (shape, dtype, device,
    polarity), what came, and the lpim call that builds the right mask.

    Attributes:
        convention: the convention name assumed (a key of :data:`CONVENTIONS`).
        expected: what that convention requires, in words.
        got: what came, in words.
        hint: what to call instead (may be empty).
    """

    def __init__(self, problem: str, *, convention: str, expected: str, got: str, hint: str = ""):
        self.problem = problem
        self.convention = convention
        self.expected = expected
        self.got = got
        self.hint = hint
        described = CONVENTIONS.get(convention)
        assumed = (
            f"{convention}: {described.shape} {described.dtype}, {described.meaning}; "
            f"used by {described.used_by}"
            if described
            else convention
        )
        lines = [problem, f"  convention assumed: {assumed}", f"  expected: {expected}"]
        lines.append(f"  got:      {got}")
        if hint:
            lines.append(f"  fix:      {hint}")
        super().__init__("\n".join(lines))


def describe(tensor: torch.Tensor) -> str:
    """``"shape (2, 5), torch.bool, cpu"``: how error messages show a tensor that came."""
    return f"shape {tuple(tensor.shape)}, {tensor.dtype}, {tensor.device}"


def check_point_mask(point_mask: object, where: str) -> torch.Tensor:
    """Check that ``point_mask`` is a ``[B, M, N]`` bool tensor; return it.

    ``where`` names the lpim call, so the error says which argument of which function is wrong.
    """
    if not isinstance(point_mask, torch.Tensor):
        raise MaskConventionError(
            f"{where}: point_mask must be a tensor",
            convention="point_mask",
            expected="a [B, M, N] torch.bool tensor, True = real point",
            got=type(point_mask).__name__,
        )
    if point_mask.dtype != torch.bool or point_mask.dim() != 3:
        inverted_hint = (
            "if 1 means a real point use point_mask.bool(); if it is a key_padding_mask "
            "(True = ignore) use lpim.masks.from_key_padding_mask"
        )
        raise MaskConventionError(
            f"{where}: point_mask must be [B, M, N] torch.bool",
            convention="point_mask",
            expected="a [B, M, N] torch.bool tensor, True = real point",
            got=describe(point_mask),
            hint=inverted_hint if point_mask.dtype != torch.bool else "",
        )
    return point_mask


def check_count(value: object, name: str, where: str, *, minimum: int) -> int:
    """Check that ``value`` is an integer (not a bool) of at least ``minimum``; return it.

    Raises:
        TypeError: ``value`` is not an integer (a float, a bool, a string, None, ...).
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be an int >= {minimum}; got the bool {value}")
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{where}: {name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})"
        ) from None
    if count < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {count} (in {where})")
    return count


def check_has_values(tensor: torch.Tensor, name: str, where: str, convention: str) -> None:
    """Refuse a tensor on the ``meta`` device where ``where`` has to read its values.

    Meta tensors carry shape, dtype and device but no values: shape-only converters (such as
    :func:`~lpim.masks.to_key_padding_mask`) accept them, anything that reads values refuses them
    here rather than failing deep inside torch.
    """
    if tensor.device.type == "meta":
        raise MaskConventionError(
            f"{where}: {name} is on the meta device, which holds no values, and {where} reads them",
            convention=convention,
            expected=f"{name} on a device with data (cpu, cuda, ...)",
            got=describe(tensor),
            hint="build the mask from real data; on meta only shape-only converters work "
            "(to_key_padding_mask, to_attn_mask_3d, to_additive_mask, to_sdpa_mask, "
            "to_attention_mask, keep_tokens)",
        )
