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

import inspect
import os
import sys
import threading
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

from lpim.sanitizer._checks import Hazard, Inspection, check_output, inspect_mha, inspect_sdpa

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
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_TORCH_DIR):
            if not filename.startswith(_LPIM_DIR):
                return frame.f_code.co_filename, frame.f_lineno
            if fallback is None and os.sep + "sanitizer" + os.sep not in filename:
                fallback = (frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return fallback or ("<unknown>", 0)


@dataclass
class _Call:
    """One watched module call on this thread's stack, from its pre-hook to its post-hook."""

    module: nn.Module
    inspected: bool  # the outermost watched call: its masks were read
    suspended: bool = False  # our mode was taken off the stack for it
    found: Inspection | None = None
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
        self._signatures: dict[type, inspect.Signature] = {}

    # -- install / remove -------------------------------------------------------------------

    def install(self) -> None:
        # a call left open by a session that ended inside a module's forward must not mark
        # every later call as nested
        self._state.calls = []
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
        call.found, call.inputs, call.batch_first = _inspect_module(module, bound, call.api)
        if call.found.hazards:
            self._deliver(call.found.hazards, call.api)

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], result: Any) -> None:
        if not isinstance(module, _WATCHED_MODULES):
            return
        calls = self._state.calls
        if not calls or calls[-1].module is not module:
            return  # its pre-hook did not run (an earlier pre-hook raised)
        call = calls.pop()
        if call.suspended and self._mode is not None:
            torch._C._push_on_torch_function_stack(self._mode)
        if result is None or call.found is None:
            return  # the forward raised, or nothing to check
        out = result[0] if isinstance(result, tuple) else result
        if not isinstance(out, Tensor) or out.is_nested:
            return
        if out.dim() == 2:
            out = out[None]  # unbatched (L, E) -> (1, L, E)
        elif not call.batch_first:
            out = out.transpose(0, 1)  # (L, N, E) -> (N, L, E)
        hazards = check_output(call.api, call.found, out, list(call.inputs))
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
        signature = self._signatures.get(kind)
        if signature is None:
            signature = self._signatures[kind] = inspect.signature(kind.forward)
        try:
            bound = signature.bind(module, *args, **kwargs)
        except TypeError:
            return None  # torch will say what is wrong with the call
        bound.apply_defaults()
        return dict(bound.arguments)

    # -- functions ----------------------------------------------------------------------------

    def on_function(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self._state.calls:
            return func(*args, **kwargs)  # inside a watched module: seen there
        if func is F.scaled_dot_product_attention:
            named = dict(zip(("query", "key", "value", "attn_mask"), args, strict=False))
            named.update(kwargs)
            query, key = named.get("query"), named.get("key")
            if not isinstance(query, Tensor) or not isinstance(key, Tensor):
                return func(*args, **kwargs)  # torch says what is wrong with the call
            found = inspect_sdpa(query, key, named.get("attn_mask"))
            api = "F.scaled_dot_product_attention"
            inputs = [t for t in (query, key, named.get("value")) if isinstance(t, Tensor)]
        elif func is F.multi_head_attention_forward:
            try:
                bound = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
            except TypeError:
                return func(*args, **kwargs)  # torch says what is wrong with the call
            bound.apply_defaults()
            a = bound.arguments
            api = "F.multi_head_attention_forward"
            found = inspect_mha(
                api,
                a["query"],
                a["key"],
                a["attn_mask"],
                a["key_padding_mask"],
                int(a["num_heads"]),
                batch_first=False,
            )
            inputs = [a["query"], a["key"], a["value"]]
        else:  # varlen attention: packed tokens, no mask to read; the output is still checked
            api = "varlen_attn"
            found = Inspection()
            inputs = [t for t in args[:3] if isinstance(t, Tensor)]
        self._count_call()
        if found.hazards:
            self._deliver(found.hazards, api)
        result = func(*args, **kwargs)
        out = result[0] if isinstance(result, tuple) else result
        if isinstance(out, Tensor) and not out.is_nested:
            if api == "F.multi_head_attention_forward":
                out = out[None] if out.dim() == 2 else out.transpose(0, 1)  # -> (N, L, E)
            hazards = check_output(api, found, out, inputs)
            if hazards:
                self._deliver(hazards, api)
        return result


_VARLEN_OP = "torch_attn::_varlen_attn"  # what torch.nn.attention.varlen.varlen_attn calls


def _is_varlen(func: Callable[..., Any]) -> bool:
    """True for varlen_attn's op. Matched by name: importing torch.nn.attention.varlen to look
    the op up would import torch._dynamo (seconds), and a user's script may import it after the
    sanitizer is on."""
    if isinstance(func, torch._ops.OpOverload):
        func = func._overloadpacket
    return isinstance(func, torch._ops.OpOverloadPacket) and func._qualified_op_name == _VARLEN_OP


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
        if func in self._watched or (
            isinstance(func, torch._ops.OpOverloadPacket | torch._ops.OpOverload)
            and _is_varlen(func)
        ):
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


def _inspect_module(
    module: nn.Module, a: dict[str, Any], api: str
) -> tuple[Inspection, tuple[Tensor, ...], bool]:
    if isinstance(module, nn.MultiheadAttention):
        found = inspect_mha(
            api,
            a["query"],
            a["key"],
            a.get("attn_mask"),
            a.get("key_padding_mask"),
            module.num_heads,
            module.batch_first,
        )
        inputs = tuple(a[name] for name in ("query", "key", "value") if isinstance(a[name], Tensor))
        return found, inputs, module.batch_first
    if isinstance(module, nn.TransformerEncoderLayer):
        attn, mask_name = module.self_attn, "src_mask"
    else:
        assert isinstance(module, nn.TransformerEncoder)
        first = module.layers[0] if len(module.layers) else None
        if not isinstance(first, nn.TransformerEncoderLayer):
            return Inspection(check_output=False), (), True  # no layer: no attention to read
        attn, mask_name = first.self_attn, "mask"
    src = a["src"]
    found = inspect_mha(
        api,
        src,
        src,
        a.get(mask_name),
        a.get("src_key_padding_mask"),
        attn.num_heads,
        attn.batch_first,
        attn_mask_name=mask_name,
        key_padding_mask_name="src_key_padding_mask",
    )
    inputs = (src,) if isinstance(src, Tensor) else ()
    return found, inputs, attn.batch_first
