"""How long `lpim.testing._deadline.call_within` takes to end a call that does not return.

Usage:
    python benchmarks/deadline.py [--limit 0.2] [--op-seconds 1.5] [--reps 3]

Prints one Markdown table: for each kind of hang, the seconds from the call to the moment the
caller gets `CallTimedOut` back, on the main thread (`signal`: `SIGALRM` timer, in place) and
from a worker thread (`thread`: the call runs in a daemon thread that is abandoned at the
limit), median of `--reps`. Also whether the abandoned worker ended (a Python loop is asked to
stop with an asynchronous exception; a sleep or a C op is not interruptible that way), and the
overhead per call of a call that returns at once.

Kinds: a `while True:` loop in Python, `time.sleep(10**6)`, a wait on a lock nobody releases,
and one long torch op (a float64 matrix product sized to take about `--op-seconds` on one
thread). One torch thread, as `check_encoder` runs.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

import torch

from lpim.testing._deadline import CallTimedOut, call_within


def loop() -> None:
    while True:
        pass


def sleep() -> None:
    time.sleep(10**6)


def lock() -> None:
    held = threading.Lock()
    held.acquire()
    held.acquire()


def product(size: int) -> Callable[[], None]:
    a = torch.randn(size, size, dtype=torch.float64)

    def op() -> None:
        a @ a

    return op


def sized_product(seconds: float) -> tuple[int, float]:
    """A matrix size whose product takes about `seconds`, and what it takes."""
    size = 256
    while True:
        a = torch.randn(size, size, dtype=torch.float64)
        started = time.perf_counter()
        a @ a
        took = time.perf_counter() - started
        if took >= seconds / 8 or size >= 8192:
            size = int(size * (seconds / took) ** (1 / 3))
            a = torch.randn(size, size, dtype=torch.float64)
            started = time.perf_counter()
            a @ a
            return size, time.perf_counter() - started
        size *= 2


def stop_time(limit: float, fn: Callable[[], None], in_thread: bool) -> tuple[float, bool]:
    """Seconds until the caller got `CallTimedOut`, and whether the call was abandoned still
    running."""
    result: dict[str, object] = {}

    def timed() -> None:
        started = time.perf_counter()
        try:
            call_within(limit, fn)
        except CallTimedOut as stop:
            result["abandoned"] = stop.abandoned
        result["seconds"] = time.perf_counter() - started

    if in_thread:
        caller = threading.Thread(target=timed)
        caller.start()
        caller.join()
    else:
        timed()
    return float(result["seconds"]), bool(result.get("abandoned", False))  # type: ignore[arg-type]


def overhead(in_thread: bool, calls: int = 2000) -> float:
    """Microseconds per call added to a call that returns at once."""
    result: list[float] = []

    def timed() -> None:
        started = time.perf_counter()
        for _ in range(calls):
            call_within(1.0, abs, 0)
        plain = time.perf_counter()
        for _ in range(calls):
            abs(0)
        result.append(((plain - started) - (time.perf_counter() - plain)) / calls * 1e6)

    if in_thread:
        caller = threading.Thread(target=timed)
        caller.start()
        caller.join()
    else:
        timed()
    return result[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=0.2)
    parser.add_argument("--op-seconds", type=float, default=1.5)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    size, op_took = sized_product(args.op_seconds)
    kinds: dict[str, Callable[[], None]] = {
        "while True: pass": loop,
        "time.sleep(10**6)": sleep,
        "lock.acquire() (never released)": lock,
        f"one torch op: {size}x{size} float64 matmul ({op_took:.2f} s)": product(size),
    }
    # measured first, while no abandoned worker competes for the cores
    signal_overhead, thread_overhead = overhead(False), overhead(True)
    print(f"limit {args.limit} s, torch {torch.__version__}, {torch.get_num_threads()} thread")
    print()
    print("| hang | signal (main thread) | thread (worker) | worker left running |")
    print("|---|---|---|---|")
    for name, fn in kinds.items():
        signal_times = [stop_time(args.limit, fn, False)[0] for _ in range(args.reps)]
        thread_runs = []
        for _ in range(args.reps):
            thread_runs.append(stop_time(args.limit, fn, True))
            if "torch op" in name:  # let the abandoned op end before the next rep
                time.sleep(op_took)
        left = sum(abandoned for _, abandoned in thread_runs)
        print(
            f"| {name} | {statistics.median(signal_times):.3f} s "
            f"| {statistics.median(t for t, _ in thread_runs):.3f} s "
            f"| {left} of {args.reps} |"
        )
    print()
    print(
        f"overhead per call returning at once: signal {signal_overhead:.0f} µs, "
        f"thread {thread_overhead:.0f} µs"
    )
    time.sleep(2 * op_took)  # an abandoned op still running at exit aborts the process


if __name__ == "__main__":
    main()
