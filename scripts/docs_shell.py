"""Run the ``lpim`` command inside the docs build, without a new Python process per call.

``lpim(...)`` calls :func:`lpim.cli.main` with the arguments and returns what a terminal would
show: the command line, its output and its exit status. In-process, because each new process
would import torch again, which is most of a small command's time.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex

from lpim.cli import main


def lpim(command_line: str, *, stderr: bool = True, cwd: str | None = None) -> str:
    """``$ lpim ARGS`` and its output (stdout, and stderr unless ``stderr=False``)."""
    argv = shlex.split(command_line)
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    finally:
        os.chdir(previous)
    text = out.getvalue() + (err.getvalue() if stderr else "")
    return f"$ lpim {command_line}\n{text.rstrip()}\n[exit status {status}]"
