"""The code under check goes down, not back and forth: a check's door hands it to the engine
once, and from there it visits each module once, downwards.

Every lpim function entered with the code among its arguments (the user's module or a copy of
it, a list or tuple holding it, or a wrapper the checks make of it: `Adapted`, a `Subject`, an
`UnderCheck`, a partial such as a row's assert) is recorded, in call order, until the first
property assert runs. Calls in a row within one module are one stay. The route is the door
(`lpim.testing._encoder_check`, `lpim.testing._consumer_check`), the engine
(`lpim.testing._engine`), the callable check (`lpim._validation`), the user's state saved
(`lpim.testing._state`, which walks the modules the code holds once and hands them on), the
code under check (`lpim.testing._protocol`: its widths, device, copies, calls, dtype probe),
the driver (`lpim.testing._driver`) and the property: no module twice.
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
    if isinstance(value, list | tuple):
        return any(_holds(item, kind, depth - 1) for item in value)
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


_ROUTE = ["_engine", "_validation", "_state", "_protocol", "_driver"]


def test_the_encoder_goes_down_through_each_module_once() -> None:
    with _route(_Encoder, "lpim.testing._encoder_properties") as route:
        check_encoder(_Encoder(), dtype="float32", properties="finite", settings=_QUICK)
    assert len(route) == len(set(route)), f"the encoder came back to a module: {route}"
    assert route == ["_encoder_check", *_ROUTE, "_encoder_properties"], route


def test_the_consumer_goes_down_through_each_module_once() -> None:
    with _route(_Consumer, "lpim.testing._consumer_properties") as route:
        check_lane_consumer(_Consumer(), dtype="float32", properties="finite", settings=_QUICK)
    assert len(route) == len(set(route)), f"the consumer came back to a module: {route}"
    assert route == ["_consumer_check", *_ROUTE, "_consumer_properties"], route
