"""How the zoo builds its registries: seed-0 factories, entries keyed by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import torch
from torch import nn

__all__ = ["by_name", "seeded"]

T = TypeVar("T")
Entry = TypeVar("Entry", bound="Named")


class Named(Protocol):
    """Anything with a `name`: a zoo entry."""

    @property
    def name(self) -> str: ...


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


def by_name(*entries: Entry) -> dict[str, Entry]:
    """The registry of `entries`, keyed by their `name`, in the order given."""
    return {entry.name: entry for entry in entries}
