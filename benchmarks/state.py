"""What `user_state_kept` costs: the snapshot on entry and the restore on exit.

Usage:
    python benchmarks/state.py [--repeat 5]

Prints, for `lpim.PriorEncoder()` and a 50M-parameter stack of `nn.Linear`, the parameter
count, the median and best time of taking the snapshot (entering the context manager: one copy
of every parameter and buffer value, no module copied), of restoring when nothing changed (the
usual exit) and of restoring after every parameter was written in place (the worst exit).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from lpim import PriorEncoder
from lpim.testing._state import user_state_kept


def _big() -> nn.Module:
    """50M parameters: ten 2500 -> 2000 linear layers."""
    return nn.Sequential(*[nn.Linear(2500, 2000) for _ in range(10)])


def _time(module: nn.Module, repeat: int, touch: bool) -> tuple[list[float], list[float]]:
    enter, leave = [], []
    for _ in range(repeat):
        kept = user_state_kept(module, torch.device("cpu"))
        started = time.perf_counter()
        kept.__enter__()
        entered = time.perf_counter()
        if touch:
            with torch.no_grad():
                for parameter in module.parameters():
                    parameter.add_(1)
        before_exit = time.perf_counter()
        kept.__exit__(None, None, None)
        leave.append(time.perf_counter() - before_exit)
        enter.append(entered - started)
    return enter, leave


def _fmt(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e3:7.1f} (best {min(times) * 1e3:5.1f})"


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description="What user_state_kept costs")
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args(argv).repeat
    builders: dict[str, Callable[[], nn.Module]] = {
        "PriorEncoder()": PriorEncoder,
        "50M Linear stack": _big,
    }
    print(
        f"{'module':<18} {'parameters':>11} {'snapshot ms':>22} {'restore ms':>22} "
        f"{'restore, all written ms':>24}"
    )
    for name, build in builders.items():
        module = build()
        count = sum(p.numel() for p in module.parameters())
        enter, leave = _time(module, repeat, touch=False)
        _, leave_touched = _time(module, repeat, touch=True)
        print(
            f"{name:<18} {count:>11,} {_fmt(enter):>22} {_fmt(leave):>22} {_fmt(leave_touched):>24}"
        )


if __name__ == "__main__":
    main()
