"""mkdocs hooks for lpim's site: set up the process that executes the pages' code blocks.

markdown-exec runs every ``exec="on"`` block inside the mkdocs process, so settings made here hold
for all of them:

- torch uses one thread: the examples are tiny, and on a shared or small machine torch's thread
  pool makes them tens of times slower, not faster.
- matplotlib draws with the non-interactive Agg backend (pictures are written as inline SVG).
"""

from __future__ import annotations

import os
from typing import Any


def on_startup(**kwargs: Any) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)
