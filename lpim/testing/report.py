"""What a check found: one row per property and dtype, a headline that counts them, a table.

The CLI, the pytest plugin and the benchmarks render reports with these types; nothing here
knows how the rows were produced (that is `lpim.testing.driver`'s business).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["VERDICTS", "CheckReport", "PropertyResult", "format_table", "shorten", "wrap"]

VERDICTS = ("pass", "FAIL", "skipped", "unsupported", "excluded")
"""What a row can say.

- `pass`: the property held on every example drawn.
- `FAIL`: it did not (the error raised at the end of the check has the example).
- `skipped`: this machine could not check it (no CUDA device), or the encoder's crash on
  every batch left nothing to check; `strict=True` makes it fail the check.
- `unsupported`: the encoder cannot run at this dtype (in this precision mode) while it runs
  at float32; never a failure, never a pass (`strict=True` makes it fail the check).
- `excluded`: outside the data contract the user stated (e.g. NaN padding under
  `garbage="finite"`) or not declared (`order_invariant=False`): not checked, by request.
"""


@dataclass(frozen=True)
class PropertyResult:
    """One property at one dtype.

    Attributes:
        property_name: the property's name in its registry.
        dtype: the dtype checked (with `precision="autocast"`, the autocast dtype).
        verdict: one of `VERDICTS`.
        examples: examples tried.
        seconds: wall time.
        max_error_ratio: the largest error seen, over every example, as a fraction of the
            allowed one (<= 1 passes; for a failure, the worst example, not only the shrunk one).
        note: why skipped, unsupported or excluded; the failure's first line; or what the pass
            rests on (e.g. no float64 reference).
    """

    property_name: str
    dtype: torch.dtype
    verdict: str
    examples: int
    seconds: float
    max_error_ratio: float
    note: str = ""


@dataclass
class CheckReport:
    """What a check found; `str()` is a headline, the contract checked and a table.

    Attributes:
        encoder: a short name of what was checked.
        results: one `PropertyResult` per property and dtype, in the order run.
        contract: the data contract the check ran under, in words.
        notes: observations that are not verdicts (what empty lanes give, a missing float64
            reference), one line each.
    """

    encoder: str
    results: list[PropertyResult] = field(default_factory=list)
    contract: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no row failed (skipped, unsupported and excluded rows are not failures)."""
        return all(r.verdict != "FAIL" for r in self.results)

    @property
    def complete(self) -> bool:
        """True when every row passed or was excluded by the contract: nothing skipped,
        nothing unsupported, nothing failed. What `strict=True` requires."""
        return all(r.verdict in ("pass", "excluded") for r in self.results)

    @property
    def seconds(self) -> float:
        """Total wall time."""
        return sum(r.seconds for r in self.results)

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready data: `subject`, `headline`, `passed`, `complete`,
        `contract`, `notes` and `rows` (each `property`, `dtype`, `verdict`, `examples`,
        `seconds`, `max_error_ratio`, `note`; a ratio that is not finite, or of a row without
        examples, is None)."""
        return {
            "subject": self.encoder,
            "headline": self.headline,
            "passed": self.passed,
            "complete": self.complete,
            "contract": self.contract,
            "notes": list(self.notes),
            "rows": [
                {
                    "property": r.property_name,
                    "dtype": str(r.dtype).removeprefix("torch."),
                    "verdict": r.verdict,
                    "examples": r.examples,
                    "seconds": round(r.seconds, 4),
                    "max_error_ratio": r.max_error_ratio
                    if r.examples and math.isfinite(r.max_error_ratio)
                    else None,
                    "note": r.note,
                }
                for r in self.results
            ],
        }

    def count(self, verdict: str) -> int:
        """Rows with `verdict`."""
        return sum(r.verdict == verdict for r in self.results)

    @property
    def headline(self) -> str:
        """What happened, counted: "all properties hold" only when every row passed."""
        counts = {verdict: self.count(verdict) for verdict in VERDICTS}
        if self.results and counts["pass"] == len(self.results):
            return f"all properties hold ({counts['pass']} checks)"
        parts = [f"{counts['pass']} checks hold"]
        reasons = {
            "skipped": _reasons(self.results, "skipped"),
            "unsupported": _reasons(self.results, "unsupported"),
            "excluded": _reasons(self.results, "excluded"),
        }
        for verdict in ("unsupported", "skipped", "excluded"):
            if counts[verdict]:
                parts.append(f"{counts[verdict]} {verdict} ({reasons[verdict]})")
        parts.append(f"{counts['FAIL']} failed")
        return ", ".join(parts)

    def __str__(self) -> str:
        # Long notes repeat on many rows (the same reason at every dtype): each is printed
        # once, under the table, and the rows point to it, so the table fits a terminal.
        footnotes: list[str] = []

        def short(note: str) -> str:
            if len(note) <= _NOTE_WIDTH:
                return note
            if note not in footnotes:
                footnotes.append(note)
            mark = f"[{footnotes.index(note) + 1}] "
            return mark + shorten(note, _NOTE_WIDTH - len(mark))

        rows = [
            [
                r.property_name,
                str(r.dtype).removeprefix("torch."),
                str(r.examples),
                f"{r.seconds:.2f}s",
                f"{r.max_error_ratio:.3g}" if r.examples else "-",
                r.verdict,
                short(r.note),
            ]
            for r in self.results
        ]
        header = ["property", "dtype", "examples", "time", "error/allowed", "verdict", "note"]
        lines = [f"lpim check of {self.encoder}: {self.headline} ({self.seconds:.1f}s)"]
        if self.contract:
            lines.append(f"data contract: {self.contract}")
        lines.append(format_table(header, rows))
        lines += [wrap(f"[{i}] {note}") for i, note in enumerate(footnotes, 1)]
        lines += [wrap(f"note: {note}") for note in self.notes if note not in footnotes]
        return "\n".join(lines)


_NOTE_WIDTH = 48  # characters of a note shown in the table before it becomes a footnote
_LINE_WIDTH = 100  # a footnote wraps at a word boundary to lines this wide


def shorten(text: str, width: int) -> str:
    """`text` on one line in at most `width` characters, cut at a word boundary (" ..." marks
    the cut); a first word longer than `width` is kept whole."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text.rfind(" ", 0, width - 3)
    return (text[:cut] if cut > 0 else text.split(" ", 1)[0]) + " ..."


def wrap(text: str, width: int = _LINE_WIDTH, indent: str = "    ") -> str:
    """`text` whole, wrapped at word boundaries to `width` (continuation lines indented); a
    word longer than a line (a path, a number) is never broken."""
    return textwrap.fill(
        text,
        width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _reasons(results: Sequence[PropertyResult], verdict: str) -> str:
    """The distinct short reasons of rows with `verdict`, for the headline."""
    seen: list[str] = []
    for r in results:
        if r.verdict == verdict:
            reason = _short_reason(r.note)
            if reason not in seen:
                seen.append(reason)
    return "; ".join(seen[:2]) + ("; ..." if len(seen) > 2 else "")


def _short_reason(note: str) -> str:
    if "CUDA" in note:
        return "no CUDA device"
    if "not declared" in note:
        return "not declared"
    return shorten(note.split(":")[0].split(";")[0], 60) or "no reason given"


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False
) -> str:
    """A plain-text (or Markdown) table with columns padded to their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)]
        return f"| {' | '.join(padded)} |" if markdown else "  ".join(padded).rstrip()

    rule = (
        f"|{'|'.join('-' * (width + 2) for width in widths)}|"
        if markdown
        else "  ".join("-" * width for width in widths)
    )
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
