"""`LaneSet`: the input of a lane-set consumer, one step downstream of the encoder.

A lane-set consumer is any module that reads the encoder's lane embeddings as a *set*: BEV queries
cross-attending over the lanes, a pooled scene vector, a planner's map context. It receives

| field | shape | dtype | meaning |
|---|---|---|---|
| `lane_embedding` | `[B, M, C]` | floating | one per lane slot; padded lanes hold anything |
| `lane_mask` | `[B, M]` | `bool` | `True` = real lane (the library convention) |
| `args` | (any) | (any) | other positional inputs, e.g. BEV queries `[B, Q, C]` |
| `kwargs` | (any) | (any) | the consumer's other keyword inputs |

and is called as `consumer(lane_embedding, lane_mask, *args, **kwargs)`. A sample may have no
real lane at all, and so may a whole batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lpim._errors import UsageTypeError, UsageValueError
from lpim._validation import (
    WHY_LANE_SET_VALUES,
    check_callable,
    check_dense,
    check_device,
    check_floating_dtype,
    convert_input,
    mask_dtype_fix,
    no_values_message,
    value_summary,
)

__all__ = ["LaneSet"]


@dataclass(frozen=True, eq=False, repr=False)
class LaneSet:
    """The inputs of one lane-set consumer call.

    Args:
        lane_embedding: `[B, M, C]` floating. Rows of padded lanes are meaningless by
            contract (they may be zeros, huge, inf or NaN); rows of real lanes are finite.
        lane_mask: `[B, M]` `torch.bool`, `True` = real lane. Same device as
            `lane_embedding`.
        args: the consumer's other positional inputs, passed after `lane_mask`. They must
            not depend on `M` (the checks append lanes).
        kwargs: the consumer's other keyword inputs.

    Raises:
        lpim._errors.UsageTypeError: (a `TypeError`) `lane_embedding` is not a floating
            tensor, `lane_mask` not a bool tensor, either is sparse or nested, `args` not a
            tuple or `kwargs` not a mapping.
        lpim._errors.UsageValueError: (a `ValueError`) wrong ranks, shapes that disagree,
            `C = 0`, different devices, the `meta` device (no values to check), or a real lane
            that holds NaN or inf.

    Example:
        ```python
        import torch
        from lpim import LaneSet

        lanes = LaneSet(torch.zeros(2, 3, 4), torch.tensor([[True, True, False], [False] * 3]))
        lanes
        # LaneSet(B=2, M=3, C=4, float32, cpu, real lanes per sample [2, 0],
        #         padded lanes hold zeros)
        ```
    """

    lane_embedding: torch.Tensor
    lane_mask: torch.Tensor
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def shape(self) -> tuple[int, int, int]:
        """`(B, M, C)`."""
        b, m, c = self.lane_embedding.shape
        return b, m, c

    def validate(self) -> None:
        """Check types, shapes, devices and that real lanes are finite (see the class doc)."""
        embedding, lane_mask = self.lane_embedding, self.lane_mask
        if isinstance(embedding, torch.Tensor):
            check_dense(embedding, "lane_embedding")
        if isinstance(lane_mask, torch.Tensor):
            check_dense(lane_mask, "lane_mask")
        if not isinstance(embedding, torch.Tensor) or not embedding.is_floating_point():
            got = embedding.dtype if isinstance(embedding, torch.Tensor) else type(embedding)
            raise UsageTypeError(f"lane_embedding must be a floating tensor [B, M, C]; got {got}")
        if not isinstance(lane_mask, torch.Tensor) or lane_mask.dtype != torch.bool:
            got = lane_mask.dtype if isinstance(lane_mask, torch.Tensor) else type(lane_mask)
            raise UsageTypeError(
                f"lane_mask must be a torch.bool tensor [B, M] (True = real); got {got} — "
                f"{mask_dtype_fix('lane_mask')}"
            )
        if embedding.dim() != 3:
            raise UsageValueError(
                f"lane_embedding must have shape [B, M, C]; got {tuple(embedding.shape)}"
            )
        if tuple(lane_mask.shape) != tuple(embedding.shape[:2]):
            raise UsageValueError(
                f"lane_mask must have shape [B, M] = {tuple(embedding.shape[:2])} to match "
                f"lane_embedding {tuple(embedding.shape)}; got {tuple(lane_mask.shape)}"
            )
        if embedding.shape[-1] == 0:
            raise UsageValueError(
                "lane_embedding must have C >= 1 values per lane; got shape "
                f"{tuple(embedding.shape)}"
            )
        if lane_mask.device != embedding.device:
            raise UsageValueError(
                f"lane_mask must be on lane_embedding's device {embedding.device}; "
                f"got {lane_mask.device}"
            )
        if embedding.device.type == "meta":
            raise UsageValueError(
                no_values_message("LaneSet", "real lanes are checked to be finite")
            )
        if not isinstance(self.args, tuple):
            raise UsageTypeError(f"args must be a tuple; got {type(self.args).__name__}")
        if not isinstance(self.kwargs, Mapping):
            raise UsageTypeError(f"kwargs must be a mapping; got {type(self.kwargs).__name__}")
        real = embedding[lane_mask]  # [R, C]
        if not bool(real.isfinite().all()):
            first = int((~real.isfinite()).any(-1).nonzero()[0, 0])
            b, m = lane_mask.nonzero()[first].tolist()
            raise UsageValueError(
                f"real lanes must be finite; real lane (b={b}, m={m}) holds NaN or inf. Padded "
                "lanes may hold anything; real ones may not"
            )

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> LaneSet:
        """A copy on `device` with floating tensors (embedding and other inputs) at `dtype`.

        Raises:
            lpim._errors.UsageTypeError: (a `TypeError`) `device` is not a str or
                torch.device, or `dtype` not a floating torch.dtype.
            lpim._errors.UsageValueError: (a `ValueError`) a device torch does not know,
                `meta`, or one that is not available.
        """
        if device is not None:
            device = check_device(device, why_data=WHY_LANE_SET_VALUES)
        if dtype is not None:
            dtype = check_floating_dtype(dtype)
        return LaneSet(
            convert_input(self.lane_embedding, device, dtype),
            self.lane_mask.to(device) if device is not None else self.lane_mask,
            tuple(convert_input(value, device, dtype) for value in self.args),
            {key: convert_input(value, device, dtype) for key, value in self.kwargs.items()},
        )

    def call(self, consumer: Any) -> Any:
        """`consumer(lane_embedding, lane_mask, *args, **kwargs)`.

        Raises:
            lpim._errors.UsageTypeError: (a `TypeError`) `consumer` is not callable.
        """
        check_callable(consumer, "consumer", "consumer(lane_embedding, lane_mask, *args, **kwargs)")
        return consumer(self.lane_embedding, self.lane_mask, *self.args, **self.kwargs)

    def __repr__(self) -> str:
        b, m, c = self.shape
        dtype = str(self.lane_embedding.dtype).removeprefix("torch.")
        per_sample = self.lane_mask.sum(-1).tolist()
        padded = self.lane_embedding[~self.lane_mask]  # [P, C]
        parts = [
            f"B={b}, M={m}, C={c}, {dtype}, {self.lane_embedding.device}",
            f"real lanes per sample {per_sample}",
            f"padded lanes hold {_garbage_kinds(padded)}" if padded.shape[0] else "no padded lane",
        ]
        if self.args:
            parts.append(f"args=({', '.join(value_summary(v) for v in self.args)},)")
        if self.kwargs:
            inner = ", ".join(f"{k!r}: {value_summary(v)}" for k, v in self.kwargs.items())
            parts.append(f"kwargs={{{inner}}}")
        return f"LaneSet({', '.join(parts)})"


def _garbage_kinds(padded: torch.Tensor) -> str:
    """What padded rows `[P, C]` hold, in words: 'zeros', 'nan and inf', ..."""
    kinds = []
    if bool((padded == 0).any()):
        kinds.append("zeros")
    if bool(padded.isnan().any()):
        kinds.append("nan")
    if bool(padded.isinf().any()):
        kinds.append("inf")
    if bool((padded.isfinite() & (padded != 0)).any()):
        kinds.append(f"finite values up to {float(padded[padded.isfinite()].abs().max()):.3g}")
    return " and ".join(kinds)
