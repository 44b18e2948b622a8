"""Eval time vs. fraction of real lanes: naive, torch's nested fast path, PriorEncoder.

Usage:
    python benchmarks/fill_sweep.py [--out docs/data/fill_sweep.json] [--reps 3]

The LPIM configuration (B=8, M=50, N=20, d_model 256, 8 heads, 4 layers, FFN 1024, float32, CPU,
one thread, process clock) with a fixed fraction of each sample's lanes real (5-20 real points
each, right-padded), from 5% to 100%. Rows are those of ``benchmarks/encoder.py`` (same weights,
same checks: a row that disagrees with the unpadded reference is not timed). Times are medians of
``--reps`` round-robin repetitions after one warm-up. Writes JSON that ``docs/performance.md``
draws at build time (``scripts/docs_figures.py``), so the page shows measured numbers without
re-measuring them on every build.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import encoder as bench

from lpim import PriorEncoder
from lpim.tolerance import encoder_scale, tolerance

FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
ROWS = {
    "naive": bench.naive_row,
    "nested fast path": bench.nested_row,
    "PriorEncoder": bench.prior_row,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/data/fill_sweep.json")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = bench.PRESETS["realistic"]
    torch.manual_seed(0)
    encoder = PriorEncoder(
        base.in_dim, base.d_model, base.nhead, base.num_layers, base.dim_feedforward, dropout=0.0
    ).eval()
    rule = tolerance(torch.float32, *encoder_scale(encoder, base.points + 1))
    runs = {row: build(encoder) for row, build in ROWS.items()}
    results: dict[str, list[float | None]] = {row: [] for row in ROWS}
    for fraction in FRACTIONS:
        preset = dataclasses.replace(base, lane_fill=(fraction, fraction))
        points, point_mask = bench.make_batch(preset, torch.float32, "cpu", seed=0)
        lane_mask = point_mask.any(-1)
        expected = bench.reference(encoder, points, point_mask)[lane_mask]
        steps = {}
        for row, run in runs.items():
            with torch.no_grad():
                actual = run(points, point_mask)[lane_mask]
            if float(rule.error_ratio(actual, expected).max()) <= 1:
                steps[row] = functools.partial(run, points, point_mask)
        with torch.no_grad():
            seconds = bench.interleaved_medians(steps, args.reps, 1, "cpu", time.process_time)
        for row in ROWS:
            results[row].append(1e3 * seconds[row] if row in seconds else None)
        print(fraction, {row: ms[-1] for row, ms in results.items()}, flush=True)
    data = {
        "command": f"python {shlex.join(sys.argv)}",
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, 1 thread, process clock",
        "config": "B=8 M=50 N=20 D=2, d_model 256, 8 heads, 4 layers, FFN 1024, float32, eval",
        "fractions": list(FRACTIONS),
        "ms": results,
    }
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
