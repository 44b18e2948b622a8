"""The encoder protocol: how any encoder is called, and what its output must look like.

An encoder is a callable ``encoder(points [B, M, N, D], point_mask [B, M, N])`` (bool, True =
real point) returning either a tensor ``[B, M, C]`` of lane embeddings or an object with a
``lane_embedding [B, M, C]`` attribute and, optionally, ``point_features [B, M, N, C]``.

:class:`Subject` wraps an encoder once for a whole check: it calls it in eval mode without
touching the caller's module, knows its float64 twin (for the tolerance rule's observed term) and
its scale (for the rule's floors).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from lpim.batch import LaneBatch
from lpim.tolerance import Tolerance, encoder_scale, tolerance

Encoder = Callable[[torch.Tensor, torch.Tensor], Any]
"""Anything callable as ``encoder(points, point_mask)``: see the module docstring."""


class EncoderOutput(NamedTuple):
    """An encoder's output in one shape, whatever it returned.

    Attributes:
        lane_embedding: ``[B, M, C]``.
        point_features: ``[B, M, N, C']`` or None when the encoder gives none.
    """

    lane_embedding: torch.Tensor
    point_features: torch.Tensor | None


class ProtocolError(TypeError):
    """The encoder returned something the protocol does not allow (type, shape, dtype, device)."""


def normalise_output(output: object, batch: LaneBatch) -> EncoderOutput:
    """Read ``output`` as the protocol says, checking shapes against ``batch``.

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
    if value.device != batch.points.device:
        raise ProtocolError(
            f"{name} must be on the input's device {batch.points.device}; got {value.device}"
        )


@dataclass
class Subject:
    """One encoder under check, at one dtype.

    Args:
        encoder: the encoder (an ``nn.Module`` is copied and put in eval mode; the caller's
            module is never modified).
        dtype: the dtype points are given in (and, for modules, the parameters' dtype).
        device: where it runs.
    """

    encoder: Encoder
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, encoder: Encoder | Subject, batch: LaneBatch) -> Subject:
        """Wrap ``encoder`` as given (no copy: the caller put it in eval mode) for ``batch``'s
        dtype and device; a Subject is returned as it is."""
        if isinstance(encoder, Subject):
            return encoder
        return cls(encoder, batch.points.dtype, batch.points.device)

    @classmethod
    def prepare(cls, encoder: Encoder, dtype: torch.dtype, device: torch.device) -> Subject:
        """A Subject on a copy of ``encoder`` in eval mode at ``dtype`` on ``device`` (modules
        only; other callables are used as they are). The caller's module is never touched."""
        return cls(_prepared(encoder, dtype, device), dtype, device)

    def __call__(self, batch: LaneBatch) -> EncoderOutput:
        """Run the encoder on ``batch`` (converted to this subject's dtype and device)."""
        batch = batch.to(device=self.device, dtype=self.dtype)
        return normalise_output(self.encoder(batch.points, batch.point_mask), batch)

    @property
    def twin(self) -> Encoder | None:
        """A float64 copy of the encoder, or None (not a module, or already float64)."""
        if isinstance(self.encoder, torch.nn.Module) and self.dtype != torch.float64:
            return _float64_twin(self.encoder)
        return None

    def reference64(self, batch: LaneBatch) -> EncoderOutput | None:
        """The float64 twin's output on ``batch``, or None when there is no twin."""
        twin = self.twin
        if twin is None:
            return None
        batch = batch.to(device=self.device, dtype=torch.float64)
        return normalise_output(twin(batch.points, batch.point_mask), batch)

    def tolerance(self, batch: LaneBatch) -> Tolerance:
        """The tolerance rule for this encoder and dtype (see :mod:`lpim.tolerance`)."""
        _, _, n, _ = batch.shape
        k, depth = encoder_scale(self.encoder, fallback_length=n + 1)
        return tolerance(self.dtype, k, depth)


_TWINS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[int, ...], torch.nn.Module]] = (
    weakref.WeakKeyDictionary()
)


def _float64_twin(module: torch.nn.Module) -> torch.nn.Module:
    """A float64 eval copy of ``module``, cached until any of its tensors changes in place
    (``_version`` counts in-place writes), so a ``@given`` loop copies it once, not per example."""
    versions = tuple(t._version for t in [*module.parameters(), *module.buffers()])
    cached = _TWINS.get(module)
    if cached is not None and cached[0] == versions:
        return cached[1]
    twin = copy.deepcopy(module).to(torch.float64).eval()
    _TWINS[module] = (versions, twin)
    return twin


def _prepared(encoder: Encoder, dtype: torch.dtype, device: torch.device) -> Encoder:
    """A copy of a module in eval mode at ``dtype`` on ``device``; other callables as they are."""
    if not isinstance(encoder, torch.nn.Module):
        return encoder
    module = copy.deepcopy(encoder).to(device=device, dtype=dtype)
    return module.eval()
