"""The encoder protocol: how any encoder is called, and what its output must look like.

An encoder is a callable `encoder(points [B, M, N, D], point_mask [B, M, N])` (bool, True =
real point) returning either a tensor `[B, M, C]` of lane embeddings or an object with a
`lane_embedding [B, M, C]` attribute and, optionally, `point_features [B, M, N, C]`.

[`Subject`][lpim.testing.Subject] wraps an encoder once for a whole check: it calls it in
eval mode without
touching the caller's module, knows its float64 twin (for the tolerance rule's observed term) and
its scale (for the rule's floors).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

import torch

from lpim._errors import LpimError, UsageTypeError, UsageValueError
from lpim.batch import LaneBatch
from lpim.testing._compare import same_values
from lpim.testing._deadline import (
    HARD_STOP_FACTOR,
    HARD_STOP_FLOOR,
    CallTimedOut,
    HangMemory,
    call_within,
    hard_stop,
)
from lpim.testing._options import CHANNEL_POLARITIES, MASK_CONVENTIONS, mask_channel
from lpim.testing._property_errors import EncoderPropertyError
from lpim.tolerance import Tolerance, encoder_scale, tolerance

__all__ = [
    "POINT_DIM_ATTRIBUTES",
    "POINT_MASK_AS",
    "Adapted",
    "DeadlineExceeded",
    "Encoder",
    "EncoderOutput",
    "NoLaneEmbedding",
    "OutputChoice",
    "ProtocolError",
    "Subject",
    "compute_dtype",
    "foreign_device_tensors",
    "holds_attention",
    "normalise_output",
    "pick_output",
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


POINT_MASK_AS = MASK_CONVENTIONS + tuple(f"{p}[:K]" for p in CHANNEL_POLARITIES)
"""How an encoder takes the mask of its points: `point_mask` (bool `[B, M, N]`, True =
real point: lpim's own), `key_padding_mask` (bool `[B, M, N]`, True = padded slot: MHA's
polarity), `attention_mask` (int64 `[B, M, N]`, 1 = real), `lengths` (int64 `[B, M]`, real
points per lane; right padding only); or inside `points`, as one more channel at index `K`
(default -1, the last) of `[B, M, N, D + 1]`, with no mask argument: `valid_channel:K` (1.0 =
real point, 0.0 = padded slot) or `padded_channel:K` (1.0 = padded slot), the way loaders that
carry validity as a feature write it."""


POINT_DIM_ATTRIBUTES = ("in_dim", "point_dim", "input_dim", "in_channels", "in_features")
"""The attributes an encoder may declare its point dimension `D` in, read in this order (a check
reads `D` from the first that is a positive int; `Adapted` declares lpim's `D` in each)."""


class Adapted(torch.nn.Module):
    """An encoder as it is called, seen through the encoder protocol: no adapter to write.

    `Adapted(encoder, point_mask_as="key_padding_mask", argument_names=("polylines",
    "polylines_mask"), output=0)(points, point_mask)` calls
    `encoder(polylines=points, polylines_mask=~point_mask)[0]`;
    `Adapted(encoder, point_mask_as="valid_channel")(points, point_mask, agent)` calls
    `encoder(cat([points, point_mask as 1.0 / 0.0], -1), agent)`: the mask as the last channel
    of `points [B, M, N, D + 1]`, other inputs passed on. A module is held as a
    submodule, so copies, dtypes, eval mode and the float64 twin work through it. Checks build
    it from their `point_mask_as`, `argument_names` and `output` options, and reproducers
    rebuild it.

    Args:
        encoder: the encoder as the user wrote it.
        point_mask_as: how it takes the mask (`POINT_MASK_AS`): an argument, or a channel
            of `points` (`valid_channel[:K]`, `padded_channel[:K]`; its declared width, such
            as `in_dim`, counts the channel, and `Adapted` declares lpim's `D`).
        argument_names: the names of its two arguments when it takes them by keyword; None:
            positionally.
        output: which part of its output is the lane embedding (an index, a key or an
            attribute; see `pick_output`); None: the protocol's default.
    """

    def __init__(
        self,
        encoder: Any,
        point_mask_as: str = "point_mask",
        argument_names: tuple[str, str] | None = None,
        output: OutputChoice = None,
    ) -> None:
        super().__init__()
        self.inner = encoder  # a submodule when it is one
        self.point_mask_as = point_mask_as
        for width in POINT_DIM_ATTRIBUTES:
            declared = getattr(encoder, width, None)
            if isinstance(declared, int) and not isinstance(declared, bool):
                setattr(self, width, declared - self.extra_channels)  # lpim's D
        self.argument_names = argument_names
        self.output = output

    @property
    def extra_channels(self) -> int:
        """Channels the encoder's points have beyond lpim's `D`: 1 with a validity channel."""
        return 0 if mask_channel(self.point_mask_as) is None else 1

    def forward(
        self, points: torch.Tensor, point_mask: torch.Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        """`encoder` called as it expects (other inputs passed on after the mask); the part
        of its output `output` names."""
        channel = mask_channel(self.point_mask_as)
        if channel is not None:
            polarity, index = channel
            flag = point_mask if polarity == "valid_channel" else ~point_mask
            found = self.inner(_with_channel(points, flag, index), *args, **kwargs)
            return found if self.output is None else pick_output(found, self.output)
        mask: torch.Tensor = {
            "point_mask": lambda: point_mask,
            "key_padding_mask": lambda: ~point_mask,  # True = padded slot
            "attention_mask": lambda: point_mask.long(),  # 1 = real
            "lengths": lambda: point_mask.sum(-1),  # [B, M]
        }[self.point_mask_as]()
        if self.argument_names is None:
            found = self.inner(points, mask, *args, **kwargs)
        else:
            if args:
                raise UsageTypeError(
                    f"argument_names={self.argument_names!r} passes the inputs by keyword, so "
                    f"the other inputs must be keywords too: other_inputs drew a tuple of "
                    f"{len(args)}; draw a dict of them"
                )
            named = {self.argument_names[0]: points, self.argument_names[1]: mask}
            found = self.inner(**named, **kwargs)
        return found if self.output is None else pick_output(found, self.output)

    def arguments(self) -> str:
        """The keyword arguments that rebuild it, as source (for reproducers)."""
        given = {
            "point_mask_as": (self.point_mask_as, "point_mask"),
            "argument_names": (self.argument_names, None),
            "output": (self.output, None),
        }
        return ", ".join(f"{k}={v!r}" for k, (v, default) in given.items() if v != default)


def _with_channel(points: torch.Tensor, flag: torch.Tensor, index: int) -> torch.Tensor:
    """`points [B, M, N, D]` with `flag [B, M, N]` (1.0 / 0.0) inserted as channel `index` of
    the `D + 1` -> `[B, M, N, D + 1]`."""
    width = points.shape[-1] + 1
    if not -width <= index < width:
        raise UsageValueError(
            f"point_mask_as: channel {index} is outside the encoder's {width} channels (D = "
            f"{points.shape[-1]} coordinates and the validity channel); use -{width}..{width - 1}"
        )
    at = index % width
    column = flag[..., None].to(points.dtype)  # [B, M, N, 1]
    return torch.cat([points[..., :at], column, points[..., at:]], dim=-1)


class ProtocolError(LpimError, TypeError):
    """The encoder returned something the protocol does not allow (type, shape, dtype, device)."""


class NoLaneEmbedding(ProtocolError):
    """No part of what the encoder returned can be taken as its lane embedding (or the part
    `output=` names is not there): how to call it is the user's to say, so a check refuses it
    as a usage error before drawing anything."""


OutputChoice = int | str | None
"""Which part of an encoder's output is the lane embedding: an index (tuple, list), a key
(dict) or an attribute (NamedTuple, dataclass, any object); None: the protocol's default."""


def _parts(output: object) -> list[tuple[int | str, object]] | None:
    """The parts of a container output, labelled by how `output=` names them (None: not one)."""
    if isinstance(output, dict):
        return list(output.items())
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [(f.name, getattr(output, f.name)) for f in dataclasses.fields(output)]
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # a NamedTuple
        return list(zip(output._fields, output, strict=True))
    if isinstance(output, tuple | list):
        return list(enumerate(output))
    return None


def _described(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    return type(value).__name__


def pick_output(output: object, choice: int | str) -> object:
    """The part of `output` that `choice` names: an index, a key or an attribute.

    Raises:
        NoLaneEmbedding: `choice` names no part (every part that came is listed).
    """
    parts = _parts(output)
    if parts is not None:
        for label, value in parts:
            if label == choice:
                return value
    if isinstance(choice, str) and not isinstance(output, dict) and hasattr(output, choice):
        return getattr(output, choice)
    came = (
        ", ".join(f"{label!r}: {_described(v)}" for label, v in parts)
        if parts is not None
        else _described(output)
    )
    raise NoLaneEmbedding(
        f"output={choice!r} names no part of what the encoder returned: a "
        f"{type(output).__name__} of {came}"
    )


def normalise_output(output: object, batch: LaneBatch) -> EncoderOutput:
    """Read `output` as the protocol says, checking shapes against `batch`.

    The lane embedding is, in order: the output itself when it is a tensor; its
    `.lane_embedding` (with `.point_features`, if any); else the one tensor of shape
    `[B, M, C]` among the parts of a tuple, list, dict, NamedTuple or dataclass (`Adapted`
    picks another part).

    Raises:
        ProtocolError: naming what was expected and what came (every part, for a container).
    """
    b, m, n, _ = batch.shape
    point_features = None
    if isinstance(output, torch.Tensor):
        lane_embedding = output
    elif hasattr(output, "lane_embedding"):
        lane_embedding = output.lane_embedding
        point_features = getattr(output, "point_features", None)
    elif (parts := _parts(output)) is not None:
        lanes = [
            (label, value)
            for label, value in parts
            if isinstance(value, torch.Tensor)
            and value.dim() == 3
            and tuple(value.shape[:2]) == (b, m)
            and value.is_floating_point()
        ]
        if len(lanes) != 1:
            came = ", ".join(f"{label!r}: {_described(v)}" for label, v in parts)
            which = (
                "none" if not lanes else f"{len(lanes)} ({', '.join(repr(k) for k, _ in lanes)})"
            )
            raise NoLaneEmbedding(
                f"the encoder returned a {type(output).__name__} of {came}, and {which} of them "
                f"is a lane embedding [B, M, C] = ({b}, {m}, C): name the one to check with the "
                "output option"
            )
        lane_embedding = lanes[0][1]
    else:
        raise NoLaneEmbedding(
            "the encoder must return a tensor [B, M, C], an object with .lane_embedding "
            "[B, M, C] (and optionally .point_features [B, M, N, C]), or a tuple, list, dict, "
            f"NamedTuple or dataclass holding one; got {type(output).__name__}"
        )
    _check_tensor(lane_embedding, "lane_embedding", (b, m), batch)
    if point_features is not None:
        _check_tensor(point_features, "point_features", (b, m, n), batch)
    assert isinstance(lane_embedding, torch.Tensor)  # checked just above
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
    hangs: HangMemory = field(default_factory=HangMemory)
    """Whether the encoder hung (a call stopped twice in a row): then every later call raises
    `DeadlineExceeded` at once. A subject has its own; a check may give several subjects one
    (`subject.hangs = shared`) to stop calling the encoder anywhere after one hang."""

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
        [`deadline`][lpim.testing._protocol.Subject.deadline], every call is timed and stopped
        after `lpim.testing._deadline.hard_stop(deadline)` seconds (`call_within`); a call over
        the deadline (or stopped) is made once more on the same batch, and `DeadlineExceeded`
        is raised if that one is over it too. A call stopped twice in a row is remembered in
        [`hangs`][lpim.testing._protocol.Subject.hangs]: every later call raises
        `DeadlineExceeded` at once, without calling the encoder.
        """
        batch = batch.to(device=self.device, dtype=self.dtype)
        if self.deadline is None:
            output, _ = self._timed_call(batch, None)
            return normalise_output(output, batch)
        if isinstance(earlier := self.hangs.error, DeadlineExceeded):
            raise DeadlineExceeded(
                earlier.took,
                earlier.again,
                self.deadline,
                earlier.batch,  # the batch it hung on, for the reproducer
                stop=earlier.stop,
                stopped=earlier.stopped,
                earlier=str(earlier),
            )
        stop = hard_stop(self.deadline)
        output, took = self._timed_call(batch, stop)
        if took > self.deadline:
            if isinstance(output, CallTimedOut) and not output.join(stop):
                # abandoned in a worker and still running: calling it again would run two at once
                self._hung(
                    DeadlineExceeded(
                        took, None, self.deadline, batch, stop=stop, stopped=(True, False)
                    )
                )
            first = output
            output, again = self._timed_call(batch, stop)  # a first call on a new shape is slow
            if again > self.deadline:
                error = DeadlineExceeded(
                    took,
                    again,
                    self.deadline,
                    batch,
                    stop=stop,
                    stopped=(isinstance(first, CallTimedOut), isinstance(output, CallTimedOut)),
                )
                if isinstance(output, CallTimedOut):
                    self._hung(error)
                raise error
        return normalise_output(output, batch)

    def _hung(self, error: DeadlineExceeded) -> NoReturn:
        self.hangs.remember(error)
        raise error

    def _timed_call(self, batch: LaneBatch, stop: float | None) -> tuple[object, float]:
        """The encoder's output and the seconds it took; with `stop`, the call is stopped
        after that many seconds and the `CallTimedOut` is returned in place of the output."""
        points, point_mask = batch.points.clone(), batch.point_mask.clone()
        started = time.perf_counter()
        output: object
        args, kwargs = batch.args, batch.kwargs  # the samples' other inputs (often none)
        if stop is None:
            output = self.encoder(points, point_mask, *args, **kwargs)
        else:
            try:
                output = call_within(stop, self.encoder, points, point_mask, *args, **kwargs)
            except CallTimedOut as stopped:
                return stopped, time.perf_counter() - started
        took = time.perf_counter() - started
        _check_unchanged(batch, points, point_mask)
        return output, took

    @property
    def twin(self) -> Encoder | None:
        """A float64 copy of the encoder, or None: not a module, already float64 (and not
        under autocast), or it cannot be copied to float64
        ([`reference_note`][lpim.testing._protocol.Subject.reference_note] says why)."""
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
        [`reference_note`][lpim.testing._protocol.Subject.reference_note] says why."""
        twin = self.twin
        if twin is None:
            return None
        batch = batch.to(device=self.device, dtype=torch.float64)
        try:
            with torch.autocast(self.device.type, enabled=False):
                if self.deadline is None:
                    output = batch.call(twin)
                else:  # the same hard stop as the encoder's own calls; best effort too
                    output = call_within(hard_stop(self.deadline), batch.call, twin)
                return normalise_output(output, batch)
        except (Exception, CallTimedOut) as error:
            self.reference_note = _no_reference(error)
            return None

    def tolerance(self, batch: LaneBatch) -> Tolerance:
        """The tolerance rule for this encoder and the dtype it computes in (the autocast
        dtype under `torch.autocast`; see `lpim.tolerance`)."""
        _, _, n, _ = batch.shape
        k, depth = encoder_scale(self.encoder, fallback_length=n + 1)
        return tolerance(compute_dtype(self.dtype, self.device), k, depth)


def _no_reference(error: BaseException) -> str:
    first = str(error).splitlines()[0] if str(error) else ""
    return (
        f"no float64 reference ({type(error).__name__}: {first[:80]}): the tolerance rule's "
        "floors alone apply"
    )


class DeadlineExceeded(BaseException):
    """One call of the encoder took longer than the check's deadline, twice in a row (or did
    not return and was stopped).

    A `BaseException` so that Hypothesis does not shrink or replay it (timing is not a
    function of the input, and every replay would be slow):
    [`check_encoder`][lpim.testing.check_encoder]
    catches it and reports property `deadline` with the times taken.

    Attributes:
        took: seconds of the first call (until it was stopped, if it was).
        again: seconds of the second call on the same batch (until it was stopped, if it
            was); None when the encoder was not called again (its first call was still
            running in an abandoned worker thread, or it had hung before).
        deadline: the limit, in seconds.
        batch: the batch.
        stop: seconds after which a call was stopped
            (`lpim.testing._deadline.hard_stop(deadline)`), or None.
        stopped: whether the first and the second call were stopped.
        earlier: when the encoder hung on an earlier call and was not called this time, what
            was said then (`""` otherwise); `batch` is then the batch it hung on.
    """

    def __init__(
        self,
        took: float,
        again: float | None,
        deadline: float,
        batch: LaneBatch,
        *,
        stop: float | None = None,
        stopped: tuple[bool, bool] | None = None,
        earlier: str = "",
    ) -> None:
        self.took, self.again, self.deadline, self.batch = took, again, deadline, batch
        self.stop, self.earlier = stop, earlier
        self.stopped = stopped if stopped is not None else (False, False)
        super().__init__(self._message())

    @property
    def hung(self) -> bool:
        """True when a call did not return and was stopped (now or on an earlier call)."""
        return bool(self.earlier) or any(self.stopped)

    def _message(self) -> str:
        limit = f"the deadline is {self.deadline:.3g} s per call"
        if self.earlier:
            return (
                f"{self.earlier} (on an earlier call of this check, on this batch; the encoder "
                "is not called again in this check)"
            )
        stop = self.stop if self.stop is not None else float("nan")
        if not any(self.stopped):
            return (
                f"one call of the encoder took {self.took:.3g} s, and {self.again:.3g} s when "
                f"timed again on the same batch; {limit}"
            )
        if self.again is None:
            times = (
                f"one call of the encoder did not return within {stop:.3g} s and was stopped, "
                f"and was still running in its worker thread {stop:.3g} s later, so it was not "
                "called again"
            )
        elif all(self.stopped):
            times = (
                f"one call of the encoder did not return within {stop:.3g} s and was stopped, "
                "and again when called once more on the same batch"
            )
        elif self.stopped[0]:
            times = (
                f"one call of the encoder did not return within {stop:.3g} s and was stopped, "
                f"and took {self.again:.3g} s when timed again on the same batch"
            )
        else:
            times = (
                f"one call of the encoder took {self.took:.3g} s, and did not return within "
                f"{stop:.3g} s when called again on the same batch and was stopped"
            )
        return (
            f"{times}; {limit}, and a call is stopped after max({HARD_STOP_FACTOR:g} x deadline, "
            f"{HARD_STOP_FLOOR:g} s) = {stop:.3g} s: it hangs (an endless loop, a wait that "
            "never ends) or is far too slow"
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


def holds_attention(subject: object) -> bool:
    """Whether `subject` holds an attention module (`nn.MultiheadAttention` or a Transformer
    layer) anywhere in the modules reachable from it."""
    kinds = (
        torch.nn.MultiheadAttention,
        torch.nn.TransformerEncoderLayer,
        torch.nn.TransformerDecoderLayer,
    )
    return any(
        isinstance(sub, kinds)
        for _, module in reachable_modules(subject)
        for sub in module.modules()
    )


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
