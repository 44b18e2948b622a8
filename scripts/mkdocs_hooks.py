"""mkdocs hooks for lpim's site: set up the process that executes the pages' code blocks.

markdown-exec runs every ``exec="on"`` block inside the mkdocs process, so settings made here hold
for all of them:

- torch uses one thread: the examples are tiny, and on a shared or small machine torch's thread
  pool makes them tens of times slower, not faster.
- matplotlib draws with the non-interactive Agg backend (pictures are inline SVG, drawn by
  ``scripts/docs_figures.py``, which is put on ``sys.path``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any


def on_startup(**kwargs: Any) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # also for subprocesses the pages start
    scripts = str(Path(__file__).resolve().parent)
    if scripts not in sys.path:
        sys.path.insert(0, scripts)  # docs_figures, the pictures' helpers
    import torch

    torch.set_num_threads(1)


_log = logging.getLogger("mkdocs.hooks.lpim")
_started: dict[str, float] = {}


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    _started[page.file.src_uri] = time.perf_counter()
    return markdown


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Log how long each page's executed blocks took, to keep the build time in view."""
    seconds = time.perf_counter() - _started.pop(page.file.src_uri, time.perf_counter())
    _log.info("page %s rendered in %.1f s", page.file.src_uri, seconds)
    return html
