"""The data contract: what the batches a user's loader produces may hold, stated once.

A check draws only batches inside the contract, so that a pass never claims more than was
checked and a failure is never on a batch the user's pipeline cannot produce. The default is the
strictest: anything may happen (any padding layout, huge/inf/NaN in padded slots, lanes of one
point, empty lanes and samples). The same keywords work on `lpim.testing.check_encoder`, the
`lpim_check` fixture and `lpim.strategies.lane_batches`; `lpim check` takes them as flags
and reads a `[tool.lpim]` table from the user's `pyproject.toml`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from hypothesis import strategies as st

from lpim._validation import check_size
from lpim.batch import LAYOUTS, LaneBatch
from lpim.strategies import GARBAGE_CONTRACTS, lane_batches
from lpim.testing.properties import padding_variants

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the same parser, from PyPI, before Python 3.11
    import tomli as tomllib

__all__ = ["DataContract", "find_pyproject", "read_pyproject"]

_Sizes = int | tuple[int, int]


@dataclass(frozen=True)
class DataContract:
    """What padded batches may hold.

    Attributes:
        layout: the padding layouts that occur: any of `"right"` (real points first),
            `"left"` (last), `"scattered"` (anywhere).
        garbage: what padded slots hold: `"any"` (huge, inf and NaN too), `"finite"`
            (finite values within the range real coordinates take), `"zeros"`, or
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
        """A contract from keywords (those of the attributes; None keeps the default),
        validated.

        Raises:
            ValueError: a value outside what the attribute allows, naming it.
            TypeError: a value of the wrong type.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(keywords) - known)
        if unknown:
            raise TypeError(f"unknown data-contract keywords {unknown}; expected some of {known}")
        given = {k: v for k, v in keywords.items() if v is not None}
        if isinstance(given.get("layout"), str):
            given["layout"] = (given["layout"],)
        if "layout" in given:
            given["layout"] = tuple(given["layout"])
        return replace(cls(), **given)._validated()

    def _validated(self) -> DataContract:
        if not self.layout or any(value not in LAYOUTS for value in self.layout):
            raise ValueError(f"layout must be some of {LAYOUTS}; got {list(self.layout)}")
        if self.garbage not in GARBAGE_CONTRACTS:
            raise ValueError(
                f"garbage must be one of {tuple(GARBAGE_CONTRACTS)}; got {self.garbage!r}"
            )
        if isinstance(self.min_points, bool) or not isinstance(self.min_points, int):
            raise TypeError(f"min_points must be an int >= 1; got {self.min_points!r}")
        if self.min_points < 1:
            raise ValueError(f"min_points must be >= 1; got {self.min_points}")
        if self.empty_lanes not in (True, False, "zero"):
            raise ValueError(f"empty_lanes must be True, False or 'zero'; got {self.empty_lanes!r}")
        if not isinstance(self.empty_samples, bool):
            raise TypeError(f"empty_samples must be True or False; got {self.empty_samples!r}")
        for name in ("batch_size", "num_lanes", "num_points"):
            _check_size(name, getattr(self, name))
        if self.strategy is not None and not isinstance(self.strategy, st.SearchStrategy):
            raise TypeError(
                f"strategy must be a Hypothesis strategy of LaneBatch; got {self.strategy!r}"
            )
        return self

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


def _check_size(name: str, size: object) -> None:
    """A size: an int >= 0 or an inclusive ``(low, high)`` range of them, low <= high.

    Raises:
        ValueError: anything else (as sizes always have, whatever the mistake).
    """
    check_size(size, name, "check_encoder", type_error=ValueError)


def _refill(
    batch: LaneBatch, kinds: list[str], dtype: torch.dtype, device: torch.device
) -> LaneBatch:
    """A user-drawn batch at `dtype` on `device`; its padding replaced by the first kind's
    fill unless the kinds leave it as drawn (every kind of the contract)."""
    batch = batch.to(device=device, dtype=dtype)
    if len(kinds) != 1:
        return batch
    return next(iter(padding_variants(batch, kinds).values()))


def _range(size: _Sizes) -> str:
    return str(size) if isinstance(size, int) else f"{size[0]}-{size[1]}"


_PYPROJECT_KEYS = {
    "layout",
    "garbage",
    "min-points",
    "empty-lanes",
    "empty-samples",
    "batch-size",
    "num-lanes",
    "num-points",
    "precision",
    "dtype",
    "point-dim",
    "threads",
}


def find_pyproject(start: Path) -> Path | None:
    """The nearest `pyproject.toml` at or above `start` that has a `[tool.lpim]` table."""
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text())
            except (OSError, tomllib.TOMLDecodeError):
                continue
            if isinstance(data.get("tool"), Mapping) and "lpim" in data["tool"]:
                return candidate
    return None


def read_pyproject(path: Path) -> dict[str, Any]:
    """`[tool.lpim]` of `path` as `check_encoder` keywords (`min-points` ->
    `min_points`; ranges as two-item lists become tuples).

    Raises:
        ValueError: an unknown key, naming the file and the keys it may hold.
    """
    table = tomllib.loads(path.read_text()).get("tool", {}).get("lpim", {})
    unknown = sorted(set(table) - _PYPROJECT_KEYS)
    if unknown:
        raise ValueError(
            f"{path}: unknown keys in [tool.lpim]: {unknown}; expected some of "
            f"{sorted(_PYPROJECT_KEYS)}"
        )
    found: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, list) and key in ("batch-size", "num-lanes", "num-points"):
            value = tuple(value)
        found[key.replace("-", "_")] = value
    return found
