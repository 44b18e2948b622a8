"""The data contract: what the batches a user's loader produces may hold, stated once.

A check draws only batches inside the contract, so that a pass never claims more than was
checked and a failure is never on a batch the user's pipeline cannot produce. The default is the
strictest: anything may happen (any padding layout, huge/inf/NaN in padded slots, lanes of one
point, empty lanes and samples). Its options (keywords, flags, `[tool.lpim]` keys, defaults,
checks) are declared in `lpim.testing._options`, which every door reads; a contract is built
from checked options, so one that cannot be met never gets here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st

from lpim._errors import UsageTypeError
from lpim.batch import LAYOUTS, LaneBatch
from lpim.strategies import lane_batches
from lpim.testing._encoder_properties import padding_variants
from lpim.testing._options import CheckOptions, Given, options_of

__all__ = ["DataContract"]

_Sizes = int | tuple[int, int]


@dataclass(frozen=True)
class DataContract:
    """What padded batches may hold.

    Attributes:
        layout: the padding layouts that occur: any of `"right"` (real points first),
            `"left"` (last), `"contiguous"` (one run, padding at either end or both), `"scattered"`
            (anywhere).
        garbage: what padded slots hold: `"any"` (huge, inf and NaN too), `"finite"`
            (finite values within the range real coordinates take), `"any_finite"` (finite
            values of any magnitude), `"zeros"`, or
            `"repeat_last"` (each lane's last real point; zeros for empty lanes).
        min_points: the fewest real points a non-empty lane has.
        empty_lanes: whether lanes with no real point occur; `"zero"` also requires the
            encoder to give them an all-zero `lane_embedding` (property
            `empty_lanes_zero`).
        empty_samples: whether samples with no real lane occur.
        batch_size: `B`: an int or an inclusive `(low, high)` range.
        num_lanes: `M`: an int or a range.
        num_points: `N`: an int or a range.
        strategy: a Hypothesis strategy of `lpim.LaneBatch` that replaces the drawing
            (its batches are taken as the contract; `garbage` still says what the padding
            properties may write into padded slots).
    """

    layout: tuple[str, ...] = LAYOUTS
    garbage: str = "any"
    min_points: int = 1
    empty_lanes: bool | str = True
    empty_samples: bool = True
    batch_size: _Sizes = (1, 3)
    num_lanes: _Sizes = (1, 6)
    num_points: _Sizes = (1, 8)
    strategy: st.SearchStrategy[LaneBatch] | None = None

    @classmethod
    def of(cls, **keywords: Any) -> DataContract:
        """A contract from keywords (those of the attributes; None keeps the default), checked
        as `check_encoder` checks them (`lpim.testing._options`).

        Raises:
            UsageValueError: a value outside what the attribute allows, or values that
                contradict each other, naming them.
            UsageTypeError: a value of the wrong type, or an unknown keyword.
        """
        given = {k: v for k, v in keywords.items() if v is not None}
        return cls.from_options(options_of("encoder", Given("keyword", given)))

    @classmethod
    def from_options(cls, options: CheckOptions) -> DataContract:
        """The contract of checked `options`."""
        return cls(
            layout=options.layout,
            garbage=options.garbage,
            min_points=options.min_points,
            empty_lanes=options.empty_lanes,
            empty_samples=options.empty_samples,
            batch_size=options.batch_size,
            num_lanes=options.num_lanes,
            num_points=options.num_points,
            strategy=options.strategy,
        )

    @property
    def is_default(self) -> bool:
        """True when nothing was narrowed: anything may happen."""
        return self == DataContract()

    def describe(self) -> str:
        """The contract in words, for a report's header."""
        if self.strategy is not None:
            return f"batches drawn by {self.strategy!r}; padded slots: {self._garbage_words()}"
        layout = (
            "any padding layout"
            if set(self.layout) == set(LAYOUTS)
            else f"{' or '.join(self.layout)} padding only"
        )
        parts = [layout, self._garbage_words(), f">= {self.min_points} points a lane"]
        if self.empty_lanes is False:
            parts.append("no empty lanes")
        elif self.empty_lanes == "zero":
            parts.append("empty lanes must give zeros")
        if not self.empty_samples or self.empty_lanes is False:
            parts.append("no empty samples")
        sizes = f"B {_range(self.batch_size)}, M {_range(self.num_lanes)}, "
        parts.append(sizes + f"N {_range(self.num_points)}")
        return ", ".join(parts)

    def _garbage_words(self) -> str:
        return {
            "any": "any garbage (huge, inf, NaN too)",
            "finite": "finite garbage",
            "any_finite": "finite garbage of any magnitude (no inf or NaN)",
            "zeros": "zeros in padded slots",
            "repeat_last": "the last point repeated in padded slots",
        }[self.garbage]

    def batches(
        self,
        *,
        point_dim: int,
        dtype: torch.dtype,
        device: torch.device,
        garbage: str | Sequence[str],
    ) -> st.SearchStrategy[LaneBatch]:
        """Batches inside the contract, with `garbage` (kinds of
        `lpim.strategies.GARBAGE_KINDS`) in padded slots, at `dtype` on `device`."""
        if self.strategy is not None:
            kinds = [garbage] if isinstance(garbage, str) else list(garbage)
            return self.strategy.map(lambda batch: _refill(batch, kinds, dtype, device))
        empty_lanes = self.empty_lanes is not False
        return lane_batches(
            batch_size=self.batch_size,
            num_lanes=self.num_lanes,
            num_points=self.num_points,
            point_dim=point_dim,
            layout=list(self.layout),
            garbage=garbage,
            empty_lanes=empty_lanes,
            empty_samples=empty_lanes and self.empty_samples,
            all_empty=empty_lanes and self.empty_samples,
            min_points=self.min_points,
            dtype=dtype,
            device=device,
        )


def _refill(
    batch: LaneBatch, kinds: list[str], dtype: torch.dtype, device: torch.device
) -> LaneBatch:
    """A user-drawn batch at `dtype` on `device`; its padding replaced by the first kind's
    fill unless the kinds leave it as drawn (every kind of the contract).

    Raises:
        UsageTypeError: the strategy drew something other than a `LaneBatch` (the user's
            strategy is wrong, not the encoder).
    """
    if not isinstance(batch, LaneBatch):
        raise UsageTypeError(
            f"strategy must draw lpim.LaneBatch examples; it drew a {type(batch).__name__} "
            f"({batch!r:.60})"
        )
    batch = batch.to(device=device, dtype=dtype)
    if len(kinds) != 1:
        return batch
    return next(iter(padding_variants(batch, kinds).values()))


def _range(size: _Sizes) -> str:
    return str(size) if isinstance(size, int) else f"{size[0]}-{size[1]}"
