"""The cache and the parallel runs of the site's executed blocks (``scripts/mkdocs_hooks.py``
calls these; a module of its own so that worker processes can import what they run).

What a Python block prints is stored under ``.cache/docs-exec/`` (git-ignored;
``LPIM_DOCS_CACHE`` moves it, ``LPIM_DOCS_CACHE=off`` turns it off) under a key made of the
block's code, every earlier block of its session (the state it runs in), its page (name and
Markdown), and the inputs of every block: the source of the lpim that ``import lpim`` finds
(wherever it is installed from), of ``scripts/`` and
``examples/``, ``docs/data/``, ``pyproject.toml``, and the versions of Python, torch,
Hypothesis, markdown-exec, numpy and matplotlib. Change any of them and the block runs
again; nothing else can change what it prints. A block that raises is never stored. On a hit
the block is not run; when a later block of the same session misses, the session's earlier
blocks are run first (their output dropped), so it runs in the state it would have had.

**Parallel.** Before the pages are rendered, ``on_files`` reads every page's executed Python
blocks and hands each *unit* (all blocks of one session, in page order; a block without a
session alone) to a pool of worker processes, the longest first, which run them and fill the
cache. When rendering reaches a block, it waits for its unit, or runs it itself if no worker has
started it yet. Results reach the page only through the cache key, so a worker that ran
something else cannot put a wrong output on a page. ``LPIM_DOCS_JOBS`` sets the number of
workers (default: the CPU count; 0 runs everything in the mkdocs process).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.metadata
import json
import logging
import multiprocessing
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_log = logging.getLogger("mkdocs.hooks.lpim")

# -- the cache -----------------------------------------------------------------------------------

_cache_dir: Path | None = None
_inputs = ""
_page = ""  # the page being rendered: its src_uri and a hash of its Markdown
_history: dict[str | None, list[str]] = {}  # session -> codes of its blocks so far, in order
_skipped: dict[str | None, list[tuple[str, dict[str, Any]]]] = {}  # session -> hits not yet run
_stats = {"hits": 0, "runs": 0}


def _inputs_hash() -> str:
    """What every block may read: lpim's and the scripts' source, the docs' data, the versions."""
    digest = hashlib.sha256()
    lpim = _imported_lpim()  # the lpim the blocks will import, wherever it is installed from
    for file in sorted(lpim.rglob("*.py")):
        digest.update(file.relative_to(lpim).as_posix().encode())
        digest.update(file.read_bytes())
    for folder, pattern in (
        ("scripts", "*.py"),
        ("examples", "*"),  # pages run the gallery and the seed's script
        ("docs/data", "*"),
        (".", "pyproject.toml"),  # [tool.lpim], read by the command the pages run
    ):
        for file in sorted((ROOT / folder).rglob(pattern)):
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(file.relative_to(ROOT).as_posix().encode())
                digest.update(file.read_bytes())
    for package in ("torch", "hypothesis", "markdown-exec", "numpy", "matplotlib"):
        try:
            digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{package} missing".encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def _imported_lpim() -> Path:
    """The folder of the lpim package that ``import lpim`` finds in this process."""
    import importlib.util

    spec = importlib.util.find_spec("lpim")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("lpim is not importable: pip install -e . first")
    return Path(next(iter(spec.submodule_search_locations)))


def _key(page: str, session: str | None, code: str, extra: dict[str, Any]) -> str:
    session = session or None
    history = _history.get(session, []) if session else []
    payload = json.dumps(
        [_inputs, page, session, history, code, sorted(extra.items())],
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _cached_run(original: Callable[..., str]) -> Callable[..., str]:
    """markdown-exec's ``_run_python``, reading and filling the cache."""
    from markdown_exec._internal.formatters import python as formatter

    def run(
        code: str,
        returncode: int | None = None,
        session: str | None = None,
        id: str | None = None,
        interactive: bool = False,
        **extra: Any,
    ) -> str:
        options = {"returncode": returncode, "id": id, "interactive": interactive, **extra}
        key = _key(_page, session, code, options)
        session = session or None
        file = _cache_dir / key[:2] / key if _cache_dir else None
        if session:
            _history.setdefault(session, []).append(code)
        if file is not None and (_in_worker or _is_ready(key)) and file.is_file():
            _stats["hits"] += 1
            formatter._code_block_id(id, session, extra.get("title"))  # keep module names equal
            if session:
                _skipped.setdefault(session, []).append((code, options))
            return file.read_text(encoding="utf-8")
        for earlier, earlier_options in _skipped.pop(session, []) if session else []:
            # the state this block needs
            original(earlier, session=session or "", **earlier_options)
        _stats["runs"] += 1
        output = original(code, session=session or "", **options)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            partial = file.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(output, encoding="utf-8")
            partial.replace(file)
        return output

    return run


# -- the parallel prefill ------------------------------------------------------------------------

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)python[ \t]+(?P<options>[^\n]*\bexec=\"on\"[^\n]*)\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_OPTION = re.compile(r'(\w+)="([^"]*)"')
_units: dict[str, concurrent.futures.Future[None]] = {}  # a unit's first key -> its future
_unit_of: dict[str, str] = {}  # any key -> its unit's first key
_pool: concurrent.futures.ProcessPoolExecutor | None = None
_in_worker = False
#: markdown-exec's own options; the others of a fence reach ``_run_python`` as keywords.
_KNOWN = {
    "exec",
    "id",
    "idprefix",
    "html",
    "source",
    "result",
    "returncode",
    "session",
    "updatetoc",
    "tabs",
    "workdir",
    "width",
    "interactive",
}


def _blocks(page: str, markdown: str) -> list[tuple[str | None, str, dict[str, Any]]]:
    """``(session, code, options)`` of each executed Python block of a page, as markdown-exec
    will call ``_run_python`` (a block this misreads only misses the cache: it runs in place)."""
    found = []
    for match in _FENCE.finditer(markdown):
        options = dict(_OPTION.findall(match["options"]))
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        extra = {k: v for k, v in options.items() if k not in _KNOWN}
        run_options = {
            "returncode": int(options.get("returncode", "0")),
            "id": options.get("id", ""),
            "interactive": options.get("interactive", "no") in ("yes", "on", "true", "1"),
            **extra,
        }
        found.append((options.get("session") or None, body, run_options))
    return found


def _run_unit(page_blocks: list[tuple[str, list[tuple[str | None, str, dict[str, Any]]]]]) -> None:
    """In a worker: run a unit's blocks in order, through the cache (which stores them)."""
    global _page, _in_worker
    from markdown_exec._internal.formatters import python as formatter

    _in_worker = True
    for page, blocks in page_blocks:
        _page = page
        for session, code, options in blocks:
            try:
                formatter._run_python(code, session=session or "", **options)
            except Exception:
                return


def _is_ready(key: str) -> bool:
    """Wait for the worker running this block's unit; False when no worker started it (the
    caller runs it, and cancels the worker's copy)."""
    unit = _unit_of.get(key)
    future = _units.get(unit) if unit else None
    if future is None or future.cancel():
        return True
    try:
        future.result()
    except Exception as error:
        _log.info("docs worker failed (%s); running in place", error)
    return True


def prefill(files: Any, config: Any) -> Any:
    """Hand every page's executed blocks to the worker pool, by unit, the longest first."""
    global _pool
    jobs = int(os.environ.get("LPIM_DOCS_JOBS", os.cpu_count() or 1))
    if _cache_dir is None or jobs < 1:
        return files
    units: dict[str, list[tuple[str, list[tuple[str | None, str, dict[str, Any]]]]]] = {}
    sizes: dict[str, int] = {}
    history: dict[str | None, list[str]] = {}
    pages = [f for f in files.documentation_pages()]
    order = _nav_order(config, pages)
    for file in sorted(pages, key=lambda f: order.get(f.src_uri, len(order))):
        markdown = Path(file.abs_src_path).read_text(encoding="utf-8")
        page = page_id(file.src_uri, file.abs_src_path)
        for number, (session, code, options) in enumerate(_blocks(file.src_uri, markdown)):
            unit = f"session {session}" if session else f"{file.src_uri} block {number}"
            saved = _history.get(session, [])
            _history[session] = history.setdefault(session, [])
            key = _key(page, session, code, options)
            _history[session] = saved
            if session:
                history[session].append(code)
            units.setdefault(unit, [])
            if not units[unit] or units[unit][-1][0] != page:
                units[unit].append((page, []))
            units[unit][-1][1].append((session, code, options))
            sizes[unit] = sizes.get(unit, 0) + len(code) + _weight(code)
            _unit_of[key] = unit
    _history.clear()
    missing = {
        unit
        for key, unit in _unit_of.items()
        if not (_cache_dir / key[:2] / key).is_file()  # type: ignore[operator]
    }
    if not missing:
        return files
    context = multiprocessing.get_context("fork")
    _pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    for unit in sorted(missing, key=lambda u: -sizes[u]):
        _units[unit] = _pool.submit(_run_unit, units[unit])
    _log.info("docs: %d of %d units to run, %d workers", len(missing), len(units), jobs)
    return files


def _weight(code: str) -> int:
    """A rough cost of a block: the checks dominate the build."""
    heavy = r"check_encoder|check_lane_consumer|section\(|lpim\(|pytest"
    return 20000 * len(re.findall(heavy, code))


def _nav_order(config: Any, pages: list[Any]) -> dict[str, int]:
    order: dict[str, int] = {}

    def walk(items: Any) -> None:
        for item in items or []:
            if isinstance(item, dict):
                for value in item.values():
                    walk(value if isinstance(value, list) else [value])
            elif isinstance(item, str):
                order.setdefault(item, len(order))

    walk(config.get("nav"))
    return order


def configure() -> None:
    """Read the settings, hash the inputs and put the cache in front of markdown-exec."""
    global _cache_dir, _inputs
    from markdown_exec._internal.formatters import python as formatter

    where = os.environ.get("LPIM_DOCS_CACHE", str(ROOT / ".cache" / "docs-exec"))
    _cache_dir = None if where == "off" else Path(where)
    _inputs = _inputs_hash()
    _history.clear()
    _skipped.clear()
    _stats.update(hits=0, runs=0)
    if not hasattr(formatter, "_lpim_original_run"):
        formatter._lpim_original_run = formatter._run_python  # type: ignore[attr-defined]
    formatter._run_python = _cached_run(formatter._lpim_original_run)  # type: ignore[attr-defined]


def page_id(src_uri: str, path: str) -> str:
    """A page as the cache knows it: its name and its Markdown (a block may read its own page)."""
    return f"{src_uri}@{hashlib.sha256(Path(path).read_bytes()).hexdigest()}"


def set_page(src_uri: str, path: str) -> None:
    global _page
    _page = page_id(src_uri, path)


def finish() -> dict[str, int]:
    """Stop the workers; how many blocks came from the cache and how many ran here."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None
    _units.clear()
    _unit_of.clear()
    return dict(_stats)
