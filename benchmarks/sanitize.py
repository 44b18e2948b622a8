"""What ``lpim.sanitize`` costs: forward time under ``collect`` over forward time without.

Usage:
    python benchmarks/sanitize.py [--preset realistic] [--reps 15] [--warmup 3] [--threads 1]
                                  [--mode eval|train]

Prints one Markdown table. Each row is one model on the same padded batch of the preset
(``benchmarks/encoder.py``'s ``PRESETS`` and ``make_batch``: right-padded lanes, empty lanes,
padded slots repeating the last point):

- ``PriorEncoder``: ``lpim.PriorEncoder`` with the preset's size;
- ``nn.TransformerEncoder + src_key_padding_mask``: torch's own stack over every lane's query
  token and points, the preset's size (in eval under ``no_grad``: its nested fast path);
- ``zoo repeat_head_order``: the zoo's head-order bug with 8 heads (d_model 16), whose
  head-major 3D mask the sanitizer reads in full at every call.

``off`` and ``collect`` of a row are timed round-robin in one run (rep 1 of each, then rep 2,
...), so machine load hits both alike; times are medians. ``collect`` enters
``lpim.sanitize(on_finding="collect")`` around each forward, so it includes switching the
sanitizer on and off. ``eval`` runs the forward under ``no_grad``; ``train`` runs forward and
backward of ``sum(lane_embedding ** 2)``. One torch thread by default (``--threads``): small
forwards gain nothing from more on a shared machine. Target: under 1.5x.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/encoder.py, by import

from encoder import PRESETS, all_lane_tokens, interleaved_medians, make_batch, torch_stack

import lpim
from lpim import PriorEncoder, masks
from lpim.zoo.bugs import RepeatHeadOrder


def rows(preset_name: str, train: bool) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    """Each row's forward: ``(points, point_mask) -> [B, M, C]`` lane embeddings."""
    p = PRESETS[preset_name]
    torch.manual_seed(0)
    prior = PriorEncoder(
        in_dim=p.in_dim,
        d_model=p.d_model,
        nhead=p.nhead,
        num_layers=p.num_layers,
        dim_feedforward=p.dim_feedforward,
        dropout=0.0,
    )
    zoo_bug = RepeatHeadOrder(in_dim=p.in_dim, nhead=8)
    prior.train(train)
    zoo_bug.train(train)
    stack = torch_stack(prior, nested=True)  # train / eval as `prior`

    def prior_row(points: Tensor, point_mask: Tensor) -> Tensor:
        out: Tensor = prior(points, point_mask).lane_embedding
        return out

    def torch_row(points: Tensor, point_mask: Tensor) -> Tensor:
        B, M, _, _ = points.shape
        key_padding_mask = masks.to_key_padding_mask(point_mask, query_tokens=1)  # [B*M, 1+N]
        out = stack(all_lane_tokens(prior, points), src_key_padding_mask=key_padding_mask)
        return out[:, 0].reshape(B, M, -1)  # [B, M, C]

    def zoo_row(points: Tensor, point_mask: Tensor) -> Tensor:
        out: Tensor = zoo_bug(points, point_mask).lane_embedding
        return out

    return {
        "PriorEncoder": prior_row,
        "nn.TransformerEncoder + src_key_padding_mask": torch_row,
        "zoo repeat_head_order": zoo_row,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="realistic")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=["eval", "train"], default="eval")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    points, point_mask = make_batch(preset, torch.float32, "cpu", seed=0)
    forwards = rows(args.preset, train=args.mode == "train")

    print(
        f"lpim.sanitize overhead, preset {args.preset} (B={preset.batch}, M={preset.lanes}, "
        f"N={preset.points}, d_model={preset.d_model}, {preset.nhead} heads, "
        f"{preset.num_layers} layers), {args.mode}, float32, CPU, {args.threads} thread(s), "
        f"median of {args.reps}; torch {torch.__version__}, {platform.processor() or 'cpu'}"
    )
    print()
    print("| row | off (ms) | collect (ms) | collect / off | findings |")
    print("|---|---:|---:|---:|---|")
    for name, forward in forwards.items():

        def off(forward: Callable[[Tensor, Tensor], Tensor] = forward) -> None:
            step(forward, args.mode, points, point_mask)

        def on(forward: Callable[[Tensor, Tensor], Tensor] = forward) -> None:
            with lpim.sanitize(on_finding="collect"):
                step(forward, args.mode, points, point_mask)

        with lpim.sanitize(on_finding="collect") as report:
            step(forward, args.mode, points, point_mask)
        medians = interleaved_medians({"off": off, "on": on}, args.reps, args.warmup, "cpu")
        kinds = ", ".join(sorted(report.kinds())) or "none"
        print(
            f"| {name} | {medians['off'] * 1e3:.1f} | {medians['on'] * 1e3:.1f} | "
            f"{medians['on'] / medians['off']:.2f}x | {kinds} |"
        )


def step(
    forward: Callable[[Tensor, Tensor], Tensor], mode: str, points: Tensor, point_mask: Tensor
) -> None:
    if mode == "eval":
        with torch.no_grad():
            forward(points, point_mask)
        return
    (forward(points, point_mask) ** 2).sum().backward()


if __name__ == "__main__":
    main()
