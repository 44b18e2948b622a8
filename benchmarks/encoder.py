"""How fast the reference encoder is against torch's padded layers and the cost of real tokens.

Usage:
    python benchmarks/encoder.py [--preset NAME ...] [--mode eval|train ...] [--device cpu|cuda]
                                 [--dtype float32|bfloat16 ...] [--quick] [--reps 7] [--warmup 2]
                                 [--row-budget-s 5] [--threads N] [--clock wall|process]
                                 [--rows ROW ...]

Prints one Markdown table per preset, mode and dtype. Every row runs the same weights (one
``lpim.PriorEncoder``; torch's layers load its layer state dict) on the same padded batch:

- ``naive``: ``nn.TransformerEncoder`` over all ``B*M`` lanes with ``src_key_padding_mask``, slow
  path (``torch.backends.mha`` fast path off);
- ``nested fast path``: the same stack in eval under ``no_grad`` with the fast path on, which packs
  the batch into a nested tensor (eval only: torch has no training fast path);
- ``3D attn_mask``: the same stack with ``lpim.masks.to_attn_mask_3d`` as ``mask`` (slow path);
- ``PriorEncoder``: ``lpim.PriorEncoder`` itself, in its device's token layout (packed real tokens
  on CPU, padded real lanes on CUDA);
- ``PriorEncoder, other layout``: the same weights in the other layout (``packed=False`` on CPU:
  the CUDA path, counted and timed where its kernels run on the CPU; ``packed=True`` on CUDA);
- ``compiled``: ``torch.compile(PriorEncoder, dynamic=True)`` (compiled during the check, before
  any timing);
- ``real tokens only``: a lower bound, the same weights on the real tokens alone, packed, with
  attention run per group of equal-length lanes (no padding and no mask anywhere).

Before timing, each row's lane embeddings on real lanes are checked against a reference (torch's
own layers run without any mask on groups of equal-length lanes, i.e. each lane unpadded) with the
``lpim.tolerance`` rule (the drift term from a float64 copy); a row that disagrees is printed as
WRONG and not timed. Times are medians of ``--reps`` repetitions after ``--warmup`` runs. A
training step is forward + backward of ``sum(lane_embedding[real lanes] ** 2)`` with dropout 0.

Ops and host syncs: one forward of each row (under ``no_grad`` in eval; recording the graph for
a training step) counted by ``lpim.testing._dispatch.count_dispatch``: compute ops dispatched below
autograd, views excluded (on a GPU, launches), and host syncs (value reads, data-dependent shapes,
device-to-CPU copies). ``--rows`` runs only the rows named.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the memory allocated before the
row; on CPU, the peak of the CPU allocator's running total during one run of the row, read from
``torch.profiler`` memory events (``profile_memory=True``): bytes of tensors the row allocated,
not the process RSS.

The physical limit: the matmul FLOPs of the real tokens alone (each real lane's real points plus
its query token through the position MLP and every layer; a training step counts 3x the forward)
divided by the dense matmul rate measured in the same run (a 1024x1024 matmul in the benchmark's
dtype). ``x limit`` is a row's time over that. Rows whose estimated time per repetition (padded
FLOPs over the measured rate) is above ``--row-budget-s`` are skipped, with the estimate printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpim import PriorEncoder, masks
from lpim.testing._dispatch import count_dispatch
from lpim.testing._reference import torch_stack
from lpim.tolerance import encoder_scale, tolerance


@dataclass(frozen=True)
class Preset:
    """Batch shape, model size and fill of one benchmark table."""

    batch: int  # B
    lanes: int  # M
    points: int  # N
    in_dim: int  # D
    d_model: int
    nhead: int
    num_layers: int
    dim_feedforward: int
    lane_fill: tuple[float, float]  # fraction of a sample's M lanes that are real, drawn uniformly
    real_points: tuple[int, int]  # real points per real lane, inclusive, drawn uniformly


PRESETS: dict[str, Preset] = {
    "small": Preset(2, 8, 8, 2, 32, 4, 1, 64, (0.25, 0.75), (1, 8)),
    # the LPIM configuration: 10-30% of 50 lanes real, 5-20 real points each
    "realistic": Preset(8, 50, 20, 2, 256, 8, 4, 1024, (0.10, 0.30), (5, 20)),
    # the seed's crash shapes: 200 lanes, at most 5% real
    "stress": Preset(8, 200, 20, 2, 256, 8, 4, 1024, (0.025, 0.05), (5, 20)),
    # MTR-sized map input (768 polylines x 20 points x 9 features), LPIM's fill and model
    "mtr": Preset(16, 768, 20, 9, 256, 8, 4, 1024, (0.10, 0.30), (5, 20)),
}

ROWS = (
    "naive",
    "nested fast path",
    "3D attn_mask",
    "PriorEncoder",
    "PriorEncoder, other layout",
    "compiled",
    "real tokens only",
)


def make_batch(preset: Preset, dtype: torch.dtype, device: str, seed: int) -> tuple[Tensor, Tensor]:
    """``points [B, M, N, D]`` in a 50 m BEV range and ``point_mask [B, M, N]``, right-padded.

    Real lanes sit at random slots among the M; their real points come first (the layout torch's
    nested fast path needs), and padded slots repeat the lane's last real point, as the seed LPIM
    loader does.
    """
    p = preset
    gen = torch.Generator().manual_seed(seed)
    point_mask = torch.zeros(p.batch, p.lanes, p.points, dtype=torch.bool)
    for b in range(p.batch):
        lo, hi = p.lane_fill
        fraction = lo + (hi - lo) * float(torch.rand((), generator=gen))
        real_lanes = torch.randperm(p.lanes, generator=gen)[: max(1, round(fraction * p.lanes))]
        counts = torch.randint(
            p.real_points[0], p.real_points[1] + 1, (len(real_lanes),), generator=gen
        )
        point_mask[b, real_lanes] = torch.arange(p.points) < counts[:, None]
    points = torch.rand(p.batch, p.lanes, p.points, p.in_dim, generator=gen) * 100 - 50
    last = (point_mask.sum(-1) - 1).clamp(min=0)  # [B, M]
    last_point = points.gather(2, last[..., None, None].expand(-1, -1, 1, p.in_dim))
    points = torch.where(point_mask[..., None], points, last_point)
    return points.to(device=device, dtype=dtype), point_mask.to(device)


# -- the rows ------------------------------------------------------------------------------------

Row = Callable[[Tensor, Tensor], Tensor]  # (points, point_mask) -> lane_embedding [B, M, C]


def all_lane_tokens(encoder: PriorEncoder, points: Tensor) -> Tensor:
    """``[B*M, 1+N, C]``: the query token and every slot's point token, padding included."""
    B, M, N, D = points.shape
    point_tokens = encoder.pos_embed(points.reshape(B * M, N, D) / encoder.coord_range)
    query = encoder.query.view(1, 1, -1).expand(B * M, 1, -1)
    return torch.cat([query, point_tokens], dim=1)


@contextmanager
def mha_fastpath(enabled: bool) -> Iterator[None]:
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def naive_row(encoder: PriorEncoder) -> Row:
    stack = torch_stack(encoder, nested=False)

    def run(points: Tensor, point_mask: Tensor) -> Tensor:
        B, M, _, _ = points.shape
        key_padding_mask = masks.to_key_padding_mask(point_mask, query_tokens=1)  # [B*M, 1+N]
        with mha_fastpath(False):
            out = stack(all_lane_tokens(encoder, points), src_key_padding_mask=key_padding_mask)
        return out[:, 0].reshape(B, M, -1)

    return run


def nested_row(encoder: PriorEncoder) -> Row:
    stack = torch_stack(encoder, nested=True)

    def run(points: Tensor, point_mask: Tensor) -> Tensor:
        B, M, _, _ = points.shape
        key_padding_mask = masks.to_key_padding_mask(point_mask, query_tokens=1)  # [B*M, 1+N]
        with mha_fastpath(True):
            out = stack(all_lane_tokens(encoder, points), src_key_padding_mask=key_padding_mask)
        # The nested path pads its output with exact zeros; the slow path never does.
        if not bool((out[key_padding_mask] == 0).all()):
            raise RuntimeError("torch did not take the nested-tensor fast path")
        return out[:, 0].reshape(B, M, -1)

    return run


def attn_mask_3d_row(encoder: PriorEncoder) -> Row:
    stack = torch_stack(encoder, nested=False)

    def run(points: Tensor, point_mask: Tensor) -> Tensor:
        B, M, _, _ = points.shape
        attn_mask = masks.to_attn_mask_3d(point_mask, encoder.nhead, query_tokens=1)
        with mha_fastpath(False):
            out = stack(all_lane_tokens(encoder, points), mask=attn_mask)  # [B*M, 1+N, C]
        return out[:, 0].reshape(B, M, -1)

    return run


def prior_row(encoder: PriorEncoder) -> Row:
    def run(points: Tensor, point_mask: Tensor) -> Tensor:
        return encoder(points, point_mask).lane_embedding

    return run


def other_layout_row(encoder: PriorEncoder) -> Row:
    """``PriorEncoder`` in the token layout its device does not take by default.

    The same module (so a training step's ``grad = None`` reaches its parameters), its ``packed``
    set for the call only.
    """

    def run(points: Tensor, point_mask: Tensor) -> Tensor:
        default = encoder.packed
        encoder.packed = points.device.type != "cpu"
        try:
            return encoder(points, point_mask).lane_embedding
        finally:
            encoder.packed = default

    return run


def compiled_row(encoder: PriorEncoder) -> Row:
    """``torch.compile(encoder, dynamic=True)``: compiled on the row's first call (the check)."""
    compiled = torch.compile(encoder, dynamic=True)

    def run(points: Tensor, point_mask: Tensor) -> Tensor:
        return compiled(points, point_mask).lane_embedding  # type: ignore[no-any-return]

    return run


def real_tokens_row(encoder: PriorEncoder) -> Row:
    """The lower bound: only real tokens exist; attention runs per group of equal-length lanes.

    Tokens are packed ``[T, C]`` with lanes sorted by length, so each group of equal-length lanes
    is one contiguous ``[n, L, C]`` block and attention needs no mask.
    """
    C, H = encoder.d_model, encoder.nhead

    def attention(layer: nn.Module, x: Tensor, groups: list[tuple[int, int]]) -> Tensor:
        attn = layer.self_attn
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # [T, 3C]
        pieces, start = [], 0
        for lanes, length in groups:
            block = qkv[start : start + lanes * length].view(lanes, length, 3, H, C // H)
            q, k, v = block.permute(2, 0, 3, 1, 4).unbind(0)  # [n, H, L, C/H] each
            out = F.scaled_dot_product_attention(q, k, v)  # [n, H, L, C/H]
            pieces.append(out.transpose(1, 2).reshape(lanes * length, C))
            start += lanes * length
        return attn.out_proj(torch.cat(pieces))  # [T, C]

    def feedforward(layer: nn.Module, x: Tensor) -> Tensor:
        return layer.linear2(F.gelu(layer.linear1(x)))

    def run(points: Tensor, point_mask: Tensor) -> Tensor:
        B, M, N, D = points.shape
        counts = point_mask.reshape(B * M, N).sum(1)  # [B*M]
        lanes = counts.nonzero().squeeze(1)  # [R]
        lanes = lanes[counts[lanes].argsort(stable=True)]  # [R], shortest first
        lane_counts = counts[lanes]  # [R]
        sizes, lengths = torch.unique_consecutive(lane_counts, return_counts=True)
        groups = [(n, c + 1) for c, n in zip(sizes.tolist(), lengths.tolist(), strict=True)]
        starts = torch.cumsum(lane_counts + 1, 0) - (lane_counts + 1)  # [R], query token slot
        real = point_mask.reshape(B * M, N)[lanes]  # [R, N]
        rank = torch.cumsum(real, 1)  # [R, N], 1 + position among the lane's real points
        point_slots = (starts[:, None] + rank)[real]  # [Tp]
        point_tokens = encoder.pos_embed(
            points.reshape(B * M, N, D)[lanes][real] / encoder.coord_range
        )
        T = int(starts[-1]) + int(lane_counts[-1]) + 1
        x = points.new_zeros(T, C)
        x = x.index_copy(0, starts, encoder.query.expand(len(lanes), C))
        x = x.index_copy(0, point_slots, point_tokens)  # [T, C]
        for layer in encoder.layers:
            if encoder.norm_first:
                x = x + attention(layer, layer.norm1(x), groups)
                x = x + feedforward(layer, layer.norm2(x))
            else:
                x = layer.norm1(x + attention(layer, x, groups))
                x = layer.norm2(x + feedforward(layer, x))
        x = encoder.norm(x)
        out = points.new_zeros(B * M, C).index_copy(0, lanes, x[starts])
        return out.view(B, M, C)

    return run


def reference(encoder: PriorEncoder, points: Tensor, point_mask: Tensor) -> Tensor:
    """Lane embeddings ``[B, M, C]`` from torch's own layers, each lane unpadded, no mask at all.

    Lanes of one real length are batched together; that is still each lane alone.
    """
    stack = torch_stack(encoder, nested=False).eval()
    B, M, N, D = points.shape
    counts = point_mask.reshape(B * M, N).sum(1)  # [B*M]
    out = points.new_zeros(B * M, encoder.d_model)
    with torch.no_grad(), mha_fastpath(False):
        for count in counts.unique().tolist():
            if count == 0:
                continue
            lanes = (counts == count).nonzero().squeeze(1)  # [n]
            real_points = points.reshape(B * M, N, D)[lanes][point_mask.reshape(B * M, N)[lanes]]
            tokens = encoder.pos_embed(real_points.view(len(lanes), count, D) / encoder.coord_range)
            query = encoder.query.view(1, 1, -1).expand(len(lanes), 1, -1)
            out[lanes] = stack(torch.cat([query, tokens], 1))[:, 0]
    return out.view(B, M, -1)


# -- measuring -----------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    reps: int,
    warmup: int,
    device: str,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin.

    Round-robin (rep 1 of every function, then rep 2, ...) so that a change in machine load hits
    every row alike: the ratios stay honest on a shared machine even when absolute times drift.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            synchronize(device)
            started = clock()
            fn()
            synchronize(device)
            times[name].append(clock() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def peak_bytes(fn: Callable[[], object], device: str) -> int:
    """Peak bytes allocated by one call of ``fn`` above what was allocated before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as trace:
            events = json.load(trace)["traceEvents"]
    # "Total Allocated" is the CPU allocator's running total since the profiler started.
    totals = [
        e["args"]["Total Allocated"]
        for e in events
        if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0
    ]
    return max([0, *totals])


def matmul_probe(dtype: torch.dtype, device: str) -> tuple[Callable[[], object], float]:
    """Dense 1024x1024 @ 1024x1024 products in ``dtype``, and the FLOPs of one call.

    On CUDA one call chains 20 products: a single one (~40 us on an H100) would be timed mostly
    as launch and synchronisation overhead.
    """
    a = torch.randn(1024, 1024, device=device).to(dtype)
    b = torch.randn(1024, 1024, device=device).to(dtype)
    chain = 20 if device == "cuda" else 1

    def run() -> None:
        for _ in range(chain):
            torch.mm(a, b)

    return run, 2.0 * 1024**3 * chain


def forward_flops(encoder: PriorEncoder, tokens_per_lane: Tensor) -> float:
    """Matmul FLOPs of a forward over lanes of ``1 + points`` tokens (``tokens_per_lane``)."""
    C, Fh, D = encoder.d_model, encoder.dim_feedforward, encoder.in_dim
    L = tokens_per_lane.double()
    per_layer = 2 * L * (3 * C * C + C * C + 2 * C * Fh) + 4 * L * L * C  # linears + QK^T, AV
    pos_mlp = 2 * (L - 1) * (D * C + C * C)
    return float((encoder.num_layers * per_layer + pos_mlp).sum())


def count_forward(
    run: Row, points: Tensor, point_mask: Tensor, mode: str, compiled: bool
) -> tuple[str, str]:
    """(compute ops, host syncs) of one forward of a row, as ``lpim.testing._dispatch`` counts.

    In eval the forward runs under ``no_grad``; for a training step it records the graph (the
    backward is not counted). A compiled row's kernels are not aten ops: only its syncs and the
    ops it leaves to eager between graphs are seen, so its op count is not comparable and is not
    printed.
    """
    with torch.set_grad_enabled(mode == "train"), count_dispatch() as count:
        run(points, point_mask)
    return ("-" if compiled else str(count.ops)), str(count.syncs)


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 10 else f"{ms:.1f}" if ms < 1e4 else f"{ms:.0f}"


def bench_table(
    name: str, preset: Preset, mode: str, dtype: torch.dtype, args: argparse.Namespace
) -> None:
    device = args.device
    reps, warmup = (5, 1) if args.quick else (args.reps, args.warmup)
    torch.manual_seed(args.seed)
    p = preset
    encoder = PriorEncoder(
        p.in_dim, p.d_model, p.nhead, p.num_layers, p.dim_feedforward, dropout=0.0
    ).to(device=device, dtype=dtype)
    points, point_mask = make_batch(p, dtype, device, args.seed)
    lane_mask = point_mask.any(-1)  # [B, M]
    counts = point_mask.sum(-1)[lane_mask]  # [R]
    train_factor = 3 if mode == "train" else 1
    real_flops = forward_flops(encoder, counts + 1) * train_factor
    all_lanes = torch.full((p.batch * p.lanes,), p.points + 1)
    padded_flops = forward_flops(encoder, all_lanes) * train_factor

    expected = reference(encoder.eval(), points, point_mask)[lane_mask]
    drift = 0.0
    if dtype != torch.float64:
        encoder64 = copy.deepcopy(encoder).double()
        expected64 = reference(encoder64, points.double(), point_mask)[lane_mask]
        drift = float((expected.double() - expected64).abs().max())
    encoder.train(mode == "train")
    rule = tolerance(dtype, *encoder_scale(encoder, p.points + 1))

    clock = time.process_time if args.clock == "process" else time.perf_counter
    probe, probe_flops = matmul_probe(dtype, device)
    rough_rate = probe_flops / interleaved_medians({"matmul": probe}, 3, 1, device, clock)["matmul"]
    builders: dict[str, Callable[[PriorEncoder], Row]] = {
        "naive": naive_row,
        "nested fast path": nested_row,
        "3D attn_mask": attn_mask_3d_row,
        "PriorEncoder": prior_row,
        "PriorEncoder, other layout": other_layout_row,
        "compiled": compiled_row,
        "real tokens only": real_tokens_row,
    }
    parameters = list(encoder.parameters())
    verdicts: dict[str, str] = {}
    steps: dict[str, Callable[[], object]] = {}
    dispatched: dict[str, tuple[str, str]] = {}
    for row in ROWS:
        if args.rows and row not in args.rows:
            verdicts[row] = "not run (--rows)"
            continue
        if row == "nested fast path" and mode == "train":
            verdicts[row] = "n/a: torch's fast path is eval-only"
            continue
        estimate_s = padded_flops / rough_rate
        if row in ("naive", "nested fast path", "3D attn_mask") and estimate_s > args.row_budget_s:
            verdicts[row] = (
                f"skipped: padded FLOPs / matmul rate = {estimate_s:.0f} s per rep "
                f"> --row-budget-s {args.row_budget_s:g}"
            )
            continue
        run = builders[row](encoder)

        def step(run: Row = run) -> Tensor:
            if mode == "eval":
                with torch.no_grad():
                    return run(points, point_mask)
            for parameter in parameters:
                parameter.grad = None
            lane_embedding = run(points, point_mask)
            lane_embedding[lane_mask].square().sum().backward()
            return lane_embedding.detach()

        try:
            actual = step()[lane_mask]
        except RuntimeError as error:
            verdicts[row] = f"FAILED: {str(error).splitlines()[0][:80]}"
            continue
        ratio = float(rule.error_ratio(actual, expected, drift).max())
        if not ratio <= 1:
            verdicts[row] = f"WRONG: error {ratio:.3g}x the allowed"
            continue
        verdicts[row] = f"ok ({ratio:.2f})"
        steps[row] = step
        dispatched[row] = count_forward(run, points, point_mask, mode, compiled=row == "compiled")

    seconds = interleaved_medians({**steps, "matmul": probe}, reps, warmup, device, clock)
    rate = probe_flops / seconds.pop("matmul")
    limit_s = real_flops / rate
    peaks = {row: peak_bytes(step, device) for row, step in steps.items()}

    naive_s, naive_b = seconds.get("naive"), peaks.get("naive")
    title = "eval forward (no_grad)" if mode == "eval" else "training step (forward + backward)"
    R, T, S = int(lane_mask.sum()), int((counts + 1).sum()), p.batch * p.lanes * (p.points + 1)
    print(f"\n### {name}: {title}, {device} {str(dtype).removeprefix('torch.')}\n")
    print(
        f"B={p.batch} M={p.lanes} N={p.points} D={p.in_dim}, d_model={p.d_model}, "
        f"{p.nhead} heads, {p.num_layers} layer(s), FFN {p.dim_feedforward}; "
        f"{R} real lanes of {p.batch * p.lanes}, {T} real tokens of {S} ({100 * T / S:.1f}%). "
        f"Limit: {real_flops / 1e9:.3g} GFLOP / {rate / 1e9:.0f} GFLOP/s "
        f"(1024x1024 matmul, timed among the rows) = {fmt_ms(limit_s)} ms. "
        f"Median of {reps} round-robin repetitions after {warmup} warm-up, {args.clock} clock.\n"
    )
    header = ["row", "check (error/allowed)", "median ms", "x naive speed", "x limit", "peak MiB",
              "memory / naive", "ops / forward", "host syncs / forward"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in ROWS:
        cells = [row, verdicts[row]] + ["-"] * 7
        if row in seconds:
            cells[2] = fmt_ms(seconds[row])
            cells[3] = f"{naive_s / seconds[row]:.2f}x" if naive_s else "-"
            cells[4] = f"{seconds[row] / limit_s:.2f}"
            cells[5] = f"{peaks[row] / 2**20:.1f}"
            cells[6] = f"{peaks[row] / naive_b:.2f}" if naive_b else "-"
        if row in dispatched:
            cells[7], cells[8] = dispatched[row]
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), action="append")
    parser.add_argument("--mode", choices=["eval", "train"], action="append")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], action="append")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (>= 5)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="5 repetitions after 1 warm-up")
    parser.add_argument(
        "--row-budget-s",
        type=float,
        default=5.0,
        help="skip padded rows whose estimated time per repetition exceeds this",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rows",
        choices=ROWS,
        action="append",
        help="run only these rows (repeatable); the others print 'not run'",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "process"],
        default="wall",
        help="process: CPU seconds of this process (all threads); with --threads 1 on a CPU "
        "shared with other jobs, the work's own time. CUDA needs wall",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch.set_num_threads; on a CPU shared with other jobs, 1 avoids OpenMP stalls",
    )
    args = parser.parse_args()
    if args.reps < 5:
        parser.error(f"--reps must be at least 5; got {args.reps}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False on this machine")
    if args.device == "cuda" and args.clock != "wall":
        parser.error("--device cuda needs --clock wall (GPU work is not process CPU time)")
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"torch {torch.__version__}, {args.device}: {machine}")
    for dtype_name in args.dtype or ["float32"]:
        dtype = getattr(torch, dtype_name)
        for name in args.preset or list(PRESETS):
            for mode in args.mode or ["eval", "train"]:
                bench_table(name, PRESETS[name], mode, dtype, args)


if __name__ == "__main__":
    main()
