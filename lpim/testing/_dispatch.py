"""Count what a forward pass asks of the device: compute ops dispatched and host syncs.

`count_dispatch()` is a `TorchDispatchMode` that sees every aten op below autograd, the way a
device sees launches. On a GPU each compute op is (at least) one kernel launch, so the count is
what a launch-bound small batch pays for. Views (`view`, `expand`, `permute`, ...) move no
data and are not counted.

Host syncs are counted by what forces one on a GPU, so they can be counted on the CPU too: reading
a value on the host (`.item()`, `bool(t)`, `int(t)`, `.tolist()`), ops whose output shape
depends on the data (`nonzero`, `unique`, `masked_select`, indexing with a boolean mask,
`repeat_interleave` without `output_size`) and copies from a device to the CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["ATTENTION_OPS", "DispatchCount", "calls_attention", "count_dispatch"]

ATTENTION_OPS = (
    "softmax",
    "scaled_dot_product",
    "multi_head_attention",
    "transformer_encoder_layer",
    "flash_attention",
    "efficient_attention",
)
"""Parts of aten op names that mean attention ran (a softmax over scores, SDPA, MHA's fused
kernels): what tells code that attends from code that does not."""

_FREE = {"_unsafe_view", "_reshape_alias", "alias", "detach", "lift_fresh"}
_SHAPE_FROM_DATA = {
    "nonzero",
    "unique_consecutive",
    "unique_dim",
    "_unique",
    "_unique2",
    "masked_select",
    "_local_scalar_dense",
}


@dataclass
class DispatchCount:
    """What ran inside `count_dispatch()`.

    Attributes:
        ops: compute ops dispatched (views excluded).
        syncs: host syncs (see the module docstring for what counts as one).
        by_op: ops per aten name, for reading where they come from.
        sync_ops: host syncs per cause (an aten name or `Tensor.tolist`).
    """

    ops: int = 0
    syncs: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    sync_ops: Counter[str] = field(default_factory=Counter)

    def _sync(self, cause: str) -> None:
        self.syncs += 1
        self.sync_ops[cause] += 1


def _forces_sync(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if name in _SHAPE_FROM_DATA:
        return True
    if name in ("index", "index_put", "index_put_", "_index_put_impl_"):
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices
        )
    if name == "repeat_interleave":
        return kwargs.get("output_size") is None and (len(args) < 4 or args[3] is None)
    if name in ("_to_copy", "copy_"):
        source = args[1] if name == "copy_" else args[0]
        target = args[0].device if name == "copy_" else kwargs.get("device")
        return (
            isinstance(source, torch.Tensor)
            and source.device.type != "cpu"
            and target is not None
            and torch.device(target).type == "cpu"
        )
    return False


class _Counting(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch leaves it untyped
    def __init__(self, count: DispatchCount) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.count = count

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if not (func.is_view or name in _FREE):
            self.count.ops += 1
            self.count.by_op[name] += 1
        if _forces_sync(name, args, kwargs):
            self.count._sync(name)
        return func(*args, **kwargs)


def calls_attention(count: DispatchCount) -> bool:
    """Whether the ops counted include attention (`ATTENTION_OPS`)."""
    return any(part in name for name in count.by_op for part in ATTENTION_OPS)


@contextmanager
def count_dispatch() -> Iterator[DispatchCount]:
    """Count compute ops and host syncs of the code run inside the `with` block.

    Yields:
        A `DispatchCount` filled in as the block runs.

    Example:
        ```python
        with count_dispatch() as count:
            encoder(points, point_mask)
        print(count.ops, count.syncs)
        ```
    """
    count = DispatchCount()
    tolist = torch.Tensor.tolist

    def counted_tolist(self: torch.Tensor) -> Any:
        # .tolist() reads the data on the host without dispatching an op on the CPU.
        count._sync("Tensor.tolist")
        return tolist(self)

    torch.Tensor.tolist = counted_tolist  # type: ignore[method-assign,assignment]
    try:
        with _Counting(count):
            yield count
    finally:
        torch.Tensor.tolist = tolist  # type: ignore[method-assign]
