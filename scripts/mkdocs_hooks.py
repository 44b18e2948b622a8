"""mkdocs hooks for lpim's site: set up the process that executes the pages' code blocks.

markdown-exec runs every ``exec="on"`` block inside the mkdocs process, so settings made here hold
for all of them:

- torch uses one thread: the examples are tiny, and on a shared or small machine torch's thread
  pool makes them tens of times slower, not faster.
- matplotlib draws with the non-interactive Agg backend (pictures are inline SVG, drawn by
  ``scripts/docs_figures.py``, which is put on ``sys.path``).
"""

from __future__ import annotations

import os
import sys
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
