"""Where the sanitizer meets torch: a TorchFunctionMode, global module hooks, two patched names.

- `F.scaled_dot_product_attention`, `F.multi_head_attention_forward` and varlen attention's
  op are seen by `AttentionMode`, a `TorchFunctionMode`. Function modes are thread-local:
  each thread that enters a session gets its own mode, pushed on that thread's stack and taken
  off it (wherever it is in the stack) when the thread's last session ends, so sessions can end
  in any order.
- `nn.MultiheadAttention`, `nn.TransformerEncoderLayer` and `nn.TransformerEncoder` are
  seen by global forward (pre-)hooks, in every thread. Their fused fast paths call
  `torch._native_*` kernels directly, which no function mode sees, and they refuse the fast
  path while any torch function mode is on the stack (`has_torch_function` is then true). So
  while one of these modules runs, the hooks take our mode off the stack and put it back
  afterwards: the module takes exactly the path it takes without the sanitizer, and its masks
  are read at its call.
- Threads that entered no session have no mode, so `torch.nn.functional`'s
  `scaled_dot_product_attention` and `multi_head_attention_forward` are replaced, while a
  session is on, by wrappers that inspect calls made where no mode of ours is on the stack.
  That covers every call that looks the name up in `torch.nn.functional` when it runs
  (`F.scaled_dot_product_attention(...)`, and MHA's own slow path); a reference bound before
  the session began (`from torch.nn.functional import scaled_dot_product_attention`) and
  varlen attention are seen only in threads that entered a session.

Only the outermost watched call is inspected: a TransformerEncoder's layers, and the
MultiheadAttention inside a layer, are the same call seen again. A call is read only where it
can be read: a module subclass whose `forward` does not take the parameters lpim reads runs
untouched (the attention calls inside it are watched instead); tensors without data (meta,
fake, other tensor subclasses) and calls with no query row or no key are counted and skipped;
and an error while reading a call skips it (`SanitizeReport.skipped` says why) instead of
breaking the model.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as torch_module
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from lpim.sanitizer import _handwritten as hand
from lpim.sanitizer._inspect import Hazard, Inspection, RepeatRecord, inspect_mha, inspect_sdpa
from lpim.sanitizer._proof import (
    Call,
    check_output,
    mha_scores,
    prove_fill,
    sdpa_scores,
    with_advice,
)

Deliver = Callable[[list[Hazard], str], None]
"""Receives a call's hazards and the API name; finds the user's site and records them."""

Count = Callable[[str | None], None]
"""Counts one attention call: None when it was read, else why it was skipped."""

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_LPIM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_MODULE_FILE = torch_module.__file__
_WATCHED_MODULES = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)

# The parameters each watched module's check reads: a subclass whose forward lacks one of them
# passes its masks some other way, and is not read at the module (its inner calls are).
_READS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.MultiheadAttention: ("query", "key", "value", "attn_mask", "key_padding_mask"),
    nn.TransformerEncoderLayer: ("src", "src_mask", "src_key_padding_mask"),
    nn.TransformerEncoder: ("src", "mask", "src_key_padding_mask"),
}

# torch's own functions, taken before anything replaces them
_SDPA = F.scaled_dot_product_attention
_MHA_FORWARD = F.multi_head_attention_forward
_ORIGINALS: dict[str, Callable[..., Any]] = {
    "scaled_dot_product_attention": _SDPA,
    "multi_head_attention_forward": _MHA_FORWARD,
}

_is_compiling = torch.compiler.is_compiling  # one look-up less at every torch call
_WATCHED = "watched"  # `Watcher.kind` of an attention function

SKIP_NO_DATA = "tensors without data (meta, fake or another tensor subclass)"
SKIP_EMPTY = "no query row or no key (zero-size)"
SKIP_UNREAD = "arguments lpim could not read"
SKIP_FORWARD = "a forward without the parameters lpim reads, and nothing inside it seen"


def user_site() -> tuple[str, int]:
    """The innermost frame outside torch and lpim: the user's line that made the call."""
    frame: FrameType | None = sys._getframe(1)
    fallback: tuple[str, int] | None = None
    while frame is not None:
        where = _frame_kind(frame.f_code.co_filename)
        if where == "user":
            return frame.f_code.co_filename, frame.f_lineno
        if where == "lpim" and fallback is None:
            fallback = (frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return fallback or ("<unknown>", 0)


@functools.lru_cache(maxsize=4096)
def _frame_kind(co_filename: str) -> str:
    """ "torch", "sanitizer", "lpim" (the rest of lpim) or "user", by a code object's file
    (cached: a site is looked up at every recorded `repeat` and `masked_fill`)."""
    filename = os.path.abspath(co_filename)
    if filename.startswith(_TORCH_DIR):
        return "torch"
    if not filename.startswith(_LPIM_DIR):
        return "user"
    return "sanitizer" if os.sep + "sanitizer" + os.sep in filename else "lpim"


@functools.lru_cache(maxsize=4096)
def short_path(filename: str) -> str:
    """`filename` relative to the working directory when it is under it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if relative.startswith("..") else relative


def _site_and_line() -> tuple[str, str]:
    """`("file:LINE", source text)` of the user's line now running."""
    filename, line = user_site()
    return f"{short_path(filename)}:{line}", hand.source_line(filename, line)


@dataclass
class _Call:
    """One watched call on this thread's stack: a module's, from its pre-hook to its post-hook,
    or a function's, while it runs (so that the calls it makes are not seen again)."""

    module: nn.Module | None
    inspected: bool  # its masks were read: calls inside it are the same call
    suspended: AttentionMode | None = None  # our mode, taken off the stack for it
    found: Inspection | None = None
    call: _LazyCall | None = None  # the call as the proofs and the advice read it
    api: str = ""
    inputs: tuple[Tensor, ...] = ()
    batch_first: bool = True
    unread_since: int | None = None  # a module call not read: calls counted when it began


class _LazyCall:
    """The call as the proofs and the advice read it, made when first asked for: a mask seen
    before that proved nothing never needs it."""

    __slots__ = ("_call", "_make")

    def __init__(self, make: Callable[[], Call]) -> None:
        self._make = make
        self._call: Call | None = None

    def get(self) -> Call:
        if self._call is None:
            self._call = self._make()
        return self._call

    def lane(self) -> tuple[Tensor, int] | None:
        return self.get().lane()


class _State(threading.local):
    """What one thread has: its open watched calls and its mode (None where no session began)."""

    calls: list[_Call]
    generation: int  # the install its calls belong to
    mode: AttentionMode | None
    counted: int  # attention calls counted in this thread

    def __init__(self) -> None:
        self.calls = []
        self.generation = -1
        self.mode = None
        self.counted = 0


def _on_stack(mode: TorchFunctionMode) -> bool:
    depth = torch._C._len_torch_function_stack()
    if depth and torch._C._get_function_stack_at(depth - 1) is mode:
        return True  # on top, as it nearly always is
    return any(
        torch._C._get_function_stack_at(i) is mode
        for i in range(torch._C._len_torch_function_stack())
    )


def _take_off_stack(mode: TorchFunctionMode) -> bool:
    """Remove `mode` from this thread's function-mode stack wherever it is, keeping the order
    of the modes above it (another library's, or a script's left entered); False if absent."""
    above: list[Any] = []
    found = False
    while torch._C._len_torch_function_stack():
        top = torch._C._pop_torch_function_stack()
        if top is mode:
            found = True
            break
        above.append(top)
    for other in reversed(above):
        torch._C._push_on_torch_function_stack(other)
    return found


def _has_data(value: object) -> bool:
    """True for a tensor whose values can be read: a plain tensor (or parameter) not on meta.

    Fake tensors (`FakeTensorMode`, `torch.compile`'s tracing), functional tensors and other
    subclasses have no values to read, or read them through code of their own.
    """
    if not isinstance(value, Tensor):
        return True  # None, or something torch will reject on its own
    return type(value) in (Tensor, nn.Parameter) and not value.is_meta


class _reading:
    """Where the sanitizer reads tensors: no autograd, and no mode sees its own operations
    (another library's function modes, a FlopCounter or FakeTensorMode's dispatch modes).

    A class rather than a `contextlib` generator: it runs twice per attention call, and this
    costs a third as much.
    """

    __slots__ = ("_grad", "_no_dispatch", "_no_function")

    def __enter__(self) -> None:
        self._grad = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        self._no_function = torch._C.DisableTorchFunction()
        self._no_function.__enter__()
        self._no_dispatch: Any = None
        if torch._C._len_torch_dispatch_stack():
            from torch.utils._python_dispatch import _disable_current_modes

            self._no_dispatch = _disable_current_modes()
            self._no_dispatch.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        if self._no_dispatch is not None:
            self._no_dispatch.__exit__(*exc_info)
        self._no_function.__exit__(None, None, None)
        torch._C._set_grad_enabled(self._grad)


def _skip_reason(tensors: Collection[object], query: object, key: object) -> str | None:
    """Why a call cannot be read (see the SKIP_* texts), or None when it can."""
    if not all(_has_data(t) for t in tensors):
        return SKIP_NO_DATA
    for t in (query, key):
        # no query row or no key: there is no mask to get wrong, and torch defines the output
        if isinstance(t, Tensor) and t.numel() == 0:
            return SKIP_EMPTY
    return None


class Watcher:
    """Installs and removes the hooks, the patches and each thread's mode; hands each call's
    hazards to `deliver`.

    `install` / `remove` are global (the first session on, the last off); `enter_thread` /
    `leave_thread` are per session, on the thread it runs in. The caller serialises them.
    """

    def __init__(self, deliver: Deliver, count_call: Count) -> None:
        self._deliver = deliver
        self._count_call = count_call
        self._handles: list[RemovableHandle] = []
        self._state = _State()
        self._generation = 0
        self._signatures: dict[type, _Binder | None] = {}
        self.records = hand.Records()
        self._cache = _InspectionCache()
        self.installed = False
        self._patches = {name: _patched(self, original) for name, original in _ORIGINALS.items()}
        self._sdpa_patch = self._patches["scaled_dot_product_attention"]
        self._mha_patch = self._patches["multi_head_attention_forward"]
        self.kinds: dict[Callable[..., Any], str | None] = dict(_TRACED)

    def watches(self, func: Callable[..., Any]) -> bool:
        """True for the functions this watcher inspects: torch's, and its patches of them.

        Compared by identity, not looked up in a set: `torch.compile` traces the mode that
        calls this, and fails to guard on a set of functions reached through the mode stack.
        """
        return (
            func is _SDPA
            or func is _MHA_FORWARD
            or func is self._sdpa_patch
            or func is self._mha_patch
            or (
                isinstance(func, torch._ops.OpOverloadPacket | torch._ops.OpOverload)
                and _is_varlen(func)
            )
        )

    def kind(self, func: Callable[..., Any]) -> str | None:
        """What the mode does with `func` outside `torch.compile`: `_WATCHED` (an attention
        function), a `_TRACED` kind, or None (passed through). Remembered by function: the mode
        asks at every torch call."""
        try:
            return self.kinds[func]
        except KeyError:
            pass
        except TypeError:  # a callable without a hash
            return _WATCHED if self.watches(func) else _TRACED.get(func)
        kind = _WATCHED if self.watches(func) else None
        # not a method bound to a tensor (the key would keep it alive)
        if len(self.kinds) < 4096 and not isinstance(getattr(func, "__self__", None), Tensor):
            self.kinds[func] = kind
        return kind

    # -- install / remove -------------------------------------------------------------------

    def install(self) -> None:
        # a call left open in any thread by a session that ended inside a module's forward
        # must not mark every later call there as nested (see `_calls`)
        self._generation += 1
        self.records.clear()
        self._handles = [
            torch_module.register_module_forward_pre_hook(self._pre_hook),
            # always_call: the mode goes back on the stack even when the forward raises
            torch_module.register_module_forward_hook(self._post_hook, always_call=True),
        ]
        for name, patch in self._patches.items():
            setattr(F, name, patch)
        self.installed = True

    def remove(self) -> None:
        self.installed = False
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.records.clear()
        # what a clean mask proved stays (no tensor of the user's held): a model run under a
        # session per step or per test reads its masks once, not at every session
        self._cache.keep_clean()
        for name, patch in self._patches.items():
            if getattr(F, name) is patch:  # someone who replaced it after us keeps theirs
                setattr(F, name, _ORIGINALS[name])

    def enter_thread(self) -> AttentionMode:
        """A session begins on this thread: its mode (one per thread, shared by its sessions)."""
        mode = self._state.mode
        if mode is None or mode.retired:
            if mode is not None:
                _take_off_stack(mode)  # retired by a session ended from another thread
            mode = self._state.mode = AttentionMode(self, threading.get_ident())
            # what TorchFunctionMode.__enter__ does; the same calls suspend and restore it below
            torch._C._push_on_torch_function_stack(mode)
        mode.sessions += 1
        return mode

    def leave_thread(self, mode: AttentionMode) -> None:
        """A session that began on `mode`'s thread ends (on any thread)."""
        mode.sessions -= 1
        if mode.sessions > 0:
            return
        mode.retired = True  # passes everything through from now on
        if mode.thread == threading.get_ident():
            _take_off_stack(mode)
            if self._state.mode is mode:
                self._state.mode = None
        # else: only its own thread can take it off its stack; it does at its next session

    # -- modules ----------------------------------------------------------------------------

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        __tracebackhide__ = True  # pytest shows the user's call, not this frame
        if not isinstance(module, _WATCHED_MODULES) or not self.installed:
            return
        calls = self._calls()
        if any(c.inspected for c in calls):  # the same call, seen again
            calls.append(_Call(module, inspected=False, suspended=self._suspend_mode()))
            return
        kwargs = _call_kwargs(module)
        bound = self._bind(module, args, kwargs)
        if bound is None:
            # a forward lpim cannot read, or a call torch will refuse: it runs as it does
            # without the sanitizer (fast paths included), and the attention calls inside it
            # are watched instead (modules by these hooks, F's functions by the patches)
            unread = _Call(module, inspected=False, unread_since=self._state.counted)
            unread.suspended = self._suspend_mode()
            calls.append(unread)
            return
        call = _Call(module, inspected=True, api=_api_name(module))
        calls.append(call)
        call.suspended = self._suspend_mode()
        reason = _module_skip_reason(module, bound)
        advised: list[Hazard] = []
        if reason is None:
            try:
                with _reading():
                    inspected = _inspect_module(module, bound, call.api, self.records, self._cache)
                if inspected is not None:
                    call.found, call.call, call.inputs, call.batch_first, advised = inspected
            except Exception as error:  # never break the model: skip the call, say why
                reason = f"{SKIP_UNREAD} ({type(error).__name__}: {error})"
        self._count(reason)
        if call.found is not None and call.call is not None:
            self._hand_over_found(call.found, call.call, advised, call.api)

    def _hand_over_found(
        self, found: Inspection, call: _LazyCall, advised: list[Hazard], api: str
    ) -> None:
        """The masks' own hazards (cached with them), then a suspect fill's proof on scores."""
        __tracebackhide__ = True
        hazards = list(advised)
        if found.suspect_fill:
            try:  # a proof that cannot run proves nothing, and must not break the call
                with _reading():
                    hazards += prove_fill(call.get(), found)
            except Exception:
                pass
        if hazards:
            self._hand_over(hazards, api)

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], result: Any) -> None:
        __tracebackhide__ = True
        if not isinstance(module, _WATCHED_MODULES):
            return
        calls = self._calls()
        if not calls or calls[-1].module is not module:
            return  # its pre-hook did not run (an earlier pre-hook raised)
        call = calls.pop()
        try:
            # read before our mode is back: a tensor's properties (`is_nested`, `is_meta`)
            # would otherwise go through it
            hazards = self._read_result(module, call, result)
        finally:
            mode = call.suspended
            if mode is not None and not mode.retired:
                torch._C._push_on_torch_function_stack(mode)
        if hazards:
            self._hand_over(hazards, call.api)

    def _read_result(self, module: nn.Module, call: _Call, result: Any) -> list[Hazard]:
        if call.unread_since == self._state.counted and result is not None and self.installed:
            # its own forward ran torch's attention where nothing sees it (a fused fast path)
            self._count(f"{SKIP_FORWARD} ({type(module).__qualname__}.forward)")
        if result is None or call.found is None:
            return []  # the forward raised, or nothing to check
        out = result[0] if isinstance(result, tuple) else result
        if not isinstance(out, Tensor) or out.is_nested or not _has_data(out):
            return []
        try:
            with _reading():
                if out.dim() == 2:
                    out = out[None]  # unbatched (L, E) -> (1, L, E)
                elif not call.batch_first:
                    out = out.transpose(0, 1)  # (L, N, E) -> (N, L, E)
                lane = call.call.lane if call.call is not None else _no_lane
                return check_output(call.api, call.found, out, list(call.inputs), lane)
        except Exception:  # never break the model; the call was counted already
            return []

    def _hand_over(self, hazards: list[Hazard], api: str) -> None:
        """Give `hazards` to `deliver`, their texts made first where no mode sees lpim's reads
        (a text may read the call's tensors)."""
        __tracebackhide__ = True
        try:
            with _reading():
                for hazard in hazards:
                    hazard.detail  # noqa: B018 -- computed and kept
        except Exception:  # never break the model: the kinds are still reported
            pass
        self._deliver(hazards, api)

    def _calls(self) -> list[_Call]:
        """This thread's open watched calls, those of an earlier install dropped."""
        state = self._state
        if state.generation != self._generation:
            state.calls, state.generation = [], self._generation
        return state.calls

    def _count(self, skipped: str | None) -> None:
        self._state.counted += 1
        self._count_call(skipped)

    def _suspend_mode(self) -> AttentionMode | None:
        """Take our mode off the stack if it is on top (so torch's fast paths stay available)."""
        mode: AttentionMode | None = self._state.mode
        depth = torch._C._len_torch_function_stack()
        if mode is None or mode.retired or depth == 0:
            return None
        ours = mode
        if torch._C._get_function_stack_at(depth - 1) is not mode:
            return None  # someone else's mode is on top: torch's fast path is off anyway
        torch._C._pop_torch_function_stack()
        return ours

    def _bind(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The call's arguments by name, read with the signature of the module's own forward;
        None when that forward does not take every parameter lpim reads, or the call does not
        fit it (torch, or the subclass, will say what is wrong)."""
        kind = type(module)
        if kind not in self._signatures:
            signature = _readable_signature(kind)
            self._signatures[kind] = None if signature is None else _Binder(signature)
        binder = self._signatures[kind]
        return None if binder is None else binder.bind(module, args, kwargs)

    # -- functions ----------------------------------------------------------------------------

    def from_patch(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A call of a patched `torch.nn.functional` name: watched here where no mode of ours
        will see it (a thread that entered no session), else passed on to torch."""
        __tracebackhide__ = True
        mode = self._state.mode
        calls = self._calls()
        if (
            not self.installed
            or (calls and any(c.inspected for c in calls))
            or (mode is not None and not mode.retired and _on_stack(mode))
        ):
            return func(*args, **kwargs)
        return self.on_function(func, args, kwargs)

    def on_function(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        __tracebackhide__ = True
        calls = self._calls()
        if calls and any(c.inspected for c in calls):
            return func(*args, **kwargs)  # inside a watched call: seen there
        found: Inspection | None = None
        api, reason = _function_api(func), None
        inputs: list[Tensor] = []
        call: _LazyCall | None = None
        advised: list[Hazard] = []
        try:
            with _reading():
                found, inputs, reason, call, advised = _inspect_function(
                    api, args, kwargs, self.records, self._cache
                )
        except Exception as error:  # never break the model: skip the call, say why
            found, reason = None, f"{SKIP_UNREAD} ({type(error).__name__}: {error})"
        self._count(reason)
        if found is not None and call is not None:
            self._hand_over_found(found, call, advised, api)
        calls.append(_Call(None, inspected=True))  # what it calls is this call
        try:
            result = func(*args, **kwargs)
        finally:
            calls.pop()
        if found is None:
            return result
        out = result[0] if isinstance(result, tuple) else result
        if isinstance(out, Tensor) and not out.is_nested and _has_data(out):
            try:
                with _reading():
                    if api == "F.multi_head_attention_forward":
                        out = out[None] if out.dim() == 2 else out.transpose(0, 1)  # (N, L, E)
                    lane = call.lane if call is not None else _no_lane
                    hazards = check_output(api, found, out, inputs, lane)
            except Exception:  # never break the model; the call was counted already
                hazards = []
            if hazards:
                self._hand_over(hazards, api)
        return result

    def _built_by(self, attn_mask: object) -> RepeatRecord | None:
        record = self.records.get(attn_mask) if isinstance(attn_mask, Tensor) else None
        return record if isinstance(record, RepeatRecord) else None

    def on_traced(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], kind: str
    ) -> Any:
        """`repeat`, conversions, `masked_fill`, `+` and `softmax`: see `_handwritten`."""
        __tracebackhide__ = True
        result = func(*args, **kwargs)
        calls = self._calls()
        if (calls and any(c.inspected for c in calls)) or not self.installed:
            return result  # inside a watched call: torch's own code
        seen = None
        try:  # bookkeeping must never break the user's call
            if kind == "add":
                hand.on_add(self.records, args, kwargs, result)
                return result  # reads nothing
            if kind == "softmax":
                # what softmax reads is recorded: no record (nearly every softmax), nothing to
                # read; a clean -inf fill is counted, with nothing to check
                fact = self.records.get(args[0] if args else kwargs.get("input"))
                if fact is None:
                    return result
                if fact is hand.CLEAN_FILL and _last_axis(args, kwargs):
                    self._count(None)
                    return result
            with _reading():
                seen = self._trace(kind, func, args, kwargs, result)
        except Exception:
            seen = None
        if seen is not None:
            api, hazards = seen
            self._count(None)
            if hazards:
                self._hand_over(hazards, api)
        return result

    def _trace(
        self,
        kind: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
    ) -> tuple[str, list[Hazard]] | None:
        if kind == "repeat":
            hand.on_repeat(self.records, args, result, _site_and_line)
        elif kind == "convert":
            hand.on_convert(self.records, func, args, kwargs, result)
        elif kind == "masked_fill":
            hand.on_masked_fill(self.records, args, kwargs, result, _site_and_line)
        else:
            return hand.on_softmax(self.records, args, kwargs, result)
        return None


def _last_axis(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """A softmax call's `dim` is -1 (read without touching a tensor)."""
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    return dim == -1 and isinstance(dim, int)


def _patched(watcher: Watcher, original: Callable[..., Any]) -> Callable[..., Any]:
    """`original` as the name in `torch.nn.functional` while a session is on: seen in every
    thread, passed straight to torch where a mode of ours sees it or no session is on."""

    def watched(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if not watcher.installed:
            # a reference taken while a session was on (an import made under `lpim sanitize`)
            return original(*args, **kwargs)
        if torch.compiler.is_compiling():
            # torch.compile would trace the call into its graph, unread: it is read eagerly,
            # at run time, on real tensors (a graph break at each attention call)
            return _eagerly(watcher.from_patch)(original, args, kwargs)
        return watcher.from_patch(original, args, kwargs)

    # its name and text, not functools.wraps: a __wrapped__ would lead torch.compile around it
    watched.__name__ = watched.__qualname__ = original.__name__
    watched.__doc__ = original.__doc__
    return watched


def _readable_signature(kind: type[nn.Module]) -> inspect.Signature | None:
    """The signature of `kind.forward` if it takes every parameter lpim reads, else None."""
    reads = next(names for base, names in _READS.items() if issubclass(kind, base))
    try:
        signature = inspect.signature(kind.forward)
    except (TypeError, ValueError):  # a builtin or a callable object without a signature
        return None
    return signature if set(reads) <= set(signature.parameters) else None


_READS_BY_TYPE: dict[type, tuple[str, ...]] = {}


def _reads(kind: type[nn.Module]) -> tuple[str, ...]:
    """The parameters read for a watched module type (looked up once per type)."""
    reads = _READS_BY_TYPE.get(kind)
    if reads is None:
        reads = next(names for base, names in _READS.items() if issubclass(kind, base))
        _READS_BY_TYPE[kind] = reads
    return reads


def _module_skip_reason(module: nn.Module, a: Mapping[str, Any]) -> str | None:
    reads = _reads(type(module))
    query = a.get("query", a.get("src"))
    key = a.get("key", query)
    return _skip_reason([a.get(name) for name in reads], query, key)


def _function_api(func: Callable[..., Any]) -> str:
    if func in (_SDPA, F.scaled_dot_product_attention):
        return "F.scaled_dot_product_attention"
    if func in (_MHA_FORWARD, F.multi_head_attention_forward):
        return "F.multi_head_attention_forward"
    return "varlen_attn"


Inspected = tuple[Inspection | None, list[Tensor], str | None, "_LazyCall | None", list[Hazard]]
"""One function call read: what was found (or None), its q/k/v, why it was skipped, the call as
the proofs read it, and the masks' hazards with their checked advice."""


def _inspect_function(
    api: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    records: hand.Records,
    cache: _InspectionCache,
) -> Inspected:
    """Read one watched function call (masks by the cache: a mask seen before is a look-up)."""
    if api == "F.scaled_dot_product_attention":
        named = dict(zip(_SDPA_ARGS, args, strict=False))
        named.update(kwargs)
        query, key, value = named.get("query"), named.get("key"), named.get("value")
        if not isinstance(query, Tensor) or not isinstance(key, Tensor):
            return None, [], SKIP_UNREAD, None, []  # torch says what is wrong with the call
        attn_mask = named.get("attn_mask")
        reason = _skip_reason([query, key, value, attn_mask], query, key)
        if reason is not None:
            return None, [], reason, None, []
        inputs = [t for t in (query, key, value) if isinstance(t, Tensor)]
        sdpa_query, sdpa_key = query, key
        found, advised = cache.get(
            (api, query.shape[:-1], key.shape[:-1], query.dtype),
            (attn_mask,),
            lambda: inspect_sdpa(sdpa_query, sdpa_key, attn_mask),
            lambda found: _sdpa_call(named, found),
        )
        return found, inputs, None, _LazyCall(lambda: _sdpa_call(named, found)), advised
    if api == "F.multi_head_attention_forward":
        try:
            bound = inspect.signature(_MHA_FORWARD).bind(*args, **kwargs)
        except TypeError:
            return None, [], SKIP_UNREAD, None, []  # torch says what is wrong with the call
        bound.apply_defaults()
        a = dict(bound.arguments)
        names = ("query", "key", "value", "attn_mask", "key_padding_mask")
        reason = _skip_reason([a[name] for name in names], a["query"], a["key"])
        if reason is not None:
            return None, [], reason, None, []
        record = records.get(a["attn_mask"]) if isinstance(a["attn_mask"], Tensor) else None
        built_by = record if isinstance(record, RepeatRecord) else None
        found, advised = cache.get(
            (api, a["query"].shape, a["key"].shape, a["query"].dtype, int(a["num_heads"])),
            (a["attn_mask"], a["key_padding_mask"]),
            lambda: inspect_mha(
                api,
                a["query"],
                a["key"],
                a["attn_mask"],
                a["key_padding_mask"],
                int(a["num_heads"]),
                batch_first=False,
                built_by=built_by,
            ),
            lambda found: _functional_mha_call(a, found, built_by),
        )
        call = _LazyCall(lambda: _functional_mha_call(a, found, built_by))
        return found, [a["query"], a["key"], a["value"]], None, call, advised
    # varlen attention: packed tokens, no mask to read; the output is still checked
    inputs = [t for t in args[:3] if isinstance(t, Tensor)]
    if not all(_has_data(t) for t in inputs):
        return None, [], SKIP_NO_DATA, None, []
    return Inspection(), inputs, None, None, []


_SDPA_ARGS = (
    "query",
    "key",
    "value",
    "attn_mask",
    "dropout_p",
    "is_causal",
    "scale",
    "enable_gqa",
)

_TRACED: dict[Callable[..., Any], str] = {
    Tensor.repeat: "repeat",
    **{
        f: "convert"
        for f in (
            Tensor.to,
            Tensor.bool,
            Tensor.float,
            Tensor.half,
            Tensor.double,
            Tensor.bfloat16,
            Tensor.__invert__,
            Tensor.logical_not,
            Tensor.contiguous,
        )
    },
    **{f: "masked_fill" for f in (Tensor.masked_fill, Tensor.masked_fill_, torch.masked_fill)},
    **{
        f: "add"
        for f in (
            Tensor.add,
            Tensor.__add__,
            Tensor.__radd__,
            Tensor.__iadd__,
            Tensor.add_,
            torch.add,
        )
    },
    **{f: "softmax" for f in (Tensor.softmax, torch.softmax, F.softmax)},
}
"""Torch functions whose results the mode records (see `_handwritten`)."""


class _Binder:
    """Binds a module call's arguments to its `forward`'s names, defaults filled in.

    `inspect.Signature.bind` costs tens of microseconds a call; a forward with plain
    parameters (torch's attention modules) is bound by a dictionary update instead.
    """

    def __init__(self, signature: inspect.Signature) -> None:
        self._signature = signature
        params = list(self._signature.parameters.values())[1:]  # after self
        plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        self._plain = all(p.kind in plain for p in params)
        self._positional = [
            p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ]
        self._names = {p.name for p in params}
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}

    def bind(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """`{"self": module, name: value, ...}`, or None where the call does not bind (torch
        will say what is wrong with it)."""
        if not self._plain:
            try:
                bound = self._signature.bind(module, *args, **kwargs)
            except TypeError:
                return None
            bound.apply_defaults()
            return dict(bound.arguments)
        if len(args) > len(self._positional):
            return None
        arguments = dict(self._defaults)
        arguments.update(zip(self._positional, args, strict=False))
        for name in kwargs:
            if name not in self._names or name in self._positional[: len(args)]:
                return None
        arguments.update(kwargs)
        if len(arguments) != len(self._names):
            return None  # a required argument is missing
        arguments["self"] = module
        return arguments


class _InspectionCache:
    """Inspections by the masks' identity, version and shape, and the call's sizes.

    What the masks alone prove (and the advice read for it) does not change while the masks
    do not: a mask seen before costs a dictionary look-up. A mask whose version cannot be read
    (an inference tensor) is inspected every time.
    """

    _SIZE = 64

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], tuple[list[weakref.ref[Tensor]], Any]] = {}

    def clear(self) -> None:
        self._entries.clear()

    def keep_clean(self) -> None:
        """Keep only the entries of calls with a mask that proved nothing and left every row a
        key, each slimmed to what the fast path reads (no tensor kept: masks by weak reference)."""
        kept: dict[tuple[Any, ...], tuple[list[weakref.ref[Tensor]], Any]] = {}
        for key, (refs, (found, advised)) in self._entries.items():
            if not refs or advised or found.hazards or found.suspect_fill:
                continue  # no mask (cheap to read again), or tensors held
            if found.fully_masked is not None:
                continue
            slim = Inspection(check_output=found.check_output, num_heads=found.num_heads)
            kept[key] = (refs, (slim, []))
        self._entries = kept

    def get(
        self,
        sizes: tuple[Any, ...],
        masks: tuple[object, ...],
        inspect_masks: Callable[[], Inspection],
        make_call: Callable[[Inspection], Call],
    ) -> tuple[Inspection, list[Hazard]]:
        key: tuple[Any, ...] | None = sizes
        refs: list[weakref.ref[Tensor]] = []
        tensors = [mask for mask in masks if isinstance(mask, Tensor)]
        for mask in masks:
            if key is None:
                break
            if not isinstance(mask, Tensor):
                key = (*key, None)
                continue
            try:
                key = (*key, id(mask), mask._version, mask.shape, mask.dtype, mask.device)
                refs.append(weakref.ref(mask))
            except (RuntimeError, TypeError):
                key = None  # no version to read (an inference tensor), or no weak reference
        if key is not None:
            entry = self._entries.get(key)
            # the same id with a live weak reference to the same tensor: not a recycled id
            if entry is not None and all(r() is m for r, m in zip(entry[0], tensors, strict=True)):
                found, advised = entry[1]
                return found, advised
        found = inspect_masks()
        advised = with_advice(make_call(found), found) if found.hazards else []
        if key is not None:
            if len(self._entries) >= self._SIZE:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (refs, (found, advised))
        return found, advised


_VARLEN_OP = "torch_attn::_varlen_attn"  # what torch.nn.attention.varlen.varlen_attn calls


def _is_varlen(func: Callable[..., Any]) -> bool:
    """True for varlen_attn's op. Matched by name: importing torch.nn.attention.varlen to look
    the op up would import torch._dynamo (seconds), and a user's script may import it after the
    sanitizer is on."""
    if isinstance(func, torch._ops.OpOverload):
        func = func._overloadpacket
    return isinstance(func, torch._ops.OpOverloadPacket) and func._qualified_op_name == _VARLEN_OP


def _eagerly(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, run by Python even inside `torch.compile` (asked for only while torch
    traces, so it is made at trace time and costs nothing when the compiled code runs)."""
    disabled: Callable[..., Any] = torch.compiler.disable(  # type: ignore[no-untyped-call]
        function, recursive=True
    )
    return disabled


class AttentionMode(TorchFunctionMode):
    """Passes every torch function through unchanged; attention functions go via the watcher.

    One per thread with a session; `retired` once its thread's last session ended (it then
    passes everything through, until its thread can take it off its stack).
    """

    def __init__(self, watcher: Watcher, thread: int) -> None:
        super().__init__()
        self._watcher = watcher
        self.thread = thread
        self.sessions = 0
        self.retired = False
        self._kinds = watcher.kinds

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        __tracebackhide__ = True
        kwargs = kwargs or {}
        if self.retired:
            return func(*args, **kwargs)
        if _is_compiling():
            if self._watcher.watches(func):
                # torch.compile traces this mode: the call is read eagerly, at run time, on
                # real tensors (a graph break at each attention call)
                return _eagerly(self._watcher.on_function)(func, args, kwargs)
            return func(*args, **kwargs)
        # eager: every torch call of the user's thread passes here, and one look-up decides
        try:
            kind = self._kinds[func]
        except (KeyError, TypeError):  # first seen, or no hash
            kind = self._watcher.kind(func)
        if kind is None:
            return func(*args, **kwargs)
        if kind == _WATCHED:
            return self._watcher.on_function(func, args, kwargs)
        return self._watcher.on_traced(func, args, kwargs, kind)


def _call_kwargs(module: nn.Module) -> Mapping[str, Any]:
    """The keyword arguments of the module call now starting, read from torch's call frame.

    Global forward pre-hooks get only the positional arguments (torch 2.13 has no
    `with_kwargs` for them), and masks are nearly always passed by keyword. The frame that
    calls the hook is `Module._call_impl`'s `inner`, whose `kwargs` are the call's: read
    them there, checking that the frame is this module's call.
    """
    frame: FrameType | None = sys._getframe(2)
    for _ in range(3):
        if frame is None:
            break
        if frame.f_code.co_filename != _MODULE_FILE:
            frame = frame.f_back  # not torch's call machinery: its locals are not read
            continue
        local = frame.f_locals
        if local.get("self") is module and isinstance(local.get("kwargs"), dict):
            kwargs: dict[str, Any] = local["kwargs"]
            return kwargs
        frame = frame.f_back
    return {}


def _api_name(module: nn.Module) -> str:
    kind = type(module)
    return f"nn.{kind.__name__}" if kind.__module__.startswith("torch.") else kind.__name__


def _rows_first(out: object, batch_first: bool) -> Tensor | None:
    out = out[0] if isinstance(out, tuple) else out
    if not isinstance(out, Tensor):
        return None
    if out.dim() == 2:
        return out[None]
    return out if batch_first else out.transpose(0, 1)


def _quietly(run: Callable[[], Any], like: Tensor) -> Any:
    """Run a fix's check without touching the user's RNG streams or autograd graph."""
    devices = [like.device.index or 0] if like.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        return run()


def _mha_sizes(query: Tensor, key: Tensor, batch_first: bool) -> tuple[int, int, int]:
    if query.dim() != 3:
        return 1, query.shape[0], key.shape[0]
    if batch_first:
        return query.shape[0], query.shape[1], key.shape[1]
    return query.shape[1], query.shape[0], key.shape[0]


def _inspect_module(
    module: nn.Module,
    a: dict[str, Any],
    api: str,
    records: hand.Records,
    cache: _InspectionCache,
) -> tuple[Inspection, _LazyCall, tuple[Tensor, ...], bool, list[Hazard]] | None:
    if isinstance(module, nn.MultiheadAttention):
        attn: nn.MultiheadAttention = module
        query, key = a["query"], a["key"]
        names = {"attn_mask": "attn_mask", "key_padding_mask": "key_padding_mask"}
        attn_mask, kpm = a.get("attn_mask"), a.get("key_padding_mask")
        inputs = tuple(a[name] for name in ("query", "key", "value") if isinstance(a[name], Tensor))
    else:
        if isinstance(module, nn.TransformerEncoderLayer):
            layer, mask_name = module, "src_mask"
        else:
            assert isinstance(module, nn.TransformerEncoder)
            first = module.layers[0] if len(module.layers) else None
            if not isinstance(first, nn.TransformerEncoderLayer):
                return None  # no layer: no attention to read
            layer, mask_name = first, "mask"
        attn = layer.self_attn
        query = key = a["src"]
        names = {"attn_mask": mask_name, "key_padding_mask": "src_key_padding_mask"}
        attn_mask, kpm = a.get(mask_name), a.get("src_key_padding_mask")
        inputs = (query,) if isinstance(query, Tensor) else ()
    if not isinstance(query, Tensor) or not isinstance(key, Tensor):
        return None
    built_by = None
    if isinstance(attn_mask, Tensor):
        record = records.get(attn_mask)
        built_by = record if isinstance(record, RepeatRecord) else None

    def make_call(found: Inspection) -> Call:
        n, length, s = _mha_sizes(query, key, attn.batch_first)

        def scores() -> Tensor | None:
            if attn.bias_k is not None or attn.add_zero_attn:
                return None  # extra key columns: the masks no longer line up
            q = k = query
            if not isinstance(module, nn.MultiheadAttention):
                if layer.norm_first:
                    q = k = layer.norm1(query)  # what a pre-norm layer's attention reads
            else:
                k = key
            return mha_scores(
                q,
                k,
                attn.num_heads,
                attn.batch_first,
                attn.in_proj_weight,
                attn.in_proj_bias,
                attn.q_proj_weight,
                attn.k_proj_weight,
            )

        def rerun(replaced: dict[str, Any]) -> Tensor | None:
            arguments = {k: v for k, v in a.items() if k != "self"} | replaced
            out: Tensor | None = _quietly(
                lambda: _rows_first(module.forward(**arguments), attn.batch_first), query
            )
            return out

        return Call(
            api,
            False,
            n,
            attn.num_heads,
            length,
            s,
            names,
            {"attn_mask": attn_mask, "key_padding_mask": kpm},
            scores,
            rerun,
            built_by,
            query.dtype,
            bool(a.get("is_causal")),
        )

    found, advised = cache.get(
        (api, id(module), query.shape, key.shape, query.dtype, attn.num_heads, attn.batch_first),
        (attn_mask, kpm),
        lambda: inspect_mha(
            api,
            query,
            key,
            attn_mask,
            kpm,
            attn.num_heads,
            attn.batch_first,
            attn_mask_name=names["attn_mask"],
            key_padding_mask_name=names["key_padding_mask"],
            built_by=built_by,
        ),
        make_call,
    )
    return found, _LazyCall(lambda: make_call(found)), inputs, attn.batch_first, advised


def _sdpa_call(named: dict[str, Any], found: Inspection) -> Call:
    query, key = named["query"], named["key"]
    lead = query.shape[:-2]
    n = lead[0] if len(lead) >= 1 else 1
    h = lead[1] if len(lead) >= 2 else 1

    def scores() -> Tensor:
        return sdpa_scores(query, key, named.get("scale"), bool(named.get("enable_gqa")))

    def rerun(replaced: dict[str, Any]) -> Tensor | None:
        out = _quietly(lambda: _SDPA(**(named | replaced)), query)  # torch's own
        return out if isinstance(out, Tensor) else None

    return Call(
        "F.scaled_dot_product_attention",
        True,
        n,
        h,
        query.shape[-2],
        key.shape[-2],
        {"attn_mask": "attn_mask"},
        {"attn_mask": named.get("attn_mask")},
        scores,
        rerun,
        None,
        query.dtype,
        bool(named.get("is_causal")),
    )


def _functional_mha_call(
    a: dict[str, Any], found: Inspection, built_by: RepeatRecord | None
) -> Call:
    query, key = a["query"], a["key"]
    n, length, s = _mha_sizes(query, key, batch_first=False)

    def scores() -> Tensor | None:
        if a["bias_k"] is not None or a["add_zero_attn"]:
            return None
        separate = bool(a["use_separate_proj_weight"])
        return mha_scores(
            query,
            key,
            int(a["num_heads"]),
            False,
            None if separate else a["in_proj_weight"],
            a["in_proj_bias"],
            a["q_proj_weight"],
            a["k_proj_weight"],
        )

    def rerun(replaced: dict[str, Any]) -> Tensor | None:
        out: Tensor | None = _quietly(
            lambda: _rows_first(_MHA_FORWARD(**(a | replaced)), False), query
        )
        return out

    return Call(
        "F.multi_head_attention_forward",
        False,
        n,
        int(a["num_heads"]),
        length,
        s,
        {"attn_mask": "attn_mask", "key_padding_mask": "key_padding_mask"},
        {"attn_mask": a["attn_mask"], "key_padding_mask": a["key_padding_mask"]},
        scores,
        rerun,
        built_by,
        query.dtype,
        bool(a.get("is_causal")),
    )


def _no_lane() -> None:
    """No lane encoder in sight (a call whose reading has no `Call`)."""
    return None
