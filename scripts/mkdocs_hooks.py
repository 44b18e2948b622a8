"""mkdocs hooks for lpim's site: set up the process that executes the pages' code blocks, run
them in parallel, and keep what they printed in a cache keyed by everything they read.

markdown-exec runs every ``exec="on"`` block inside the mkdocs process, so settings made here hold
for all of them:

- torch uses one thread: the examples are tiny, and on a shared or small machine torch's thread
  pool makes them tens of times slower, not faster.
- matplotlib draws with the non-interactive Agg backend (pictures are inline SVG, drawn by
  ``scripts/docs_figures.py``, which is put on ``sys.path``).
- Hypothesis draws from the same pool of constants in every process: the literals of lpim's
  own modules. Hypothesis mixes literals of every "local" module loaded so far into what it
  draws (about 1 draw in 20), derandomized runs included, so a check's examples would depend on
  which pages' blocks ran before it in that process (examples, scripts, temporary files) and
  the pages would change from build to build.

**Cache and parallel runs** (``scripts/docs_cache.py``): what each executed block (Python or
shell) prints is cached by everything it reads (``.cache/docs-exec/``; ``LPIM_DOCS_CACHE=off``
turns it off), and the blocks that miss run in worker processes while mkdocs renders the pages
that execute nothing (``LPIM_DOCS_JOBS``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

_log = logging.getLogger("mkdocs.hooks.lpim")
_started: dict[str, float] = {}


def on_startup(**kwargs: Any) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # also for subprocesses the pages start
    scripts = str(Path(__file__).resolve().parent)
    if scripts not in sys.path:
        sys.path.insert(0, scripts)  # docs_figures, the pictures' helpers; docs_cache
    import torch

    torch.set_num_threads(1)
    _pin_hypothesis_constants()


def _pin_hypothesis_constants() -> None:
    """Freeze Hypothesis' pool of local constants at those of lpim's modules (before the
    workers fork, so that they share it)."""
    import importlib
    import pkgutil

    import lpim

    for module in pkgutil.walk_packages(lpim.__path__, "lpim."):
        if not module.name.endswith(".__main__"):  # that one runs the command
            importlib.import_module(module.name)
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - Hypothesis moved it: pages may vary between builds
        _log.warning("could not pin Hypothesis' local constants; pages may differ between builds")
        return
    getter = getattr(providers, "_get_local_constants", None)
    if getter is None:  # pragma: no cover
        _log.warning("could not pin Hypothesis' local constants; pages may differ between builds")
        return
    pool = getter()
    providers._get_local_constants = lambda: pool


def on_config(config: Any, **kwargs: Any) -> Any:
    """Put the cache in front of markdown-exec; name lpim's version in every page's footer."""
    import docs_cache

    from lpim import __version__

    docs_cache.configure()
    named = f"lpim {__version__}"
    if named not in (config.get("copyright") or ""):  # `mkdocs serve` calls this on each rebuild
        config["copyright"] = f"{named} · {config.get('copyright') or ''}".rstrip(" ·")
    return config


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    import docs_cache

    return docs_cache.prefill(files, config)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    import docs_cache

    docs_cache.set_page(page.file.src_uri, page.file.abs_src_path)
    _started[page.file.src_uri] = time.perf_counter()
    return markdown


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Mark the output blocks that hold a report table; log how long each page's executed
    blocks took, to keep the build time in view."""
    seconds = time.perf_counter() - _started.pop(page.file.src_uri, time.perf_counter())
    _log.info("page %s rendered in %.1f s", page.file.src_uri, seconds)
    return _OUTPUT_BLOCK.sub(_mark_report, html)


# An output block (text or console) and, in its text, the rule under a plain-text table's header
# (`-----  ----  ...`, as lpim's reports print it).
_OUTPUT_BLOCK = re.compile(
    r'<div class="language-(?:text|console|pycon) highlight">.*?</code></pre></div>', re.DOTALL
)
_TAGS = re.compile(r"<[^>]+>")
_TABLE_RULE = re.compile(r"^\s*-{3,}(?: {2}-{3,})+\s*$", re.MULTILINE)


def _mark_report(match: re.Match[str]) -> str:
    """A report keeps the lines lpim prints: its block gets `lpim-report` (it scrolls sideways,
    `docs/stylesheets/extra.css`); other output (a message, a diagnosis) wraps."""
    block = match.group(0)
    if not _TABLE_RULE.search(_TAGS.sub("", block)):
        return block
    return block.replace(" highlight", " highlight lpim-report", 1)


def on_post_build(**kwargs: Any) -> None:
    import docs_cache

    _log.info("docs: %(hits)d blocks from the cache, %(runs)d run here", docs_cache.finish())
