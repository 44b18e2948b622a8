"""How long `check_encoder` takes: examples per second per property, and the whole check.

Usage:
    python benchmarks/check.py [--repeat 3] [--config small|default] [--zoo NAME]
    python benchmarks/check.py --contention [--repeat 3]

Prints one table per encoder: for each property and dtype, the median over ``--repeat`` runs of
the examples tried, the wall time and examples per second, then the median total wall time of
the whole check with the default settings. Each repetition uses a fresh Hypothesis database
(none), so it measures generation and checking, not replay.

``--contention`` times whole checks in fresh processes, idle and with a busy-loop process
taking a core, with torch's default thread pool (what checks used before ``threads=1``) and
with one thread (the default now), side by side: the default ``lpim check`` (its reference
encoder at all four dtypes) and a small user encoder (a masked-mean MLP, float32).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import torch
from hypothesis import settings as Settings

from lpim import PriorEncoder
from lpim.testing import DEFAULT_SETTINGS, EncoderPropertyError, check_encoder
from lpim.testing._report import format_table

CONFIGS = {
    # the "small config": what the test suite and the 20 s target use
    "small": dict(d_model=32, nhead=4, num_layers=2, dim_feedforward=64),
    # the realistic LPIM configuration (the encoder's defaults)
    "default": dict(),
}


def measure(name: str, build, repeat: int) -> None:  # type: ignore[no-untyped-def]
    rows: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    totals = []
    verdicts: dict[tuple[str, str], str] = {}
    for _ in range(repeat):
        torch.manual_seed(0)
        encoder = build()
        started = time.perf_counter()
        try:
            report = check_encoder(encoder, settings=Settings(DEFAULT_SETTINGS, database=None))
            results = report.results
        except EncoderPropertyError as failure:
            assert failure.report is not None
            results = failure.report.results
        totals.append(time.perf_counter() - started)
        for r in results:
            key = (r.property_name, str(r.dtype).removeprefix("torch."))
            rows[key].append((r.examples, r.seconds))
            verdicts[key] = r.verdict
    table = []
    for (prop, dtype), runs in rows.items():
        examples = statistics.median(e for e, _ in runs)
        seconds = statistics.median(s for _, s in runs)
        rate = f"{examples / seconds:.0f}" if seconds > 0 else "-"
        table.append(
            [prop, dtype, f"{examples:g}", f"{seconds:.2f}", rate, verdicts[(prop, dtype)]]
        )
    header = ["property", "dtype", "examples", "seconds", "examples/s", "verdict"]
    print(f"\n## {name} (median of {repeat})\n")
    print(format_table(header, table, markdown=True))
    print(
        f"\nwhole check: median {statistics.median(totals):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in totals)})"
    )


# What each timed process runs: a whole check, threads as given (None: torch's default pool).
_CHECK_SCRIPT = """
import sys, time, torch
from torch import nn
from hypothesis import settings
from lpim.cli import DEFAULT_TARGET, load_target
from lpim.testing import DEFAULT_SETTINGS, check_encoder

threads = None if sys.argv[2] == "default" else int(sys.argv[2])
if sys.argv[1] == "lpim-check":
    encoder, kwargs = load_target(DEFAULT_TARGET), {}
else:
    class MeanPool(nn.Module):
        in_dim = 2
        def __init__(self):
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16))
        def forward(self, points, point_mask):
            keep = point_mask[..., None]
            features = self.mlp(torch.where(keep, points, 0.0))
            total = torch.where(keep, features, 0.0).sum(2)
            return total / point_mask.sum(2, keepdim=True).clamp(min=1).to(features.dtype)
    torch.manual_seed(0)
    encoder, kwargs = MeanPool().eval(), {"dtype": torch.float32}
started = time.perf_counter()
check_encoder(
    encoder,
    settings=settings(DEFAULT_SETTINGS, derandomize=True, database=None),
    threads=threads,
    **kwargs,
)
print(time.perf_counter() - started)
"""


def contention(repeat: int) -> None:
    """Whole checks idle and beside a busy-loop process, torch's thread pool vs one thread."""
    rows = []
    for check in ("lpim-check", "user-encoder"):
        times: dict[tuple[str, str], float] = {}
        for load in ("idle", "busy"):
            busy = (
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                if load == "busy"
                else None
            )
            try:
                for threads in ("default", "1"):
                    runs = [
                        float(
                            subprocess.run(
                                [sys.executable, "-c", _CHECK_SCRIPT, check, threads],
                                capture_output=True,
                                text=True,
                                check=True,
                            ).stdout.split()[-1]
                        )
                        for _ in range(repeat)
                    ]
                    times[(load, threads)] = statistics.median(runs)
            finally:
                if busy is not None:
                    busy.kill()
        for threads in ("default", "1"):
            idle, busy_time = times[("idle", threads)], times[("busy", threads)]
            label = f"torch's default ({torch.get_num_threads()})" if threads == "default" else "1"
            rows.append(
                [
                    check,
                    label,
                    f"{idle:.2f}",
                    f"{busy_time:.2f}",
                    f"{busy_time / idle:.2f}x",
                ]
            )
    header = ["check", "threads", "idle s", "one core busy s", "busy / idle"]
    print(f"\n## whole checks, median of {repeat} fresh processes each\n")
    print(format_table(header, rows, markdown=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--zoo", default="mean_over_slots", help="a zoo bug to time as well")
    parser.add_argument(
        "--contention",
        action="store_true",
        help="time whole checks idle and with a busy core, default threads vs one",
    )
    args = parser.parse_args()
    if args.contention:
        contention(args.repeat)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"max_examples {DEFAULT_SETTINGS.max_examples}"
    )
    for config in args.config or ["small"]:
        measure(
            f"PriorEncoder({config}: {CONFIGS[config]})",
            lambda c=config: PriorEncoder(**CONFIGS[c]),
            args.repeat,
        )
    if args.zoo:
        from lpim.zoo import BUGS

        measure(f"zoo: {args.zoo}", BUGS[args.zoo].factory, args.repeat)


if __name__ == "__main__":
    main()
