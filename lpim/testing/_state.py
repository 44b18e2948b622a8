"""What a check leaves as it found it: the user's RNGs, modules, and torch's global settings.

A check calls the code under check many times, and some calls reach the user's own objects: the
point-dimension probe of [`check_encoder`][lpim.testing.check_encoder] calls the encoder itself,
and a plain function, a `functools.partial` or a closure wrapping a module is called as it is
(only an `nn.Module` given directly is copied). Those calls draw random numbers, switch modules
between train and eval mode, move buffers a forward updates and accumulate gradients.
`user_state_kept` snapshots all of that before the first
call and puts it back afterwards, whatever ended the check: a pass, a failure, any exception or
`KeyboardInterrupt`.

It is the one owner of state saving in `lpim.testing`; the checks wrap their whole body in it.
What it walks (`reachable_modules`: the modules a callable holds) it hands to the body, so the
check reads the code's modules from that one walk.
"""

from __future__ import annotations

import contextlib
import functools
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.parameter import is_lazy

__all__ = ["global_rng_restored", "reachable_modules", "user_state_kept"]


def reachable_modules(encoder: object, depth: int = 3) -> Iterator[tuple[str, torch.nn.Module]]:
    """`(path, module)` for each top-level `nn.Module` reachable from `encoder`."""
    seen: set[int] = set()

    def visit(obj: object, path: str, left: int) -> Iterator[tuple[str, torch.nn.Module]]:
        if id(obj) in seen or left < 0:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            yield path, obj
            return
        children: list[tuple[str, object]] = []
        if isinstance(obj, functools.partial):
            children += [(f"{path}.func", obj.func)]
            children += [(f"{path}.args[{i}]", a) for i, a in enumerate(obj.args)]
            children += [(f"{path}.keywords[{k!r}]", v) for k, v in obj.keywords.items()]
        for attribute in ("__self__", "__wrapped__", "__func__"):
            inner = getattr(obj, attribute, None)
            if inner is not None:
                children.append((f"{path}.{attribute}", inner))
        for i, cell in enumerate(getattr(obj, "__closure__", None) or ()):
            try:
                children.append((f"{path}<closure {i}>", cell.cell_contents))
            except ValueError:  # an empty cell
                continue
        attributes = getattr(obj, "__dict__", None)
        if isinstance(attributes, dict) and not isinstance(obj, type):
            children += [(f"{path}.{k}", v) for k, v in attributes.items()]
        if isinstance(obj, list | tuple):
            children += [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
        for child_path, child in children:
            yield from visit(child, child_path, left - 1)

    yield from visit(encoder, "encoder", depth)


@contextlib.contextmanager
def global_rng_restored(device: torch.device) -> Iterator[None]:
    """Restore torch's (CPU and, when checking there, CUDA), Python's and NumPy's global RNG
    states afterwards, whatever the code under check or its copies draw.

    Args:
        device: the device checked; CUDA's generator of that device is saved only when it is
            a CUDA device (saving it initialises CUDA).
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    devices: list[int] = []
    if device.type == "cuda":  # the CPU state is always forked; CUDA's only where checked
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def user_state_kept(
    subject: object, device: torch.device
) -> Iterator[list[tuple[str, torch.nn.Module]]]:
    """Run the body, then put back everything of the user's the body may have changed; the
    body is given the modules reachable from `subject` (`reachable_modules`, walked once: what
    is saved is what the check may read of it).

    Saved on entry, before anything of the user's runs, and restored on exit, however the body
    ends (a pass, a failure, an exception, `KeyboardInterrupt`):

    - Python's `random`, NumPy's and torch's global RNG states (CPU, and CUDA for `device`
      when it is a CUDA device);
    - the `training` flag of every module reachable from `subject` (an `nn.Module`, or one
      inside a `functools.partial`, a closure, a bound method or an attribute: see
      `reachable_modules`) and of each of their submodules;
    - the values, `requires_grad` flags and `.grad` of their parameters and buffers, restored
      in place without autograd tracking: the tensor objects stay the same, so optimisers and
      other references the user holds keep working (a parameter or buffer reassigned, added
      or deleted by a forward is registered as it was; a lazy module that materialised itself
      is left materialised);
    - torch's intra-op thread count, default dtype and grad mode, and the `warnings` filters.

    The cost is one copy of the parameter and buffer values, on their own device and on one
    thread (no module is deep-copied); restoring copies back only the tensors whose value may
    have changed (their in-place version counter moved, or their storage was replaced).
    Measured by `benchmarks/state.py` on a loaded 2-core CPU: the snapshot of
    `lpim.PriorEncoder()` (3.2M parameters) takes about 7 ms, of a 50M-parameter module 40 to
    170 ms; restoring takes under 1 ms when nothing changed.

    Args:
        subject: what the check was given: an encoder or a consumer, a module or any callable.
        device: the device the check runs on.
    """
    snapshot = _Snapshot.take(subject)
    try:
        with global_rng_restored(device), warnings.catch_warnings():
            yield snapshot.held
    finally:
        snapshot.restore()


@dataclass
class _Saved:
    """One parameter or buffer: the tensor, a copy of its values, and what else may change."""

    tensor: torch.Tensor
    values: torch.Tensor
    version: int | None
    storage: int
    requires_grad: bool
    grad: torch.Tensor | None
    grad_values: torch.Tensor | None
    grad_version: int | None
    grad_storage: int


@dataclass
class _Module:
    """One module: its mode, its class and which tensors it registers under which names."""

    module: torch.nn.Module
    training: bool
    cls: type
    parameters: dict[str, torch.nn.Parameter | None]
    buffers: dict[str, torch.Tensor | None]

    def restore(self) -> None:
        module = self.module
        module.training = self.training  # this module only: each submodule has its own entry
        if type(module) is not self.cls:  # a lazy module materialised itself: keep it usable
            return
        _registered_again(module._parameters, self.parameters)
        _registered_again(module._buffers, self.buffers)


def _registered_again(registered: dict[str, Any], saved: dict[str, Any]) -> None:
    """`registered` (a module's `_parameters` or `_buffers`) holding what it held: a tensor
    reassigned, added or deleted in forward is undone."""
    same = registered.keys() == saved.keys() and all(registered[k] is v for k, v in saved.items())
    if not same:
        registered.clear()
        registered.update(saved)


@dataclass
class _Snapshot:
    held: list[tuple[str, torch.nn.Module]]
    modules: list[_Module]
    tensors: list[_Saved]
    threads: int
    default_dtype: torch.dtype
    grad_enabled: bool

    @classmethod
    def take(cls, subject: object) -> _Snapshot:
        threads = torch.get_num_threads()
        modules: list[_Module] = []
        tensors: list[_Saved] = []
        seen: set[int] = set()
        held = list(reachable_modules(subject))
        with _one_thread():
            for _, top in held:
                for module in top.modules():
                    if id(module) in seen:
                        continue
                    seen.add(id(module))
                    parameters, buffers = dict(module._parameters), dict(module._buffers)
                    modules.append(
                        _Module(module, module.training, type(module), parameters, buffers)
                    )
                    for tensor in [*parameters.values(), *buffers.values()]:
                        if tensor is None or id(tensor) in seen or _uninitialized(tensor):
                            continue
                        seen.add(id(tensor))
                        tensors.append(_save(tensor))
        return cls(
            held, modules, tensors, threads, torch.get_default_dtype(), torch.is_grad_enabled()
        )

    def restore(self) -> None:
        torch.set_default_dtype(self.default_dtype)
        torch.set_grad_enabled(self.grad_enabled)
        for module in self.modules:
            module.restore()
        with torch.no_grad(), _one_thread():
            for saved in self.tensors:
                _restore(saved)
        torch.set_num_threads(self.threads)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Copy on one thread: a copy gains little from torch's pool, and the pool collapses when
    another process takes a core (measured on a loaded 2-core machine: `PriorEncoder()`'s
    values took 270 ms with 2 threads, 2 to 15 ms with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _uninitialized(tensor: torch.Tensor) -> bool:
    """A lazy module's parameter before its first call: it has no values to save."""
    return bool(is_lazy(tensor))


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place version counter (None where there is none: an inference tensor)."""
    try:
        return int(tensor._version)
    except Exception:
        return None


def _storage(tensor: torch.Tensor) -> int:
    try:
        return int(tensor.untyped_storage().data_ptr())
    except Exception:
        return 0


def _save(tensor: torch.Tensor) -> _Saved:
    grad = tensor.grad if tensor.is_leaf else None
    return _Saved(
        tensor=tensor,
        values=tensor.detach().clone(),
        version=_version(tensor),
        storage=_storage(tensor),
        requires_grad=tensor.requires_grad,
        grad=grad,
        grad_values=None if grad is None else grad.detach().clone(),
        grad_version=None if grad is None else _version(grad),
        grad_storage=0 if grad is None else _storage(grad),
    )


def _moved(tensor: torch.Tensor, values: torch.Tensor, version: int | None, storage: int) -> bool:
    """Whether `tensor` may no longer hold `values` (a copy taken at `version`)."""
    return (
        version is None
        or _version(tensor) != version
        or _storage(tensor) != storage
        or tensor.shape != values.shape
        or tensor.dtype != values.dtype
        or tensor.device != values.device
    )


def _put_back(tensor: torch.Tensor, values: torch.Tensor) -> None:
    """`values` into `tensor`, in place (the same tensor object), untracked."""
    same_kind = (tensor.shape, tensor.dtype, tensor.device) == (
        values.shape,
        values.dtype,
        values.device,
    )
    if same_kind and not tensor.is_inference():
        tensor.copy_(values)
        return
    tensor.data = values  # reshaped, cast or moved (`.data =`): the saved copy becomes its data


def _restore(saved: _Saved) -> None:
    tensor = saved.tensor
    if _moved(tensor, saved.values, saved.version, saved.storage):
        _put_back(tensor, saved.values)
    if tensor.is_leaf and tensor.requires_grad != saved.requires_grad:
        tensor.requires_grad_(saved.requires_grad)
    if not tensor.is_leaf:
        return
    if saved.grad is None or saved.grad_values is None:
        if tensor.grad is not None:
            tensor.grad = None
        return
    if _moved(saved.grad, saved.grad_values, saved.grad_version, saved.grad_storage):
        _put_back(saved.grad, saved.grad_values)
    if tensor.grad is not saved.grad:
        tensor.grad = saved.grad
