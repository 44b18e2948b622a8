"""The pitfalls gallery's sections, printed as Markdown by ``docs/pitfalls.md`` at build time.

Each section shows a zoo bug's docstring (what is wrong, why people write it, what catches it),
the source of the method(s) it overrides, and the real output of ``check_encoder`` on it (of
``check_lane_consumer`` for the zoo's buggy lane-set consumers).
"""

from __future__ import annotations

import inspect
import re
import textwrap
import time
from pathlib import Path

import torch
from hypothesis import Phase, settings

from lpim.testing import (
    DEFAULT_SETTINGS,
    PropertyError,
    check_encoder,
    check_lane_consumer,
)
from lpim.zoo import BUGS, CONSUMER_BUGS

#: The defaults, derandomized (the page shows the same thing on every build), with fewer
#: examples and without the ``target`` and ``explain`` phases (they triple the build time and add
#: nothing to the report shown).
GALLERY_SETTINGS = settings(
    DEFAULT_SETTINGS,
    derandomize=True,
    database=None,
    max_examples=10,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
#: Small batches: every bug in the zoo shows on them, and shrinking them is quick.
GALLERY_SIZES = {"batch_size": (1, 2), "num_lanes": (1, 4), "num_points": (1, 6)}


def rst_to_markdown(docstring: str) -> str:
    """Turn the reST literals of the zoo's docstrings (````x````, ``::`` blocks) into Markdown."""
    # ``x`` (reST) -> `x` (Markdown); a fence's ``` is left alone
    text = re.sub(r"(?<!`)``(?!`)", "`", inspect.cleandoc(docstring))
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1])
            block: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i])
                i += 1
            out += ["", "```python", textwrap.dedent("\n".join(block)).strip("\n"), "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def overridden_source(cls: type) -> str:
    """Source of the methods ``cls`` defines itself: the override that is the bug."""
    parts = [
        inspect.getsource(member)
        for name, member in vars(cls).items()
        if inspect.isfunction(member) and not name.startswith("__")
    ]
    return textwrap.dedent("\n".join(parts)).rstrip()


#: The title of a reproducer's block: run, it raises the failure (``scripts/site_examples.py``).
_REPRODUCER = "Reproducer: raises the failure when run"


def _listing(cls: type) -> str:
    """The title of an override's source: a listing to read (its names live in the zoo)."""
    return f"Listing: {cls.__name__}'s override, in {cls.__module__.replace('.', '/')}.py"


def _dtype(name: str) -> torch.dtype:
    return torch.float16 if name == "fill_minus_1e9_fp16" else torch.float64


def _check(name: str) -> str:
    """The report of the check of zoo bug ``name``; raises its failure."""
    if name in CONSUMER_BUGS:
        consumer = CONSUMER_BUGS[name]
        report = check_lane_consumer(
            consumer.factory(),
            other_inputs=consumer.other_inputs,
            order_invariant=consumer.order_invariant,
            dtype=torch.float64,
            settings=GALLERY_SETTINGS,
        )
        return str(report)
    entry = BUGS[name]
    report = check_encoder(
        entry.factory(),
        dtype=_dtype(name),
        settings=GALLERY_SETTINGS,
        **GALLERY_SIZES,
        **entry.contract,
    )
    return str(report)


def check_output(name: str) -> tuple[str, str, str]:
    """``(report, message, reproducer)`` of the check of zoo bug ``name`` (an encoder of
    ``BUGS`` or a consumer of ``CONSUMER_BUGS``)."""
    caught_by = (CONSUMER_BUGS[name] if name in CONSUMER_BUGS else BUGS[name]).caught_by
    try:
        report = _check(name)
    except PropertyError as failure:
        if failure.property_name != caught_by:
            raise AssertionError(
                f"{name}: the zoo says {caught_by} catches it, the check said "
                f"{failure.property_name}"
            ) from failure
        message = str(failure).split("  reproducer (paste")[0].rstrip()
        return str(failure.report), message, failure.reproducer
    if torch.cuda.is_available() or caught_by != "devices_agree":
        raise AssertionError(f"{name}: the check passed, but {caught_by} should fail")
    return report, "", ""


#: The page that prints the sections.
PAGE = Path(__file__).resolve().parent.parent / "docs" / "pitfalls.md"


def missing_sections() -> list[str]:
    """The zoo's bugs (encoders and consumers) that the gallery page has no section for."""
    shown = set(re.findall(r'section\("(\w+)"\)', PAGE.read_text(encoding="utf-8")))
    return sorted((set(BUGS) | set(CONSUMER_BUGS)) - shown)


def section(name: str) -> str:
    """The Markdown body of one gallery section (the page prints it: markdown-exec captures the
    page's ``print``, not this module's)."""
    if name in CONSUMER_BUGS:
        return _consumer_section(name)
    entry = BUGS[name]
    cls = type(entry.factory())
    started = time.perf_counter()
    report, message, reproducer = check_output(name)
    seconds = time.perf_counter() - started
    dtype = str(_dtype(name)).removeprefix("torch.")
    out: list[str] = []
    summary = entry.summary.replace("*", "\\*")  # B*M is not emphasis
    out.append(f"**{summary}.** Bug class `{entry.bug_class}`; caught by `{entry.caught_by}`.\n")
    out.append(rst_to_markdown(cls.__doc__ or ""))
    out.append(f"\nThe override (`{cls.__module__}.{cls.__name__}`):\n")
    out.append(f'```python title="{_listing(cls)}"\n{overridden_source(cls)}\n```\n')
    contract = "".join(f", {key}={value!r}" for key, value in entry.contract.items())
    out.append(
        f"`check_encoder(BUGS[{name!r}].factory(), dtype=torch.{dtype}{contract}, ...)` at build "
        f"time ({seconds:.1f} s):\n"
    )
    out.append(f"```text\n{report}\n```\n")
    if message:
        out.append(f"```text\n{message}\n```\n")
        body = textwrap.indent(
            f'```python title="{_REPRODUCER}"\n{reproducer.rstrip()}\n```', "    "
        )
        out.append(f'??? example "The reproducer it prints"\n\n{body}\n')
    else:
        out.append(
            "On this machine there is no GPU, so `devices_agree` is skipped (the row says why) "
            "and the check passes: this bug only shows where CUDA runs. See "
            "[Run the checks on a GPU](../howto/gpu/).\n"
        )
    return "\n".join(out)


def _consumer_section(name: str) -> str:
    """The section of a buggy lane-set consumer (`lpim.zoo.CONSUMER_BUGS`)."""
    entry = CONSUMER_BUGS[name]
    cls = type(entry.factory())
    started = time.perf_counter()
    report, message, reproducer = check_output(name)
    seconds = time.perf_counter() - started
    out = [
        f"**{entry.summary.replace('*', chr(92) + '*')}.** A lane-set consumer; caught by "
        f"`{entry.caught_by}`.\n",
        rst_to_markdown(cls.__doc__ or ""),
        f"\nThe override (`{cls.__module__}.{cls.__name__}`):\n",
        f'```python title="{_listing(cls)}"\n{overridden_source(cls)}\n```\n',
        f"`check_lane_consumer(CONSUMER_BUGS[{name!r}].factory(), dtype=torch.float64, ...)` at "
        f"build time ({seconds:.1f} s):\n",
        f"```text\n{report}\n```\n",
        f"```text\n{message}\n```\n",
    ]
    body = textwrap.indent(f'```python title="{_REPRODUCER}"\n{reproducer.rstrip()}\n```', "    ")
    out.append(f'??? example "The reproducer it prints"\n\n{body}\n')
    return "\n".join(out)
