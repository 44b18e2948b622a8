"""What ``lpim.sanitize`` costs: time with the sanitizer on, side by side with it off.

Usage:
    python benchmarks/sanitize.py [--preset realistic] [--reps 15] [--warmup 3] [--threads 1]
                                  [--mode eval|train]

Prints three Markdown tables, one torch thread by default (``--threads``), medians, ``off``
and ``collect`` of a row timed round-robin in one run (rep 1 of each, then rep 2, ...), so
machine load hits both alike:

1. **Per call, a mask seen before**: one attention call (batch 8, 10 tokens, d_model 32, 4
   heads) with the sanitizer already on, microseconds per call off and on and the difference
   (the target: at most ~100 us). The sanitizer is switched between blocks outside the
   timing, and each block starts with one untimed call, the mask's first sight. Rows:
   ``nn.MultiheadAttention`` with a bool ``key_padding_mask``;
   ``F.scaled_dot_product_attention`` with a bool mask; hand-written ``masked_fill`` +
   ``softmax``.
2. **Small model** (2 layers, 4 heads, batch 8, 10 tokens, d_model 32; target at most 1.5x):
   ``nn.TransformerEncoder`` with ``src_key_padding_mask`` (eval under ``no_grad``: its fast
   path), and the same size written by hand (``masked_fill(-inf)`` + ``softmax``).
3. **Preset** (``benchmarks/encoder.py``'s ``PRESETS`` and ``make_batch``: right-padded lanes,
   empty lanes, padded slots repeating the last point; target at most 1.2x for ``realistic``):
   ``lpim.PriorEncoder``; ``nn.TransformerEncoder + src_key_padding_mask`` over every lane's
   query token and points; the zoo's head-order bug with 8 heads (d_model 16).

In tables 2 and 3, ``collect`` enters ``lpim.sanitize(on_finding="collect")`` around each
forward, so it includes switching the sanitizer on and off. ``eval`` runs the forward under
``no_grad``; ``train`` runs forward and backward of the sum of squares of the output.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

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


SMALL = {"batch": 8, "tokens": 10, "d_model": 32, "heads": 4, "layers": 2}


class HandWritten(nn.Module):
    """``layers`` x (attention written out: ``masked_fill(-inf)`` + ``softmax``, then an MLP)."""

    def __init__(self, d_model: int, heads: int, layers: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.ModuleList(nn.Linear(d_model, 3 * d_model) for _ in range(layers))
        self.mlp = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(layers))

    def forward(self, x: Tensor, key_padding_mask: Tensor) -> Tensor:
        n, length, d = x.shape
        padded = key_padding_mask[:, None, None, :]  # [N, 1, 1, S], True = padded
        for qkv, mlp in zip(self.qkv, self.mlp, strict=True):
            q, k, v = qkv(x).reshape(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # [N, H, L, S]
            weights = scores.masked_fill(padded, float("-inf")).softmax(-1)
            x = x + mlp((weights @ v).transpose(1, 2).reshape(n, length, d))
        return x


def small_inputs() -> tuple[Tensor, Tensor]:
    """``x [8, 10, 32]`` and a bool ``key_padding_mask [8, 10]`` (True = padded, 3-10 real)."""
    gen = torch.Generator().manual_seed(0)
    n, length = SMALL["batch"], SMALL["tokens"]
    x = torch.randn(n, length, SMALL["d_model"], generator=gen)
    real = torch.randint(3, length + 1, (n, 1), generator=gen)
    return x, torch.arange(length)[None] >= real


def per_call_rows() -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    x, key_padding_mask = small_inputs()
    d, heads = SMALL["d_model"], SMALL["heads"]
    mha = nn.MultiheadAttention(d, heads, batch_first=True).eval()
    q = x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)  # [N, H, L, d/H]
    sdpa_mask = ~key_padding_mask[:, None, None, :]  # True = attend
    padded = key_padding_mask[:, None, None, :]
    scores = q @ q.transpose(-1, -2)
    return {
        "nn.MultiheadAttention + key_padding_mask": lambda: mha(
            x, x, x, key_padding_mask=key_padding_mask, need_weights=False
        ),
        "F.scaled_dot_product_attention + bool mask": lambda: (
            torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=sdpa_mask)
        ),
        "masked_fill(-inf) + softmax": lambda: scores.masked_fill(padded, float("-inf")).softmax(
            -1
        ),
    }


def small_rows() -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    torch.manual_seed(0)
    d, heads, layers = SMALL["d_model"], SMALL["heads"], SMALL["layers"]
    layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True)
    stack = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    hand = HandWritten(d, heads, layers)

    def torch_row(x: Tensor, key_padding_mask: Tensor) -> Tensor:
        out: Tensor = stack(x, src_key_padding_mask=key_padding_mask)
        return out

    def hand_row(x: Tensor, key_padding_mask: Tensor) -> Tensor:
        out: Tensor = hand(x, key_padding_mask)
        return out

    return {"nn.TransformerEncoder + src_key_padding_mask": torch_row, "hand-written": hand_row}


def print_per_call(args: argparse.Namespace) -> None:
    calls = 20
    print(
        f"Per call, a mask seen before (batch {SMALL['batch']}, {SMALL['tokens']} tokens, "
        f"d_model {SMALL['d_model']}, {SMALL['heads']} heads), no_grad; blocks of {calls} calls "
        f"with the sanitizer off and on (switched between blocks, outside the timing, each block "
        f"after one untimed call: the mask's first sight), median of {args.reps * 5} blocks"
    )
    print()
    print("| call | off (us) | collect (us) | difference (us) |")
    print("|---|---:|---:|---:|")
    for name, call in per_call_rows().items():
        times: dict[str, list[float]] = {"off": [], "on": []}
        with torch.no_grad():
            for rep in range(args.warmup + args.reps * 5):
                for state in ("off", "on"):
                    if state == "on":
                        lpim.sanitize.enable(on_finding="collect")
                    call()  # the first sight of the mask in this state, untimed
                    started = time.perf_counter()
                    for _ in range(calls):
                        call()
                    elapsed = time.perf_counter() - started
                    lpim.sanitize.disable()
                    if rep >= args.warmup:
                        times[state].append(elapsed / calls * 1e6)
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        print(f"| {name} | {off:.0f} | {on:.0f} | {on - off:+.0f} |")
    print()


def print_small(args: argparse.Namespace) -> None:
    print(
        f"Small model ({SMALL['layers']} layers, {SMALL['heads']} heads, batch "
        f"{SMALL['batch']}, {SMALL['tokens']} tokens, d_model {SMALL['d_model']}), "
        f"{args.mode}, median of {args.reps * 5}"
    )
    print()
    print("| row | off (ms) | collect (ms) | collect / off | findings |")
    print("|---|---:|---:|---:|---|")
    x, key_padding_mask = small_inputs()
    for name, forward in small_rows().items():
        time_row(name, forward, x, key_padding_mask, args, reps=args.reps * 5)
    print()


def time_row(
    name: str,
    forward: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    mask: Tensor,
    args: argparse.Namespace,
    reps: int,
) -> None:
    def off() -> None:
        step(forward, args.mode, inputs, mask)

    def on() -> None:
        with lpim.sanitize(on_finding="collect"):
            step(forward, args.mode, inputs, mask)

    with lpim.sanitize(on_finding="collect") as report:
        step(forward, args.mode, inputs, mask)
    medians = interleaved_medians({"off": off, "on": on}, reps, args.warmup, "cpu")
    kinds = ", ".join(sorted(report.kinds())) or "none"
    print(
        f"| {name} | {medians['off'] * 1e3:.2f} | {medians['on'] * 1e3:.2f} | "
        f"{medians['on'] / medians['off']:.2f}x | {kinds} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="realistic")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=["eval", "train"], default="eval")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"lpim.sanitize overhead: torch {torch.__version__}, CPU "
        f"({platform.processor() or 'cpu'}), {args.threads} thread(s), float32"
    )
    print()
    print_per_call(args)
    print_small(args)
    preset = PRESETS[args.preset]
    points, point_mask = make_batch(preset, torch.float32, "cpu", seed=0)
    forwards = rows(args.preset, train=args.mode == "train")
    print(
        f"Preset {args.preset} (B={preset.batch}, M={preset.lanes}, N={preset.points}, "
        f"d_model={preset.d_model}, {preset.nhead} heads, {preset.num_layers} layers), "
        f"{args.mode}, median of {args.reps}"
    )
    print()
    print("| row | off (ms) | collect (ms) | collect / off | findings |")
    print("|---|---:|---:|---:|---|")
    for name, forward in forwards.items():
        time_row(name, forward, points, point_mask, args, reps=args.reps)


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
