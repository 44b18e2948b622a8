"""The cache and the parallel runs of the site's executed blocks (``scripts/mkdocs_hooks.py``
calls these; a module of its own so that worker processes can import what they run).

What an executed block prints (a Python block, or the commands of a ``bash`` block) is stored
under ``.cache/docs-exec/`` (git-ignored; ``LPIM_DOCS_CACHE`` moves it, ``LPIM_DOCS_CACHE=off``
turns it off) under a key made of the block's language and code, every earlier block of its
session (the state it runs in), its page (name and Markdown), and the inputs of every block: the
source of the lpim that ``import lpim`` finds (wherever it is installed from), of ``scripts/``
and ``examples/``, ``docs/data/``, ``pyproject.toml`` and the test suite's ``conftest.py`` (read
by the ``pytest`` commands the pages run), and the versions of Python, torch, Hypothesis,
markdown-exec, numpy and matplotlib. Change any of them and the block runs again; nothing else
can change what it prints. A block that raises is never stored. On a hit the block is not run;
when a later block of the same session misses, the session's earlier blocks are run first
(their output dropped), so it runs in the state it would have had.

**Parallel.** Before the pages are rendered, ``on_files`` reads every page's executed blocks
and hands each *unit* (all blocks of one Python session, in page order; any other block alone)
to a pool of worker processes, the longest first, which run them and fill the cache; and it
orders the pages (``render_order``) so that mkdocs renders those that execute nothing while the
workers run. When rendering reaches a block, it waits for its unit, or runs it itself if no
worker has started it yet. Results reach the page only through the cache key, so a worker that
ran something else cannot put a wrong output on a page. ``LPIM_DOCS_JOBS`` sets the number of
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
        ("tests", "conftest.py"),  # read by the pytest commands the pages run
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


def _key(
    page: str, session: str | None, code: str, extra: dict[str, Any], language: str = "python"
) -> str:
    session = session or None
    history = _history.get(session, []) if session else []
    payload = json.dumps(
        [_inputs, page, language, session, history, code, sorted(extra.items())],
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


#: The languages whose executed blocks are cached and run in parallel: markdown-exec's formatter
#: module of each and the name of the function in it that runs a block.
_RUNNERS = {"python": "_run_python", "bash": "_run_bash"}


def _formatter(language: str) -> Any:
    import importlib

    return importlib.import_module(f"markdown_exec._internal.formatters.{language}")


def _cached_run(original: Callable[..., str], language: str) -> Callable[..., str]:
    """markdown-exec's runner of ``language`` blocks, reading and filling the cache. A shell
    block has no session: markdown-exec runs each in a fresh ``bash -c``."""
    formatter = _formatter("python")  # numbers the Python blocks, hits included

    def run(
        code: str,
        returncode: int | None = None,
        session: str | None = None,
        id: str | None = None,
        interactive: bool = False,
        **extra: Any,
    ) -> str:
        options = {"returncode": returncode, "id": id, "interactive": interactive, **extra}
        session = (session or None) if language == "python" else None
        key = _key(_page, session, code, options, language)
        file = _cache_dir / key[:2] / key if _cache_dir else None
        if session:
            _history.setdefault(session, []).append(code)
        if file is not None and (_in_worker or _is_ready(key)) and file.is_file():
            _stats["hits"] += 1
            if language == "python":  # keep the module names of later blocks as without a cache
                formatter._code_block_id(id, session, extra.get("title"))
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
    r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<language>python|bash)[ \t]+"
    r"(?P<options>[^\n]*\bexec=\"on\"[^\n]*)\n"
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


_Block = tuple[str, str | None, str, dict[str, Any]]  # (language, session, code, options)


def _blocks(page: str, markdown: str) -> list[_Block]:
    """``(language, session, code, options)`` of each executed block of a page, as markdown-exec
    will call its runner (a block this misreads only misses the cache: it runs in place)."""
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
        language = match["language"]
        session = (options.get("session") or None) if language == "python" else None
        found.append((language, session, body, run_options))
    return found


def _run_unit(page_blocks: list[tuple[str, list[_Block]]]) -> None:
    """In a worker: run a unit's blocks in order, through the cache (which stores them)."""
    global _page, _in_worker
    _in_worker = True
    for page, blocks in page_blocks:
        _page = page
        for language, session, code, options in blocks:
            run = getattr(_formatter(language), _RUNNERS[language])
            try:
                run(code, session=session or "", **options)
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
    """Hand every page's executed blocks to the worker pool, by unit, the longest first; return
    the pages in the order they are best rendered in (``render_order``)."""
    global _pool
    from mkdocs.structure.files import Files

    units: dict[str, list[tuple[str, list[_Block]]]] = {}
    sizes: dict[str, int] = {}
    largest: dict[str, int] = {}  # page -> its largest unit
    history: dict[str | None, list[str]] = {}
    session_page: dict[str, str] = {}
    pages = list(files.documentation_pages())
    for file in pages:  # mkdocs' order, in which sessions (one page each) see their blocks
        markdown = Path(file.abs_src_path).read_text(encoding="utf-8")
        page = page_id(file.src_uri, file.abs_src_path)
        for number, (language, session, code, options) in enumerate(
            _blocks(file.src_uri, markdown)
        ):
            unit = f"session {session}" if session else f"{file.src_uri} block {number}"
            if session and session_page.setdefault(session, file.src_uri) != file.src_uri:
                raise ValueError(
                    f"markdown-exec session {session!r} is used on {session_page[session]} and "
                    f"on {file.src_uri}: the build renders pages in its own order "
                    "(scripts/docs_cache.py render_order), so a session must stay on one page"
                )
            saved = _history.get(session, [])
            _history[session] = history.setdefault(session, [])
            key = _key(page, session, code, options, language)
            _history[session] = saved
            if session:
                history[session].append(code)
            units.setdefault(unit, [])
            if not units[unit] or units[unit][-1][0] != page:
                units[unit].append((page, []))
            units[unit][-1][1].append((language, session, code, options))
            sizes[unit] = sizes.get(unit, 0) + len(code) + _weight(language, code)
            largest[file.src_uri] = max(largest.get(file.src_uri, 0), sizes[unit])
            _unit_of[key] = unit
    _history.clear()
    ordered = Files(render_order(list(files), largest))
    jobs = int(os.environ.get("LPIM_DOCS_JOBS", os.cpu_count() or 1))
    if _cache_dir is None or jobs < 1:
        return ordered
    missing = {
        unit
        for key, unit in _unit_of.items()
        if not (_cache_dir / key[:2] / key).is_file()  # type: ignore[operator]
    }
    if not missing:
        return ordered
    context = multiprocessing.get_context("fork")
    _pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    for unit in sorted(missing, key=lambda u: -sizes[u]):
        _units[unit] = _pool.submit(_run_unit, units[unit])
    _log.info("docs: %d of %d units to run, %d workers", len(missing), len(units), jobs)
    return ordered


def render_order(files: list[Any], largest: dict[str, int]) -> list[Any]:
    """The files with the pages that execute nothing first (the reference pages: mkdocstrings'
    work overlaps the workers'), then the executing pages, those of the largest unit first.

    The mkdocs process waits at a block a worker is running, and runs a block no worker has
    started itself: so it reaches the big units (the workers' first picks) while they run, and
    ends on small ones it shares with the workers, keeping both cores busy to the end. Pages
    are independent (``prefill`` refuses a session on two pages), so the order changes no
    output.
    """
    original = {id(file): number for number, file in enumerate(files)}
    return sorted(
        files,
        key=lambda f: (
            f.src_uri in largest,  # executing pages after the others
            -largest.get(f.src_uri, 0),  # of those, the largest unit first
            original[id(f)],
        ),
    )


def _weight(language: str, code: str) -> int:
    """A rough cost of a block: the checks dominate the build, and a shell block starts a Python
    that imports torch (seconds before it does anything)."""
    heavy = r"check_encoder|check_lane_consumer|section\(|lpim\(|pytest"
    return 20000 * len(re.findall(heavy, code)) + (40000 if language == "bash" else 0)


def configure() -> None:
    """Read the settings, hash the inputs and put the cache in front of markdown-exec."""
    global _cache_dir, _inputs

    where = os.environ.get("LPIM_DOCS_CACHE", str(ROOT / ".cache" / "docs-exec"))
    _cache_dir = None if where == "off" else Path(where)
    _inputs = _inputs_hash()
    _history.clear()
    _skipped.clear()
    _stats.update(hits=0, runs=0)
    for language, name in _RUNNERS.items():
        formatter = _formatter(language)
        if not hasattr(formatter, "_lpim_original_run"):
            formatter._lpim_original_run = getattr(formatter, name)
        setattr(formatter, name, _cached_run(formatter._lpim_original_run, language))


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
