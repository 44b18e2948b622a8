"""Pictures of masks for the docs, drawn with matplotlib at build time and returned as inline SVG.

Used by ``docs/conventions.md`` (markdown-exec blocks with ``html="true"``); ``scripts/`` is put on
``sys.path`` by ``scripts/mkdocs_hooks.py``.
"""

from __future__ import annotations

import html
import io
import math

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch

KEEP, DROP, QUERY, EMPTY = "#4c9be8", "#eeeeee", "#f4a340", "#ffffff"


def _titles(fig: plt.Figure) -> str:
    """The figure's own titles (suptitle, then each panel's), as a fallback description."""
    parts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    parts += [ax.get_title() for ax in fig.axes if ax.get_title()]
    return "; ".join(dict.fromkeys(p for p in parts if p))


def svg(fig: plt.Figure, alt: str | None = None) -> str:
    """The figure as an inline ``<svg>`` element (no file on disk, nothing to go missing).

    ``alt`` is what a screen reader says instead of the picture (``role="img"``, ``aria-label``
    and a ``<title>``); without it the figure's titles are used.
    """
    description = alt or _titles(fig) or "figure"
    buffer = io.StringIO()
    # No date in the metadata and fixed element ids: the same page on every build.
    with plt.rc_context({"svg.hashsalt": "lpim"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.find("<svg") :]
    label = html.escape(description, quote=True)
    head_end = text.index(">") + 1
    return (
        text[: head_end - 1]
        + f' role="img" aria-label="{label}">'
        + f"<title>{label}</title>"
        + text[head_end:]
    )


def _grid(
    ax: plt.Axes,
    values: torch.Tensor,
    keep: torch.Tensor,
    *,
    query_tokens: int,
    row_labels: list[str],
    title: str,
    fmt: str = "{}",
) -> None:
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            colour = KEEP if keep[r, c] else DROP
            if c < query_tokens and keep[r, c]:
                colour = QUERY
            ax.add_patch(plt.Rectangle((c, rows - 1 - r), 1, 1, fc=colour, ec="#555555", lw=0.8))
            value = values[r, c].item()
            text = fmt.format(value) if not isinstance(value, bool) else ("T" if value else "F")
            if isinstance(value, float) and math.isinf(value):
                text = "-inf" if value < 0 else "inf"
            ax.text(c + 0.5, rows - 0.5 - r, text, ha="center", va="center", fontsize=8)
    ax.set_xlim(0, cols)
    ax.set_ylim(0, rows)
    ax.set_xticks([c + 0.5 for c in range(cols)])
    ax.set_xticklabels(["q" if c < query_tokens else f"p{c - query_tokens}" for c in range(cols)])
    ax.set_yticks([rows - 0.5 - r for r in range(rows)])
    ax.set_yticklabels(row_labels, fontsize=8)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.tick_params(length=0, labelsize=8)
    for side in ax.spines.values():
        side.set_visible(False)


def _legend(fig: plt.Figure, query: bool = True) -> None:
    handles = [Patch(fc=KEEP, ec="#555555", label="real point: attended")]
    if query:
        handles.append(Patch(fc=QUERY, ec="#555555", label="query token: never masked"))
    handles.append(Patch(fc=DROP, ec="#555555", label="padded slot: masked"))
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.08),
    )


def lane_labels(point_mask: torch.Tensor) -> list[str]:
    """``"b0 m1"`` for each flattened lane of ``point_mask [B, M, N]``."""
    B, M, _ = point_mask.shape
    return [f"b{b} m{m}" for b in range(B) for m in range(M)]


def draw_rows(
    values: torch.Tensor,
    keep: torch.Tensor,
    point_mask: torch.Tensor,
    *,
    query_tokens: int,
    title: str,
    fmt: str = "{}",
) -> str:
    """One row per lane (``(B*M, S)``): key_padding_mask, sdpa, additive, attention_mask."""
    fig, ax = plt.subplots(figsize=(0.55 * values.shape[1] + 1.2, 0.45 * values.shape[0] + 0.8))
    _grid(
        ax,
        values,
        keep,
        query_tokens=query_tokens,
        row_labels=lane_labels(point_mask),
        title=title,
        fmt=fmt,
    )
    _legend(fig, query=query_tokens > 0)
    return svg(fig)


def draw_point_mask(point_mask: torch.Tensor) -> str:
    """``point_mask [B, M, N]`` as one grid per sample."""
    B = point_mask.shape[0]
    fig, axes = plt.subplots(1, B, figsize=(2.6 * B + 0.6, 0.45 * point_mask.shape[1] + 0.9))
    axes = [axes] if B == 1 else list(axes)
    for b, ax in enumerate(axes):
        sample = point_mask[b]
        _grid(
            ax,
            sample,
            sample,
            query_tokens=0,
            row_labels=[f"m{m}" for m in range(sample.shape[0])],
            title=f"point_mask[{b}]",
        )
    _legend(fig, query=False)
    return svg(fig)


def draw_attn_mask_3d(
    attn_mask: torch.Tensor,
    point_mask: torch.Tensor,
    num_heads: int,
    *,
    query_tokens: int,
    title: str,
) -> str:
    """``(B*M*H, L, S)`` as one ``L x S`` panel per row block, labelled with its lane and head."""
    rows = attn_mask.shape[0]
    labels = lane_labels(point_mask)
    cols = num_heads
    fig, axes = plt.subplots(
        rows // cols, cols, figsize=(2.4 * cols, 2.7 * rows // cols), layout="constrained"
    )
    for r, ax in enumerate(axes.flat):
        lane, head = divmod(r, num_heads)
        block = attn_mask[r]
        _grid(
            ax,
            block,
            ~block,
            query_tokens=query_tokens,
            row_labels=[
                "q" if i < query_tokens else f"p{i - query_tokens}" for i in range(block.shape[0])
            ],
            title=f"row {r}: {labels[lane]}, head {head}",
        )
    fig.suptitle(title, fontsize=10)
    _legend(fig)
    return svg(fig)


def draw_packed(point_mask: torch.Tensor, cu_seqlens: torch.Tensor, *, query_tokens: int) -> str:
    """Packed tokens ``[T]`` with each lane's segment and the ``cu_seqlens`` offsets."""
    labels = lane_labels(point_mask)
    total = int(cu_seqlens[-1])
    fig, ax = plt.subplots(figsize=(0.55 * max(total, 4) + 1.0, 1.5))
    palette = ["#4c9be8", "#7bc47f", "#c27bd1", "#e8734c", "#d1c27b"]
    for lane in range(len(cu_seqlens) - 1):
        start, end = int(cu_seqlens[lane]), int(cu_seqlens[lane + 1])
        for t in range(start, end):
            colour = QUERY if t - start < query_tokens else palette[lane % len(palette)]
            ax.add_patch(plt.Rectangle((t, 0), 1, 1, fc=colour, ec="#555555", lw=0.8))
            ax.text(t + 0.5, 0.5, str(t), ha="center", va="center", fontsize=8)
        if end > start:
            ax.text((start + end) / 2, 1.25, labels[lane], ha="center", fontsize=8)
    for offset in cu_seqlens.tolist():
        # The boundary spans the token row only; its offset is written below it, clear of it.
        ax.vlines(offset, -0.12, 1.12, color="black", lw=1.5)
        ax.text(offset, -0.5, str(offset), ha="center", va="center", fontsize=8, weight="bold")
    ax.text(-0.3, -0.5, "cu_seqlens:", ha="right", va="center", fontsize=8)
    handles = [Patch(fc=QUERY, ec="#555555", label="query token of a lane")] if query_tokens else []
    handles.append(Patch(fc="white", ec="#555555", label="a lane's point tokens (one colour each)"))
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.12),
    )
    ax.set_xlim(-2.2, max(total, 1) + 0.2)
    ax.set_ylim(-0.8, 1.6)
    ax.axis("off")
    ax.set_title(f"packed tokens [T = {total}]; cu_seqlens = {cu_seqlens.tolist()}", fontsize=9)
    return svg(fig)


def draw_lengths(point_mask: torch.Tensor, lengths: torch.Tensor) -> str:
    """``lengths (B*M,)`` as bars over the right-padded slots."""
    labels = lane_labels(point_mask)
    fig, ax = plt.subplots(figsize=(4.5, 0.45 * len(labels) + 0.8))
    ax.barh(range(len(labels)), lengths.tolist(), color=KEEP, ec="#555555")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("lengths: real tokens per lane (right padding only)", fontsize=8)
    ax.set_xlim(0, point_mask.shape[-1] + 1)
    for i, n in enumerate(lengths.tolist()):
        ax.text(n + 0.1, i, str(n), va="center", fontsize=8)
    return svg(fig)


def fill_sweep_chart(path: str = "docs/data/fill_sweep.json") -> str:
    """Eval time vs. fraction of real lanes (``benchmarks/fill_sweep.py``'s JSON) as inline SVG."""
    import json

    with open(path) as file:
        data = json.load(file)
    fractions = [100 * f for f in data["fractions"]]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    styles = {"naive": ("#888888", "o"), "nested fast path": ("#f4a340", "s")}
    for row, ms in data["ms"].items():
        colour, marker = styles.get(row, ("#4c9be8", "D"))
        points = [(f, t) for f, t in zip(fractions, ms, strict=True) if t is not None]
        ax.plot(*zip(*points, strict=True), marker=marker, color=colour, label=row, lw=1.8)
    ax.set_yscale("log")
    ax.set_xlabel("real lanes, % of M = 50 (5-20 of 20 points each)")
    ax.set_ylabel("eval forward, ms (log)")
    ax.axvspan(10, 30, color="#4c9be8", alpha=0.08, lw=0)
    ax.text(20, ax.get_ylim()[0] * 1.1, "LPIM's fill", ha="center", va="bottom", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"{data['config']}; CPU, torch {data['torch']}", fontsize=8)
    label = (
        "Eval time against the share of real lanes: the padded stack stays flat, the nested fast "
        "path grows slowly from a high floor, PriorEncoder grows with the real tokens."
    )
    return svg(fig).replace("<svg", f'<svg role="img" aria-label="{label}"', 1)


def draw_head_order(num_lanes: int = 3, num_heads: int = 2) -> str:
    """Row ``r`` of a 3D ``attn_mask``: whose mask MHA reads there, and whose ``repeat`` put."""
    rows = num_lanes * num_heads
    palette = ["#4c9be8", "#7bc47f", "#c27bd1", "#e8734c", "#d1c27b"]
    fig, ax = plt.subplots(figsize=(7.2, 0.42 * rows + 1.3))
    columns = [
        (
            "nn.MultiheadAttention reads\nrow r as lane r // H,\nhead r % H",
            lambda r: r // num_heads,
        ),
        (
            "repeat_interleave(H, 0)\nputs lane r // H there\n(lane-major: right)",
            lambda r: r // num_heads,
        ),
        (
            "repeat(H, 1, 1)\nputs lane r % (B*M) there\n(head-major: wrong)",
            lambda r: r % num_lanes,
        ),
    ]
    for c, (title, lane_of) in enumerate(columns):
        x = c * 3.6
        ax.text(x + 1.4, rows + 0.35, title, ha="center", va="bottom", fontsize=8)
        for r in range(rows):
            lane = lane_of(r)
            y = rows - 1 - r
            wrong = lane != r // num_heads
            ax.add_patch(
                plt.Rectangle(
                    (x, y + 0.08),
                    2.8,
                    0.84,
                    fc=palette[lane % len(palette)],
                    ec="#c0392b" if wrong else "#555555",
                    lw=2.2 if wrong else 0.8,
                )
            )
            label = f"lane {lane}'s mask" if c else f"lane {lane}, head {r % num_heads}"
            ax.text(
                x + 1.4,
                y + 0.5,
                label + ("  ✗" if wrong else ""),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if not wrong else "black",
                weight="bold" if wrong else "normal",
            )
    for r in range(rows):
        ax.text(-0.25, rows - 0.5 - r, f"row {r}", ha="right", va="center", fontsize=8)
    ax.set_xlim(-1.3, 3 * 3.6)
    ax.set_ylim(-0.1, rows + 1.6)
    ax.axis("off")
    ax.set_title(
        f"B*M = {num_lanes} lanes, H = {num_heads} heads: {rows} rows; "
        "red = a head reads another lane's padding",
        fontsize=9,
    )
    return svg(
        fig,
        alt=(
            f"Rows 0 to {rows - 1} of a 3D attn_mask for {num_lanes} lanes and {num_heads} "
            "heads. nn.MultiheadAttention reads row r as lane r // H, head r % H. "
            "repeat_interleave puts lane r // H's mask there, which matches every row; "
            "repeat puts lane r % (B*M)'s mask there, which matches only rows 0 and "
            f"{rows - 1}: every other row gives a head another lane's padding."
        ),
    )
