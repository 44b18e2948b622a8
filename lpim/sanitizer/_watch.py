"""Where the sanitizer meets torch: a TorchFunctionMode for functions, global module hooks.

- `F.scaled_dot_product_attention`, `F.multi_head_attention_forward` and varlen attention's
  op are seen by `_AttentionMode`, a `TorchFunctionMode`.
- `nn.MultiheadAttention`, `nn.TransformerEncoderLayer` and `nn.TransformerEncoder` are
  seen by global forward (pre-)hooks. Their fused fast paths call `torch._native_*` kernels
  directly, which no function mode sees, and they refuse the fast path while any torch function
  mode is on the stack (`has_torch_function` is then true). So while one of these modules runs,
  the hooks take our mode off the stack and put it back afterwards: the module takes exactly the
  path it takes without the sanitizer, and its masks are read at its call.

Only the outermost watched call is inspected: a TransformerEncoder's layers, and the
MultiheadAttention inside a layer, are the same call seen again.
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
from lpim.sanitizer._checks import Hazard, Inspection, RepeatRecord, inspect_mha, inspect_sdpa
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

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_LPIM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_WATCHED_MODULES = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)


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
    """One watched module call on this thread's stack, from its pre-hook to its post-hook."""

    module: nn.Module
    inspected: bool  # the outermost watched call: its masks were read
    suspended: bool = False  # our mode was taken off the stack for it
    found: Inspection | None = None
    call: Call | None = None
    api: str = ""
    inputs: tuple[Tensor, ...] = ()
    batch_first: bool = True


class _State(threading.local):
    calls: list[_Call]

    def __init__(self) -> None:
        self.calls = []


class Watcher:
    """Installs and removes the mode and the hooks; hands each call's hazards to `deliver`."""

    def __init__(self, deliver: Deliver, count_call: Callable[[], None]) -> None:
        self._deliver = deliver
        self._count_call = count_call
        self._mode: _AttentionMode | None = None
        self._handles: list[RemovableHandle] = []
        self._state = _State()
        self._signatures: dict[type, _Binder] = {}
        self.records = hand.Records()
        self._cache = _InspectionCache()

    # -- install / remove -------------------------------------------------------------------

    def install(self) -> None:
        # a call left open by a session that ended inside a module's forward must not mark
        # every later call as nested
        self._state.calls = []
        self.records.clear()
        self._cache.clear()
        self._handles = [
            torch_module.register_module_forward_pre_hook(self._pre_hook),
            # always_call: the mode goes back on the stack even when the forward raises
            torch_module.register_module_forward_hook(self._post_hook, always_call=True),
        ]
        self._mode = _AttentionMode(self)
        # what TorchFunctionMode.__enter__ does; the same calls suspend and restore it below
        torch._C._push_on_torch_function_stack(self._mode)

    def remove(self) -> None:
        mode = self._mode
        if mode is not None:
            depth = torch._C._len_torch_function_stack()
            if depth == 0 or torch._C._get_function_stack_at(depth - 1) is not mode:
                raise RuntimeError(
                    "lpim.sanitize: another TorchFunctionMode was entered after the sanitizer "
                    "and is still active; exit it first (modes must be exited in reverse order)"
                )
            torch._C._pop_torch_function_stack()
            self._mode = None
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.records.clear()
        self._cache.clear()

    # -- modules ----------------------------------------------------------------------------

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not isinstance(module, _WATCHED_MODULES):
            return
        calls = self._state.calls
        call = _Call(module, inspected=not any(c.inspected for c in calls))
        calls.append(call)
        call.suspended = self._suspend_mode()
        if not call.inspected:
            return
        kwargs = _call_kwargs(module)
        self._count_call()
        call.api = _api_name(module)
        bound = self._bind(module, args, kwargs)
        if bound is None:
            return
        inspected = _inspect_module(module, bound, call.api, self.records, self._cache)
        if inspected is None:
            return
        call.found, call.call, call.inputs, call.batch_first, advised = inspected
        self._deliver_found(call.found, call.call, advised)

    def _deliver_found(self, found: Inspection, call: Call, advised: list[Hazard]) -> None:
        """The masks' own hazards (cached with them), then a suspect fill's proof on scores."""
        hazards = list(advised)
        if found.suspect_fill:
            try:  # a proof that cannot run proves nothing, and must not break the call
                with torch.no_grad():
                    hazards += prove_fill(call, found)
            except Exception:
                pass
        if hazards:
            self._deliver(hazards, call.api)

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], result: Any) -> None:
        if not isinstance(module, _WATCHED_MODULES):
            return
        calls = self._state.calls
        if not calls or calls[-1].module is not module:
            return  # its pre-hook did not run (an earlier pre-hook raised)
        call = calls.pop()
        try:
            # checked before our mode is back: the check's own torch calls bypass it
            self._check_result(call, result)
        finally:
            if call.suspended and self._mode is not None:
                torch._C._push_on_torch_function_stack(self._mode)

    def _check_result(self, call: _Call, result: Any) -> None:
        if result is None or call.found is None or call.call is None:
            return  # the forward raised, or nothing to check
        out = result[0] if isinstance(result, tuple) else result
        if not isinstance(out, Tensor) or out.is_nested:
            return
        if out.dim() == 2:
            out = out[None]  # unbatched (L, E) -> (1, L, E)
        elif not call.batch_first:
            out = out.transpose(0, 1)  # (L, N, E) -> (N, L, E)
        hazards = check_output(call.api, call.found, out, list(call.inputs), call.call.lane)
        if hazards:
            self._deliver(hazards, call.api)

    def _suspend_mode(self) -> bool:
        """Take our mode off the stack if it is on top (so torch's fast paths stay available)."""
        depth = torch._C._len_torch_function_stack()
        if self._mode is None or depth == 0:
            return False
        if torch._C._get_function_stack_at(depth - 1) is not self._mode:
            return False  # someone else's mode is on top: torch's fast path is off anyway
        torch._C._pop_torch_function_stack()
        return True

    def _bind(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        kind = type(module)
        binder = self._signatures.get(kind)
        if binder is None:
            binder = self._signatures[kind] = _Binder(kind)
        return binder.bind(module, args, kwargs)

    # -- functions ----------------------------------------------------------------------------

    def on_function(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self._state.calls:
            return func(*args, **kwargs)  # inside a watched module: seen there
        if func is F.scaled_dot_product_attention:
            named = dict(zip(_SDPA_ARGS, args, strict=False))
            named.update(kwargs)
            query, key = named.get("query"), named.get("key")
            if not isinstance(query, Tensor) or not isinstance(key, Tensor):
                return func(*args, **kwargs)  # torch says what is wrong with the call
            api = "F.scaled_dot_product_attention"
            attn_mask = named.get("attn_mask")
            sdpa_query, sdpa_key = query, key
            found, advised = self._cache.get(
                (api, query.shape[:-1], key.shape[:-1]),
                (attn_mask,),
                lambda: inspect_sdpa(sdpa_query, sdpa_key, attn_mask),
                lambda found: _sdpa_call(func, named, found),
            )
            call = _sdpa_call(func, named, found)
            inputs = [t for t in (query, key, named.get("value")) if isinstance(t, Tensor)]
        elif func is F.multi_head_attention_forward:
            try:
                bound = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
            except TypeError:
                return func(*args, **kwargs)  # torch says what is wrong with the call
            bound.apply_defaults()
            a = dict(bound.arguments)
            api = "F.multi_head_attention_forward"
            query = a["query"]
            if not isinstance(query, Tensor) or not isinstance(a["key"], Tensor):
                return func(*args, **kwargs)
            built_by = self._built_by(a["attn_mask"])
            found, advised = self._cache.get(
                (api, query.shape, a["key"].shape, int(a["num_heads"])),
                (a["attn_mask"], a["key_padding_mask"]),
                lambda: inspect_mha(
                    api,
                    query,
                    a["key"],
                    a["attn_mask"],
                    a["key_padding_mask"],
                    int(a["num_heads"]),
                    batch_first=False,
                    built_by=built_by,
                ),
                lambda found: _functional_mha_call(func, a, found, built_by),
            )
            call = _functional_mha_call(func, a, found, built_by)
            inputs = [a["query"], a["key"], a["value"]]
        else:  # varlen attention: packed tokens, no mask to read; the output is still checked
            api = "varlen_attn"
            found, advised = Inspection(), []
            call = None
            inputs = [t for t in args[:3] if isinstance(t, Tensor)]
        self._count_call()
        if call is not None:
            self._deliver_found(found, call, advised)
        result = func(*args, **kwargs)
        out = result[0] if isinstance(result, tuple) else result
        if isinstance(out, Tensor) and not out.is_nested:
            if api == "F.multi_head_attention_forward":
                out = out[None] if out.dim() == 2 else out.transpose(0, 1)  # -> (N, L, E)
            lane = call.lane if call is not None else (lambda: None)
            hazards = check_output(api, found, out, inputs, lane)
            if hazards:
                self._deliver(hazards, api)
        return result

    def _built_by(self, attn_mask: object) -> RepeatRecord | None:
        record = self.records.get(attn_mask) if isinstance(attn_mask, Tensor) else None
        return record if isinstance(record, RepeatRecord) else None

    def on_traced(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """`repeat`, conversions, `masked_fill`, `+` and `softmax`: see `_handwritten`."""
        result = func(*args, **kwargs)
        if self._state.calls:
            return result  # inside a watched module: torch's own code
        kind = _TRACED[func]
        seen = None
        try:  # bookkeeping must never break the user's call
            if kind == "repeat":
                hand.on_repeat(self.records, args, result, _site_and_line)
            elif kind == "convert":
                hand.on_convert(self.records, func, args, kwargs, result)
            elif kind == "masked_fill":
                hand.on_masked_fill(self.records, args, kwargs, result, _site_and_line)
            elif kind == "add":
                hand.on_add(self.records, args, kwargs, result)
            else:
                with torch.no_grad():
                    seen = hand.on_softmax(self.records, args, kwargs, result)
        except Exception:
            seen = None
        if seen is not None:
            api, hazards = seen
            self._count_call()
            if hazards:
                self._deliver(hazards, api)
        return result


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

    def __init__(self, kind: type[nn.Module]) -> None:
        self._signature = inspect.signature(kind.forward)
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


_OPS = (torch._ops.OpOverloadPacket, torch._ops.OpOverload)


class _AttentionMode(TorchFunctionMode):
    """Passes every torch function through unchanged; attention functions go via the watcher."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__()
        self._watcher = watcher
        self._watched = {F.scaled_dot_product_attention, F.multi_head_attention_forward}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func in _TRACED:
            return self._watcher.on_traced(func, args, kwargs)
        if func in self._watched or (type(func) in _OPS and _is_varlen(func)):
            return self._watcher.on_function(func, args, kwargs)
        return func(*args, **kwargs)


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
) -> tuple[Inspection, Call, tuple[Tensor, ...], bool, list[Hazard]] | None:
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
        (api, id(module), query.shape, key.shape, attn.num_heads, attn.batch_first),
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
    return found, make_call(found), inputs, attn.batch_first, advised


def _sdpa_call(func: Callable[..., Any], named: dict[str, Any], found: Inspection) -> Call:
    query, key = named["query"], named["key"]
    lead = query.shape[:-2]
    n = lead[0] if len(lead) >= 1 else 1
    h = lead[1] if len(lead) >= 2 else 1

    def scores() -> Tensor:
        return sdpa_scores(query, key, named.get("scale"), bool(named.get("enable_gqa")))

    def rerun(replaced: dict[str, Any]) -> Tensor | None:
        out = _quietly(lambda: func(**(named | replaced)), query)
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
    func: Callable[..., Any], a: dict[str, Any], found: Inspection, built_by: RepeatRecord | None
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
        out: Tensor | None = _quietly(lambda: _rows_first(func(**(a | replaced)), False), query)
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
