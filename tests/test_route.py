"""The code under check goes down, not back and forth: a check's door hands it to
`lpim.testing._under_check` once, and the check's own module never holds it again.

Every lpim function entered with the code among its arguments (the user's module or a copy of
it, or a wrapper the checks make of it: `Adapted`, a `Subject`, an `UnderCheck`, a partial such
as a row's assert) is recorded, in call order, until the first property assert runs. Calls in a
row within one module are one stay. The encoder check's module (`lpim.testing._encoder_check`)
and the consumer check's (`lpim.testing._consumer_check`) must have one stay each, the door, then
`lpim.testing._under_check`: what the code needs (its widths, its device, its copies, the dtype
probe, the output check) lives there, not in the check.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch
from hypothesis import settings

from lpim.testing import check_encoder, check_lane_consumer

# The wrappers the checks make of the code under check, and the attribute that holds it.
_WRAPPERS = {"Adapted": "inner", "Subject": "encoder", "EncoderUnderCheck": "code"}
_WRAPPERS["ConsumerUnderCheck"] = "code"


class _Encoder(torch.nn.Module):
    """A small encoder of its own class, so that its copies are told apart from lpim's modules."""

    in_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 4)

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        features = self.linear(points) * point_mask[..., None]  # [B, M, N, 4]
        return features.sum(2)  # [B, M, 4]


class _Consumer(torch.nn.Module):
    embed_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, lane_embedding: torch.Tensor, lane_mask: torch.Tensor) -> torch.Tensor:
        return (self.linear(lane_embedding) * lane_mask[..., None]).sum(1)  # [B, 3]


def _holds(value: object, kind: type, depth: int = 2) -> bool:
    if isinstance(value, kind):
        return True
    if depth == 0 or value is None:
        return False
    if isinstance(value, functools.partial):
        return any(_holds(arg, kind, depth - 1) for arg in value.args)
    attribute = _WRAPPERS.get(type(value).__name__)
    inner = getattr(value, attribute, None) if attribute else None
    return inner is not None and _holds(inner, kind, depth - 1)


@contextmanager
def _route(kind: type, last: str) -> Iterator[list[str]]:
    """The modules (`lpim.testing.` left off) of the lpim functions entered with a `kind`
    among their arguments, one entry per stay, until a function of module `last` is entered."""
    route: list[str] = []
    frames: dict[int, FrameType] = {}  # kept alive: a resumed generator is not a new call
    done = [False]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if done[0] or event != "call" or id(frame) in frames:
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("lpim.") or module == "lpim.encoder":
            return
        frames[id(frame)] = frame
        code = frame.f_code
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if any(_holds(frame.f_locals.get(name), kind) for name in names):
            stay = module.removeprefix("lpim.testing.").removeprefix("lpim.")
            if not route or route[-1] != stay:
                route.append(stay)
            done[0] = module == last

    previous: Callable[..., Any] | None = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield route
    finally:
        sys.setprofile(previous)


_QUICK = settings(max_examples=2, database=None)


def test_the_encoder_check_holds_the_encoder_once_then_hands_it_down() -> None:
    with _route(_Encoder, "lpim.testing._encoder_properties") as route:
        check_encoder(_Encoder(), dtype="float32", properties="finite", settings=_QUICK)
    assert route[:2] == ["_encoder_check", "_under_check"], route
    assert route.count("_encoder_check") == 1, f"the encoder came back to its check: {route}"
    assert route[-1] == "_encoder_properties", route


def test_the_consumer_check_holds_the_consumer_once_then_hands_it_down() -> None:
    with _route(_Consumer, "lpim.testing._consumer_properties") as route:
        check_lane_consumer(_Consumer(), dtype="float32", properties="finite", settings=_QUICK)
    assert route[:2] == ["_consumer_check", "_under_check"], route
    assert route.count("_consumer_check") == 1, f"the consumer came back to its check: {route}"
    assert route[-1] == "_consumer_properties", route
