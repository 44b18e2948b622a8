"""The error every mask function raises, and the checks of the arguments they all share."""

from __future__ import annotations

import torch

from lpim._errors import UsageValueError
from lpim._validation import dense_message, point_mask_dtype_message
from lpim.masks._conventions import CONVENTIONS

__all__ = [
    "MaskConventionError",
    "check_dense_mask",
    "check_has_values",
    "check_point_mask",
    "describe_tensor",
]


class MaskConventionError(UsageValueError):
    """A mask does not have the shape, dtype, device or values its convention requires.

    The message states the convention that was assumed, what was expected (shape, dtype, device,
    polarity), what came, and the lpim call that builds the right mask.

    Attributes:
        problem: what is wrong, in one line.
        convention: the convention name assumed (a key of
            [`CONVENTIONS`][lpim.masks.CONVENTIONS]).
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


def describe_tensor(tensor: torch.Tensor) -> str:
    """`"shape (2, 5), torch.bool, cpu"`: how error messages show a tensor that came (a
    sparse or nested one says so)."""
    if tensor.is_nested:
        return f"a nested tensor, {tensor.dtype}, {tensor.device}"
    layout = "" if tensor.layout == torch.strided else f", {tensor.layout}"
    return f"shape {tuple(tensor.shape)}, {tensor.dtype}, {tensor.device}{layout}"


def check_dense_mask(tensor: object, name: str, where: str, convention: str) -> None:
    """Refuse a sparse or nested `tensor` (anything else passes): masks are dense tensors.

    torch's attention takes dense masks, and the converters' reshapes and comparisons fail on
    sparse ones deep inside torch; this says so first, with the one wording of
    `lpim._validation.dense_message`.
    """
    if isinstance(tensor, torch.Tensor) and (tensor.is_nested or tensor.layout != torch.strided):
        raise MaskConventionError(
            f"{where}: {dense_message(tensor, name)}",
            convention=convention,
            expected=f"{name} as a dense (torch.strided) tensor",
            got=describe_tensor(tensor),
        )


def check_point_mask(point_mask: object, where: str) -> torch.Tensor:
    """Check that `point_mask` is a `[B, M, N]` bool tensor; return it.

    `where` names the lpim call, so the error says which argument of which function is wrong.
    """
    if not isinstance(point_mask, torch.Tensor):
        raise MaskConventionError(
            f"{where}: point_mask must be a tensor",
            convention="point_mask",
            expected="a [B, M, N] torch.bool tensor, True = real point",
            got=type(point_mask).__name__,
        )
    check_dense_mask(point_mask, "point_mask", where, "point_mask")
    if point_mask.dtype != torch.bool:
        raise MaskConventionError(
            f"{where}: {point_mask_dtype_message(point_mask.dtype)}",
            convention="point_mask",
            expected="a [B, M, N] torch.bool tensor, True = real point",
            got=describe_tensor(point_mask),
            hint="lpim.masks.from_key_padding_mask reads a key_padding_mask back into a point_mask",
        )
    if point_mask.dim() != 3:
        raise MaskConventionError(
            f"{where}: point_mask must be [B, M, N] torch.bool",
            convention="point_mask",
            expected="a [B, M, N] torch.bool tensor, True = real point",
            got=describe_tensor(point_mask),
        )
    return point_mask


def check_has_values(tensor: torch.Tensor, name: str, where: str, convention: str) -> None:
    """Refuse a tensor on the `meta` device where `where` has to read its values.

    Meta tensors carry shape, dtype and device but no values: shape-only converters (such as
    [`to_key_padding_mask`][lpim.masks.to_key_padding_mask]) accept them, anything that reads
    values refuses them here rather than failing deep inside torch.
    """
    if tensor.device.type == "meta":
        raise MaskConventionError(
            f"{where}: {name} is on the meta device, which holds no values, and {where} reads them",
            convention=convention,
            expected=f"{name} on a device with data (cpu, cuda, ...)",
            got=describe_tensor(tensor),
            hint="build the mask from real data; on meta only shape-only converters work "
            "(to_key_padding_mask, to_attn_mask_3d, to_additive_mask, to_sdpa_mask, "
            "to_attention_mask, keep_tokens)",
        )
