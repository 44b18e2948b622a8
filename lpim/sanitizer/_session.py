"""The sanitizer's state: sessions, the report, the findings' delivery (warn / raise / collect)."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from lpim._errors import LpimError, UsageTypeError, UsageValueError
from lpim._validation import check_choice
from lpim.sanitizer._inspect import KINDS, Hazard
from lpim.sanitizer._watch import AttentionMode, Watcher, short_path, user_site

__all__ = [
    "KINDS",
    "Finding",
    "MaskHazardError",
    "MaskHazardWarning",
    "Sanitize",
    "SanitizeReport",
    "SanitizeSession",
    "sanitize",
]

OnFinding = Literal["warn", "raise", "collect"]
_POLICIES = ("warn", "raise", "collect")


@dataclass
class Finding:
    """One kind of mask hazard at one call site.

    Attributes:
        kind: one of `KINDS` (`missing_head_rows`, `head_major_3d_mask`,
            `float_mask_as_additive`, `fully_masked_rows`, `finite_fill`,
            `nonfinite_output`).
        where: `"path/to/file.py:LINE"`, the user's line that made the attention call (frames
            in torch and lpim skipped).
        count: how many calls at that site had this finding.
        api: the torch function or module called (`"nn.MultiheadAttention"`, ...).
        message: what is wrong, with the numbers of the first such call, and the fix; also
            `str(finding)`.
    """

    kind: str
    where: str
    count: int
    api: str
    message: str

    def __str__(self) -> str:
        calls = f"{self.count} call{'s' if self.count != 1 else ''}"
        return f"{self.kind} at {self.where} ({self.api}, {calls}): {self.message}"


class MaskHazardError(LpimError, AssertionError):
    """Raised by `sanitize(on_finding="raise")` at the first finding; `.finding` says what."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(str(finding))
        self.finding = finding


class MaskHazardWarning(UserWarning):
    """Emitted by `sanitize(on_finding="warn")`, once per call site and finding kind."""


class SanitizeReport:
    """What one sanitizer session saw: its findings, and how many attention calls it inspected.

    Attributes:
        findings: one `Finding` per (kind, call site), in order of first occurrence.
        calls: attention calls seen (so "no findings" can be told from "saw nothing"),
            including the skipped ones.
        skipped: calls seen but not read, by reason: tensors without data (meta, fake),
            zero-size calls (no query row or no key), arguments lpim could not read. They ran
            untouched.
    """

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.calls = 0
        self.skipped: dict[str, int] = {}
        self._index: dict[tuple[str, str], Finding] = {}

    @property
    def ok(self) -> bool:
        """True when there is no finding."""
        return not self.findings

    def kinds(self) -> set[str]:
        """The finding kinds present."""
        return {finding.kind for finding in self.findings}

    def _record(self, hazard: Hazard, where: str, api: str) -> Finding:
        key = (hazard.kind, where)
        finding = self._index.get(key)
        if finding is not None:
            finding.count += 1
            return finding
        finding = Finding(hazard.kind, where, 1, api, hazard.detail)
        self._index[key] = finding
        self.findings.append(finding)
        return finding

    def table(self) -> str:
        """A plain-text table of the findings (kind, where, API, calls), then each message."""
        if not self.calls:
            return (
                "lpim.sanitize: saw no attention call, so nothing was checked: no "
                "F.scaled_dot_product_attention, nn.MultiheadAttention, "
                "nn.TransformerEncoder(Layer), F.multi_head_attention_forward or varlen_attn "
                "call, and no softmax over masked_fill / added-mask scores ran while it was on."
            )
        if not self.findings:
            return f"lpim.sanitize: no findings in {self.calls} attention call(s).{self._skips()}"
        header = ("kind", "where", "api", "calls")
        rows = [(f.kind, f.where, f.api, str(f.count)) for f in self.findings]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        lines = [
            f"lpim.sanitize: {len(self.findings)} finding(s) in {self.calls} attention call(s)",
            "",
            "  ".join(
                cell.ljust(width) for cell, width in zip(header, widths, strict=True)
            ).rstrip(),
            "  ".join("-" * width for width in widths),
        ]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        lines.append("")
        lines += [f"{f.kind} at {f.where}:\n  {f.message}" for f in self.findings]
        return "\n".join(lines) + self._skips()

    def _skips(self) -> str:
        """The skipped calls, one line per reason ('' when none was skipped)."""
        return "".join(
            f"\n  {count} call(s) not read: {reason}" for reason, count in self.skipped.items()
        )

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"SanitizeReport(calls={self.calls}, findings={[f.kind for f in self.findings]})"


Allow = Iterable[tuple[str, str] | str]
"""What `allow=` takes: finding kinds, or `(kind, where)` pairs (see `Sanitize`)."""


def _allowances(allow: Allow | None) -> list[tuple[str, str]]:
    """`allow` as `(kind, where)` pairs (`where` "" = every site), checked before use."""
    pairs: list[tuple[str, str]] = []
    for item in allow or ():
        if isinstance(item, str):
            kind, where = item, ""
        elif isinstance(item, tuple | list) and len(item) == 2:
            kind, where = item
        else:  # checked here: unpacking it would raise from deep inside with no word of `allow`
            raise (UsageValueError if isinstance(item, tuple | list) else UsageTypeError)(
                f"allow: each item is a finding kind or a (kind, 'FILE:LINE') pair; got {item!r}"
            )
        if kind not in KINDS:
            raise UsageValueError(
                f"allow: unknown finding kind {kind!r}; expected one of {list(KINDS)}"
            )
        if not isinstance(where, str):
            raise UsageValueError(f"allow: a site is 'FILE' or 'FILE:LINE'; got {where!r}")
        pairs.append((kind, where))
    return pairs


def _site_matches(where: str, pattern: str) -> bool:
    """`pattern` ("FILE:LINE", "FILE", or a path's tail) names the site `where`."""
    if not pattern:
        return True
    if where == pattern or where.endswith("/" + pattern) or where.endswith(os.sep + pattern):
        return True
    path = where.rsplit(":", 1)[0]
    return path == pattern or path.endswith("/" + pattern) or path.endswith(os.sep + pattern)


class SanitizeSession:
    """One activation of the sanitizer: a context manager whose `__enter__` returns its report."""

    def __init__(self, on_finding: OnFinding = "warn", allow: Allow | None = None) -> None:
        check_choice(on_finding, "on_finding", _POLICIES, "lpim.sanitize")
        self.on_finding: OnFinding = on_finding
        self.allow = _allowances(allow)
        self.report = SanitizeReport()
        self._warned: set[tuple[str, str]] = set()
        self._mode: AttentionMode | None = None  # the mode of the thread it began on

    def allows(self, kind: str, where: str) -> bool:
        """True when `allow` silences `kind` at `where` (`"file.py:LINE"`)."""
        return any(k == kind and _site_matches(where, w) for k, w in self.allow)

    def __enter__(self) -> SanitizeReport:
        _activate(self)
        return self.report

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _deactivate(self)


class Sanitize:
    """`lpim.sanitize`: the sanitizer, as a context manager factory and an on/off switch.

    `lpim.sanitize(on_finding="warn" | "raise" | "collect")` returns a context manager that
    yields a `SanitizeReport`; `lpim.sanitize.enable(...)` / `.disable()` do the same
    for a training script. While any session is active, every attention call is checked:

    - `warn` (default): one `MaskHazardWarning` per call site and kind, attributed to the
      user's line;
    - `raise`: `MaskHazardError` (an `AssertionError`) at the first finding (before
      torch's own `RuntimeError` for `missing_head_rows`);
    - `collect`: record only; read `report.findings` or print `report.table()`.

    `allow` silences an intended pattern, by kind and site: `allow=[("fully_masked_rows",
    "model.py:42")]` (a site is `"FILE:LINE"` or `"FILE"`, matched against the end of the
    finding's `where`), or a bare kind for every site. An allowed finding is neither recorded
    nor warned about nor raised.

    Outputs are never changed. Sessions nest: every active session records every finding.

    Example:
        ```python title="Listing: around your model and training step"
        import lpim

        with lpim.sanitize(on_finding="raise"):
            loss = model(points, point_mask).lane_embedding.sum()

        report = lpim.sanitize.enable(on_finding="collect")  # in a training script
        train_one_step()
        lpim.sanitize.disable()
        print(report.table())
        ```
    """

    def __init__(self) -> None:
        self._enabled: SanitizeSession | None = None

    def __call__(
        self, on_finding: OnFinding = "warn", allow: Allow | None = None
    ) -> SanitizeSession:
        """A session to use in a `with` block; `__enter__` returns its report.

        Args:
            on_finding: `"warn"`, `"raise"` or `"collect"` (see the class).
            allow: kinds, or `(kind, "FILE:LINE")` pairs, to silence (see the class).

        Raises:
            lpim.errors.UsageValueError: an unknown `on_finding` (also a `ValueError`).
            ValueError: an unknown kind in `allow`.
        """
        return SanitizeSession(on_finding, allow)

    def enable(self, on_finding: OnFinding = "warn", allow: Allow | None = None) -> SanitizeReport:
        """Switch the sanitizer on until `disable`; return the session's report.

        Calling it while enabled ends the previous session first (its report stays readable).
        `on_finding` and `allow` are as for `lpim.sanitize(...)`. Arguments are checked first:
        a bad one changes nothing.

        Raises:
            lpim.errors.UsageValueError: an unknown `on_finding` (also a `ValueError`); the
                sanitizer stays as it was.
            ValueError: an unknown kind in `allow`.
        """
        session = SanitizeSession(on_finding, allow)  # checks its arguments before any change
        if self._enabled is not None:
            self.disable()
        session.__enter__()
        self._enabled = session
        return session.report

    def disable(self) -> SanitizeReport | None:
        """Switch off what `enable` switched on; return its report (None if not enabled)."""
        session, self._enabled = self._enabled, None
        if session is None:
            return None
        session.__exit__(None, None, None)
        return session.report

    @property
    def active(self) -> bool:
        """True while any session (`with` block or `enable`) is on."""
        return bool(_sessions)


sanitize = Sanitize()
"""The sanitizer: `lpim.sanitize(...)`, `lpim.sanitize.enable(...)`, `.disable()`."""

_lock = threading.RLock()
_sessions: list[SanitizeSession] = []


def _count_call(skipped: str | None) -> None:
    with _lock:  # calls come from every thread
        for session in _sessions:
            report = session.report
            report.calls += 1
            if skipped is not None:
                report.skipped[skipped] = report.skipped.get(skipped, 0) + 1


def _deliver(hazards: list[Hazard], api: str) -> None:
    __tracebackhide__ = True  # pytest shows the user's call, not this frame
    filename, line = user_site()
    where = f"{short_path(filename)}:{line}"
    to_raise: Finding | None = None
    for hazard in hazards:
        with _lock:  # calls come from every thread
            recorded = [
                (session, session.report._record(hazard, where, api))
                for session in _sessions
                if not (session.allow and session.allows(hazard.kind, where))
            ]
        for session, finding in recorded:
            key = (hazard.kind, where)
            if session.on_finding == "warn" and key not in session._warned:
                session._warned.add(key)
                warnings.warn_explicit(
                    str(finding), MaskHazardWarning, filename, line, module="lpim.sanitize"
                )
            if session.on_finding == "raise" and to_raise is None:
                to_raise = finding
    if to_raise is not None:
        raise MaskHazardError(to_raise)


_watcher = Watcher(_deliver, _count_call)


# Sessions are global: a session records every attention call made in any thread while it is
# on. Each may end in any order, on any thread; the last one off removes the hooks and patches.


def _activate(session: SanitizeSession) -> None:
    with _lock:
        if session in _sessions:
            raise RuntimeError("this lpim.sanitize session is already active")
        if not _sessions:
            _watcher.install()
        session._mode = _watcher.enter_thread()
        _sessions.append(session)


def _deactivate(session: SanitizeSession) -> None:
    with _lock:
        if session not in _sessions:
            return
        _sessions.remove(session)
        if session._mode is not None:
            _watcher.leave_thread(session._mode)
            session._mode = None
        if not _sessions:
            _watcher.remove()
