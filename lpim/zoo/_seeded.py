"""The one way the zoo builds its entries: seed-0 weights, eval mode, the global RNG untouched."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

__all__ = ["seeded"]

T = TypeVar("T")


def seeded(cls: Callable[[], T]) -> Callable[[], T]:
    """A factory that builds `cls()` with seed-0 weights (in eval mode if it is a module).

    The global RNG is left as it was, so building an entry never changes what a test draws next.
    The factory is named `build_<cls>`, which reproducers and reports show.
    """

    def build() -> T:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            built = cls()
        if isinstance(built, nn.Module):
            built.eval()
        return built

    build.__name__ = build.__qualname__ = f"build_{getattr(cls, '__name__', 'entry')}"
    return build
