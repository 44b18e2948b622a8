"""The encoder protocol: how any encoder is called, and what its output must look like.

An encoder is a callable `encoder(points [B, M, N, D], point_mask [B, M, N])` (bool, True =
real point) returning either a tensor `[B, M, C]` of lane embeddings or an object with a
`lane_embedding [B, M, C]` attribute and, optionally, `point_features [B, M, N, C]`.

[`Subject`][lpim.testing.protocol.Subject] wraps an encoder once for a whole check: it calls it in
eval mode without
touching the caller's module, knows its float64 twin (for the tolerance rule's observed term) and
its scale (for the rule's floors).
"""

from __future__ import annotations

import copy
import functools
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from lpim._errors import LpimError
from lpim.batch import LaneBatch
from lpim.testing.compare import same_values
from lpim.testing.errors import EncoderPropertyError
from lpim.tolerance import Tolerance, encoder_scale, tolerance

__all__ = [
    "DeadlineExceeded",
    "Encoder",
    "EncoderOutput",
    "ProtocolError",
    "Subject",
    "compute_dtype",
    "foreign_device_tensors",
    "normalise_output",
    "reachable_modules",
    "same_device",
    "training_modules",
]

Encoder = Callable[[torch.Tensor, torch.Tensor], Any]
"""Anything callable as `encoder(points, point_mask)`: see the module docstring."""


class EncoderOutput(NamedTuple):
    """An encoder's output in one shape, whatever it returned.

    Attributes:
        lane_embedding: `[B, M, C]`.
        point_features: `[B, M, N, C']` or None when the encoder gives none.
    """

    lane_embedding: torch.Tensor
    point_features: torch.Tensor | None


class ProtocolError(LpimError, TypeError):
    """The encoder returned something the protocol does not allow (type, shape, dtype, device)."""


def normalise_output(output: object, batch: LaneBatch) -> EncoderOutput:
    """Read `output` as the protocol says, checking shapes against `batch`.

    Raises:
        ProtocolError: naming what was expected and what came.
    """
    b, m, n, _ = batch.shape
    if isinstance(output, torch.Tensor):
        lane_embedding, point_features = output, None
    elif hasattr(output, "lane_embedding"):
        lane_embedding = output.lane_embedding
        point_features = getattr(output, "point_features", None)
    else:
        raise ProtocolError(
            "the encoder must return a tensor [B, M, C] or an object with .lane_embedding "
            f"[B, M, C] (and optionally .point_features [B, M, N, C]); got {type(output).__name__}"
        )
    _check_tensor(lane_embedding, "lane_embedding", (b, m), batch)
    if point_features is not None:
        _check_tensor(point_features, "point_features", (b, m, n), batch)
    return EncoderOutput(lane_embedding, point_features)


def _check_tensor(value: object, name: str, lead: tuple[int, ...], batch: LaneBatch) -> None:
    expected = f"[{', '.join(['B', 'M', 'N'][: len(lead)])}, C] = ({', '.join(map(str, lead))}, C)"
    if not isinstance(value, torch.Tensor):
        raise ProtocolError(f"{name} must be a tensor {expected}; got {type(value).__name__}")
    if value.dim() != len(lead) + 1 or tuple(value.shape[: len(lead)]) != lead:
        raise ProtocolError(f"{name} must have shape {expected}; got {tuple(value.shape)}")
    if not value.is_floating_point():
        raise ProtocolError(f"{name} must be floating; got {value.dtype}")
    allowed = {batch.points.dtype, compute_dtype(batch.points.dtype, batch.points.device)}
    if value.dtype not in allowed:
        expected = " or ".join(sorted(str(d) for d in allowed))
        raise ProtocolError(f"{name} must have the points' dtype {expected}; got {value.dtype}")
    if value.device != batch.points.device:
        raise ProtocolError(
            f"{name} must be on the input's device {batch.points.device}; got {value.device}"
        )


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype code computes in on float data of `dtype` on `device`: the autocast dtype
    where `torch.autocast` is on for the device's type and `dtype` is float32, else
    `dtype` itself."""
    if dtype == torch.float32 and torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


@dataclass
class Subject:
    """One encoder under check, at one dtype.

    Args:
        encoder: the encoder (an `nn.Module` is copied and put in eval mode; the caller's
            module is never modified).
        dtype: the dtype points are given in (and, for modules, the parameters' dtype).
        device: where it runs.
    """

    encoder: Encoder
    dtype: torch.dtype
    device: torch.device
    deadline: float | None = None
    """Seconds one call may take (`check_encoder(deadline=...)`); None for no limit."""
    reference_note: str = ""
    """Why there is no float64 reference ('' while there is one, or none is needed)."""

    @classmethod
    def of(cls, encoder: Encoder | Subject, batch: LaneBatch) -> Subject:
        """Wrap `encoder` as given (no copy: the caller put it in eval mode) for `batch`'s
        dtype and device; a Subject is returned as it is."""
        if isinstance(encoder, Subject):
            return encoder
        return cls(encoder, batch.points.dtype, batch.points.device)

    @classmethod
    def prepare(cls, encoder: Encoder, dtype: torch.dtype, device: torch.device) -> Subject:
        """A Subject on a copy of `encoder` in eval mode at `dtype` on `device` (modules
        only; other callables are used as they are). The caller's module is never touched."""
        return cls(_prepared(encoder, dtype, device), dtype, device)

    def __call__(self, batch: LaneBatch) -> EncoderOutput:
        """Run the encoder on `batch` (converted to this subject's dtype and device).

        The encoder gets copies of `points` and `point_mask`; after the call the copies
        must still equal the batch (an encoder that writes into its inputs breaks property
        `inputs_unchanged`, and the caller's tensors are never touched). With a
        [`deadline`][lpim.testing.protocol.Subject.deadline], a call that takes longer is timed once
        more, and raises
        `DeadlineExceeded` if it is slow again.
        """
        batch = batch.to(device=self.device, dtype=self.dtype)
        output, took = self._timed_call(batch)
        if self.deadline is not None and took > self.deadline:
            _, again = self._timed_call(batch)  # the first call on a new shape is often slow
            if again > self.deadline:
                raise DeadlineExceeded(took, again, self.deadline, batch)
        return normalise_output(output, batch)

    def _timed_call(self, batch: LaneBatch) -> tuple[object, float]:
        points, point_mask = batch.points.clone(), batch.point_mask.clone()
        started = time.perf_counter()
        output = self.encoder(points, point_mask)
        took = time.perf_counter() - started
        _check_unchanged(batch, points, point_mask)
        return output, took

    @property
    def twin(self) -> Encoder | None:
        """A float64 copy of the encoder, or None: not a module, already float64 (and not
        under autocast), or it cannot be copied to float64
        ([`reference_note`][lpim.testing.protocol.Subject.reference_note] says why)."""
        if not isinstance(self.encoder, torch.nn.Module) or self.reference_note:
            return None
        if self.dtype == torch.float64 and not torch.is_autocast_enabled(self.device.type):
            return None
        try:
            return _float64_twin(self.encoder)
        except Exception as error:  # best effort: the rule's floors still apply without it
            self.reference_note = _no_reference(error)
            return None

    def reference64(self, batch: LaneBatch) -> EncoderOutput | None:
        """The float64 twin's output on `batch` (autocast off), or None when there is no
        twin or it cannot run (the encoder computes in float32 whatever it is given, say):
        the tolerance rule's floors alone then apply, and
        [`reference_note`][lpim.testing.protocol.Subject.reference_note] says why."""
        twin = self.twin
        if twin is None:
            return None
        batch = batch.to(device=self.device, dtype=torch.float64)
        try:
            with torch.autocast(self.device.type, enabled=False):
                return normalise_output(twin(batch.points, batch.point_mask), batch)
        except Exception as error:
            self.reference_note = _no_reference(error)
            return None

    def tolerance(self, batch: LaneBatch) -> Tolerance:
        """The tolerance rule for this encoder and the dtype it computes in (the autocast
        dtype under `torch.autocast`; see `lpim.tolerance`)."""
        _, _, n, _ = batch.shape
        k, depth = encoder_scale(self.encoder, fallback_length=n + 1)
        return tolerance(compute_dtype(self.dtype, self.device), k, depth)


def _no_reference(error: Exception) -> str:
    first = str(error).splitlines()[0] if str(error) else ""
    return (
        f"no float64 reference ({type(error).__name__}: {first[:80]}): the tolerance rule's "
        "floors alone apply"
    )


class DeadlineExceeded(BaseException):
    """One call of the encoder took longer than the check's deadline, twice in a row.

    A `BaseException` so that Hypothesis does not shrink or replay it (timing is not a
    function of the input, and every replay would be slow):
    [`check_encoder`][lpim.testing.check_encoder]
    catches it and reports property `deadline` with the times taken.

    Attributes:
        took: seconds of the first call.
        again: seconds of the second call on the same batch.
        deadline: the limit, in seconds.
        batch: the batch.
    """

    def __init__(self, took: float, again: float, deadline: float, batch: LaneBatch) -> None:
        self.took, self.again, self.deadline, self.batch = took, again, deadline, batch
        super().__init__(
            f"one call of the encoder took {took:.3g} s, and {again:.3g} s when timed again on "
            f"the same batch; the deadline is {deadline:.3g} s per call"
        )


def _check_unchanged(batch: LaneBatch, points: torch.Tensor, point_mask: torch.Tensor) -> None:
    """Raise property `inputs_unchanged` if the encoder wrote into the copies it was given."""
    changed = [
        name
        for name, given, original in (
            ("points", points, batch.points),
            ("point_mask", point_mask, batch.point_mask),
        )
        if not same_values(given, original)
    ]
    if changed:
        raise EncoderPropertyError(
            "inputs_unchanged",
            f"the encoder modified {' and '.join(changed)} in place (the checker hands it "
            "copies, so the caller's tensors are intact; a caller reusing its batch would not "
            "be): use out-of-place ops (x = x * 2, not x.mul_(2); torch.where, not "
            "masked_fill_)",
            batch,
        )


def training_modules(encoder: object) -> list[str]:
    """Modules in training mode that `encoder` holds, as `"path (Type)"`.

    Looks inside an `nn.Module` and, for any other callable, one or two levels into what it
    wraps: a bound method's object, `functools.partial` arguments, closure cells, an
    instance's attributes. Used to say "call .eval()" when two identical calls differ.
    """
    found: list[str] = []
    for path, module in reachable_modules(encoder):
        for name, sub in module.named_modules():
            if sub.training and (
                isinstance(sub, torch.nn.modules.dropout._DropoutNd) and sub.p > 0
            ):
                where = f"{path}.{name}" if name else path
                found.append(f"{where} ({type(sub).__name__}, p={sub.p})")
        if not found and module.training:
            found.append(f"{path} ({type(module).__name__})")
    return found


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


def foreign_device_tensors(encoder: object, device: torch.device) -> list[str]:
    """Parameters, buffers and plain tensor attributes reachable from `encoder` that are not
    on `device`, as `"path: device"` (the first few)."""
    found: list[str] = []
    for path, module in reachable_modules(encoder):
        named = [*module.named_parameters(), *module.named_buffers()]
        for sub_name, sub in module.named_modules():
            named += [
                (f"{sub_name}.{k}" if sub_name else k, v)
                for k, v in vars(sub).items()
                if isinstance(v, torch.Tensor)
            ]
        for name, tensor in named:
            if not same_device(tensor.device, device):
                found.append(f"{path}.{name} on {tensor.device}")
    return found[:4]


_TWINS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[int, ...], torch.nn.Module]] = (
    weakref.WeakKeyDictionary()
)


def _float64_twin(module: torch.nn.Module) -> torch.nn.Module:
    """A float64 eval copy of `module`, cached until any of its tensors changes in place
    (`_version` counts in-place writes), so a `@given` loop copies it once, not per example."""
    versions = tuple(t._version for t in [*module.parameters(), *module.buffers()])
    cached = _TWINS.get(module)
    if cached is not None and cached[0] == versions:
        return cached[1]
    twin = copy.deepcopy(module).to(torch.float64).eval()
    _TWINS[module] = (versions, twin)
    return twin


def _prepared(encoder: Encoder, dtype: torch.dtype, device: torch.device) -> Encoder:
    """A copy of a module in eval mode at `dtype` on `device`; other callables as they are."""
    if not isinstance(encoder, torch.nn.Module):
        return encoder
    module = copy.deepcopy(encoder).to(device=device, dtype=dtype)
    return module.eval()


def same_device(a: torch.device, b: torch.device) -> bool:
    """`cuda` and `cuda:0` (the current device) are the same place."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        return True
    return a.index == b.index
