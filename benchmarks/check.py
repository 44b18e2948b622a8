"""How long `check_encoder` takes: examples per second per property, and the whole check.

Usage:
    python benchmarks/check.py [--repeat 3] [--config small|default] [--zoo NAME]

Prints one table per encoder: for each property and dtype, the median over ``--repeat`` runs of
the examples tried, the wall time and examples per second, then the median total wall time of
the whole check with the default settings. Each repetition uses a fresh Hypothesis database
(none), so it measures generation and checking, not replay.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from hypothesis import settings as Settings

from lpim import PriorEncoder
from lpim.testing.report import format_table
from lpim.testing import DEFAULT_SETTINGS, EncoderPropertyError, check_encoder

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
            results = failure.report.results  # type: ignore[attr-defined]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--zoo", default="mean_over_slots", help="a zoo bug to time as well")
    args = parser.parse_args()
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
