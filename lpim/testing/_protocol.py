"""The encoder protocol: how any encoder is called, and what its output must look like.

An encoder is a callable `encoder(points [B, M, N, D], point_mask [B, M, N])` (bool, True =
real point) returning either a tensor `[B, M, C]` of lane embeddings or an object with a
`lane_embedding [B, M, C]` attribute and, optionally, `point_features [B, M, N, C]`.

[`Subject`][lpim.testing.Subject] wraps an encoder once for a whole check: it calls it in
eval mode without
touching the caller's module, knows its float64 twin (for the tolerance rule's observed term) and
its scale (for the rule's floors).

Everything a check does with the code under check lives here too, so that the code goes down
and never back: the engine (`lpim.testing._engine`) builds one `EncoderUnderCheck` or
`ConsumerUnderCheck` (base `UnderCheck`) once the user's state is saved, and the checks
(`lpim.testing._encoder_check`, `lpim.testing._consumer_check`) reach the code only through it.
It knows the code as it is called (through `Adapted` when the options say how it takes its
inputs) and its name; its widths (an encoder's point dimension `D`, declared, else read off its
layers and confirmed by a probe call; a consumer's embedding width `C`); its device; its copies
at a dtype (`Subject`s, one hang memory for all); the batches made outside the rows; the first
call that checks an encoder's output, and the dtype probe (the experiment's verdict is
`lpim.testing._dtype_probe`'s). The property code it needs (the reproducer, the lanes-alone
experiment, how a consumer is run) is built on this module, so the side passes it in.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

import torch
from hypothesis import HealthCheck, Phase, find
from hypothesis import settings as Settings
from hypothesis import strategies as st

from lpim._errors import LpimError, UsageTypeError, UsageValueError
from lpim._property_registry import PROPERTIES
from lpim.batch import LaneBatch
from lpim.lane_set import LaneSet
from lpim.strategies import OtherInputs, with_other_inputs
from lpim.testing._compare import same_values
from lpim.testing._deadline import (
    HARD_STOP_FACTOR,
    HARD_STOP_FLOOR,
    CallTimedOut,
    HangMemory,
    call_within,
    hard_stop,
)
from lpim.testing._dispatch import calls_attention, count_dispatch
from lpim.testing._driver import Driver
from lpim.testing._dtype_probe import dtype_unsupported, runs_at_float32
from lpim.testing._options import (
    CHANNEL_POLARITIES,
    MASK_CONVENTIONS,
    CheckOptions,
    mask_channel,
)
from lpim.testing._property_errors import EncoderPropertyError, PropertyError
from lpim.testing._report import PropertyResult
from lpim.testing._state import reachable_modules
from lpim.tolerance import Tolerance, encoder_scale, tolerance

__all__ = [
    "POINT_DIM_ATTRIBUTES",
    "POINT_MASK_AS",
    "Adapted",
    "Consumer",
    "ConsumerUnderCheck",
    "DeadlineExceeded",
    "Encoder",
    "EncoderOutput",
    "EncoderUnderCheck",
    "LanesTrouble",
    "NoLaneEmbedding",
    "OutputChoice",
    "ProtocolError",
    "Reproducer",
    "RunConsumer",
    "Subject",
    "UnderCheck",
    "check_other_inputs",
    "compute_dtype",
    "declared_width",
    "foreign_device_tensors",
    "holds_attention",
    "normalise_output",
    "pick_output",
    "probe_batch",
    "same_device",
    "subject_name",
    "training_modules",
    "unknown_width",
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


def holds_attention(modules: Iterable[tuple[str, torch.nn.Module]]) -> bool:
    """Whether `modules` (`(path, module)`, as `lpim.testing._state.reachable_modules` gives
    them) hold an attention module (`nn.MultiheadAttention` or a Transformer layer)."""
    kinds = (
        torch.nn.MultiheadAttention,
        torch.nn.TransformerEncoderLayer,
        torch.nn.TransformerDecoderLayer,
    )
    return any(isinstance(sub, kinds) for _, module in modules for sub in module.modules())


def foreign_device_tensors(
    modules: Iterable[tuple[str, torch.nn.Module]], device: torch.device
) -> list[str]:
    """Parameters, buffers and plain tensor attributes of `modules` (`(path, module)`, as
    `lpim.testing._state.reachable_modules` gives them) that are not on `device`, as
    `"path: device"` (the first few)."""
    found: list[str] = []
    for path, module in modules:
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


# -- The code under check, for a whole check ---------------------------------------------------

Consumer = Callable[..., Any]
"""Anything callable as `consumer(lane_embedding, lane_mask, *args, **kwargs)`."""

Reproducer = Callable[..., str]
"""`lpim.testing._reproducer.reproducer`: `(example, assert_name, failed, code, factory,
**how) -> source`, passed in by a side (the reproducer module is built on this one)."""

LanesTrouble = Callable[[Subject, LaneBatch], str]
"""`lpim.testing._encoder_properties.lanes_alone_trouble`: what the example's real lanes,
alone and unpadded, show (a crash, a NaN or inf value or gradient; '' for none), passed in by
the encoder's side for the dtype probe."""

RunConsumer = Callable[[Consumer, LaneSet], Any]
"""`lpim.testing._consumer_properties.run_consumer`, passed in by the consumer's side for the
dtype probe."""


def subject_name(encoder: object) -> str:
    """What is checked, as `module.Class` (a report's first line, the database key)."""
    cls = type(encoder)
    return f"{cls.__module__}.{cls.__qualname__}"


def declared_width(subject: object, attributes: Sequence[str]) -> int | None:
    """The width `subject` declares: its first attribute among `attributes` that is a positive
    int (`in_dim`, `embed_dim`, ...), or None."""
    for attribute in attributes:
        value = getattr(subject, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def unknown_width(
    check: str,
    subject: object,
    width: str,
    attributes: Sequence[str],
    keyword: str,
    tried: str = "",
) -> UsageValueError:
    """The error of a check that cannot tell `width` (e.g. "how many coordinates a point has")
    of `subject`: it names the attributes read and the keyword to pass instead."""
    return UsageValueError(
        f"{check} cannot tell {width} for {subject_name(subject)}: it has none of the "
        f"attributes {', '.join(attributes)}{tried}; pass {keyword}"
    )


def check_other_inputs(options: CheckOptions, device: torch.device) -> None:
    """Call `other_inputs` once, as the check will: what it gives must be a strategy (both
    checks: an encoder's per-sample context, a consumer's other inputs).

    Raises:
        UsageValueError: it raised (it is the user's function, called with the check's
            arguments: its failure is a usage error, not the code's).
        UsageTypeError: it gave something other than a Hypothesis strategy (e.g. the factory
            itself was passed: `bev_maps` rather than `bev_maps(16, 8, 8)`).
    """
    name = options.name("other_inputs")
    try:
        given = options.other_inputs(1, torch.float32, device)
    except Exception as error:
        raise UsageValueError(
            f"{name}: calling it as other_inputs(batch_size=1, dtype=torch.float32, "
            f"device={str(device)!r}) raised {type(error).__name__}: {error}"
        ) from error
    if not isinstance(given, st.SearchStrategy):
        hint = (
            " (is it the factory rather than what it builds, e.g. bev_maps rather than "
            "bev_maps(16, 8, 8)?)"
            if callable(given)
            else ""
        )
        raise UsageTypeError(
            f"{name} must be a function (batch_size, dtype, device) -> a Hypothesis strategy of "
            f"the code's other inputs; calling it gave a {type(given).__name__}{hint}"
        )


def _prepare_at(
    encoder: Encoder,
    held_dtype: torch.dtype,
    row_dtype: torch.dtype,
    device: torch.device,
    point_dim: int,
    driver: Driver[LaneBatch],
    options: CheckOptions,
    modules: list[tuple[str, torch.nn.Module]],
    rebuild: Reproducer,
) -> Subject | None:
    """The encoder, copied to `held_dtype` on `device`; a `runs` row fails (and None is
    returned) if it cannot be, or if it still holds tensors elsewhere (a module wrapped in a
    function, a plain tensor attribute that `.to()` does not move)."""
    problem, cause = "", None
    try:
        subject = Subject.prepare(encoder, held_dtype, device)
    except Exception as error:
        problem = (
            f"the encoder cannot be copied and moved to {held_dtype} on {device} "
            f"(copy.deepcopy(encoder).to(device, dtype) raised {type(error).__name__}: {error})"
        )
        cause = error
    else:
        foreign = foreign_device_tensors(_walked(subject.encoder, modules), device)
        if not foreign:
            return subject
        problem = (
            f"the encoder holds tensors on another device than the one checked ({device}): "
            f"{'; '.join(foreign)}. Move it there first (encoder.to({str(device)!r}); a "
            "plain tensor attribute should be a registered buffer), or check on its device "
            "(device=...)"
        )
    probe = _given_inputs(probe_batch(point_dim, held_dtype, device), options.other_inputs)
    failure = EncoderPropertyError("runs", problem, probe)
    failure.__cause__ = cause
    failure.attach_reproducer(
        rebuild(failure.example, "assert_finite", "runs", encoder, options.factory)
    )
    driver.fail(
        failure,
        PropertyResult(
            "runs", row_dtype, "FAIL", 0, 0.0, 0.0, f"runs: {(problem.splitlines() or [''])[0]}"
        ),
    )
    return None


def probe_batch(point_dim: int, dtype: torch.dtype, device: torch.device) -> LaneBatch:
    """One unpadded lane of three points: the batch reported when no drawn batch is to blame."""
    return LaneBatch(
        torch.linspace(-1, 1, 3 * point_dim).reshape(1, 1, 3, point_dim).to(dtype),
        torch.ones(1, 1, 3, dtype=torch.bool),
    ).to(device=device)


def _with_inputs(
    batches: st.SearchStrategy[LaneBatch], other_inputs: OtherInputs | None
) -> st.SearchStrategy[LaneBatch]:
    """The batches, each with the encoder's other inputs drawn for it (when it takes any)."""
    return batches if other_inputs is None else with_other_inputs(batches, other_inputs)


def _given_inputs(batch: LaneBatch, other_inputs: OtherInputs | None) -> LaneBatch:
    """`batch` with the encoder's other inputs for its `B` samples (as it is without any):
    the simplest that `other_inputs` draws (Hypothesis' `find`, so the same every run), for
    the probes made outside the rows."""
    if other_inputs is None:
        return batch
    dtype, device = batch.points.dtype, batch.points.device
    quiet = Settings(
        database=None,
        max_examples=20,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )
    simplest = find(with_other_inputs(st.just(batch), other_inputs), lambda _: True, settings=quiet)
    return simplest.to(device=device, dtype=dtype)


def _with_empty_lanes(point_dim: int, dtype: torch.dtype, device: torch.device) -> LaneBatch:
    """Two samples of three lanes, four of whose are empty: what empty lanes give."""
    point_mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    point_mask[0, 0, :3] = True
    point_mask[1, 2, :2] = True
    points = torch.linspace(-1, 1, 2 * 3 * 4 * point_dim).reshape(2, 3, 4, point_dim)
    return LaneBatch(torch.where(point_mask[..., None], points, 0.0), point_mask).to(
        device=device, dtype=dtype
    )


def _check_output(
    encoder: Encoder,
    point_dim: int,
    device: torch.device,
    options: CheckOptions,
    hangs: HangMemory,
    modules: list[tuple[str, torch.nn.Module]],
) -> frozenset[str] | None:
    """One call on one real lane at float32, before anything is drawn: an output in which no
    lane embedding can be found (or not the part `output` names) is a usage error, said in
    under a second, never after rows of examples. Any other crash is left to the rows.

    Returns:
        What the encoder was seen to do, for the causes a failure lists: `{"attention"}` when
        it calls attention (an attention op ran, or it holds an attention module); None when
        the call did not run (the dtype probe's float32 side: `_encoder_unsupported`).

    Raises:
        UsageValueError: what came back, and the option that chooses.
    """
    try:
        subject = Subject.prepare(encoder, torch.float32, device)
        subject.deadline, subject.hangs = options.deadline, hangs
        with torch.no_grad(), count_dispatch() as count:
            subject(
                _given_inputs(probe_batch(point_dim, torch.float32, device), options.other_inputs)
            )
    except NoLaneEmbedding as error:
        chooses = options.how_to_pass("output", "INDEX|NAME", placeholder=True)
        raise UsageValueError(
            f"{error}; say which part is the lane embedding [B, M, C] with {chooses}"
            + (f" (given: {options.name('output')})" if options.given("output") else "")
        ) from None
    except (Exception, DeadlineExceeded):
        return None  # a crash or a slow call: the rows report it, with their examples
    attends = calls_attention(count) or holds_attention(modules)
    return frozenset({"attention"}) if attends else frozenset()


def _encoder_unsupported(
    subject: Subject,
    point_dim: int,
    dtype: torch.dtype,
    autocast: bool,
    options: CheckOptions,
    float32_runs: bool,
) -> str:
    """Why the encoder cannot run at `dtype` ('' if it can, or if its crash is not the
    dtype's), decided by experiment (`lpim.testing._dtype_probe`): one unpadded lane at the
    dtype, in the precision mode checked, against the same lane at plain float32, which
    `_check_output` already ran (`float32_runs`)."""

    def at_dtype() -> None:
        with torch.no_grad():
            try:
                probe = probe_batch(point_dim, subject.dtype, subject.device)
                subject(_given_inputs(probe, options.other_inputs))
            except DeadlineExceeded:
                pass  # slow, not unsupported: the rows report `deadline`

    low = dtype in (torch.bfloat16, torch.float16)
    alternative = (
        f"try {options.how_to_pass('precision', 'autocast')} or "
        f"{options.how_to_pass('dtype', 'float32')}"
        if low and not autocast
        else f"check it at float32 ({options.how_to_pass('dtype', 'float32')}), which it runs"
    )
    return dtype_unsupported(
        at_dtype,
        lambda: float32_runs,
        dtype,
        subject.device,
        mode="under autocast" if autocast else "cast to it",
        alternative=alternative,
    )


def _dtypes_own(
    encoder: Encoder,
    subject: Subject,
    dtype: torch.dtype,
    autocast: bool,
    context: Callable[[], Any],
    options: CheckOptions,
    failure: PropertyError[LaneBatch],
    trouble: LanesTrouble,
) -> str:
    """Why `failure` is the dtype's and not the encoder's ('' when it is the encoder's),
    by experiment, whatever torch's message says: the example's real lanes, alone and
    unpadded, show a crash or a NaN / inf value or gradient at `dtype` in the mode checked
    (inside `context`: autocast, when checked), and none at plain float32 (a float32 copy,
    autocast off). No padding takes part, so a fill value that overflows the dtype stays a
    failure (and a crash on such a fill is never counted). The reliability properties
    (deterministic, inputs_unchanged, deadline) are never the dtype's."""
    if dtype == torch.float32 or PROPERTIES[failure.property_name].reliability:
        return ""
    example = failure.example
    if not isinstance(example, LaneBatch):
        return ""
    try:
        with context():
            seen = trouble(subject, example)
        if not seen:
            return ""
        plain = Subject.prepare(encoder, torch.float32, subject.device)
        plain.deadline, plain.hangs = subject.deadline, subject.hangs
        with torch.autocast(subject.device.type, enabled=False):
            at_float32 = trouble(plain, example.to(dtype=torch.float32))
    except (Exception, DeadlineExceeded):
        return ""  # the experiment itself did not run: the failure stands
    if at_float32:
        return ""  # float32 shows it too: not the dtype's
    name = str(dtype).removeprefix("torch.")
    mode = "under autocast" if autocast else "cast to it"
    instance = ": LayerNorm's eps=1e-12 is 0 in float16" if dtype == torch.float16 else ""
    return (
        f"{name} numerics, not a mask bug: {failure.property_name} failed, and {seen} at "
        f"{name} ({mode}) while the same lanes give none at plain float32; the dtype's range or "
        f"precision (an eps or a value the dtype cannot hold{instance}); check it at float32 "
        f"({options.how_to_pass('dtype', 'float32')})"
        + (f" or try {options.how_to_pass('precision', 'autocast')}" if not autocast else "")
    )


def _point_dim_of(
    options: CheckOptions, encoder: Encoder, modules: list[tuple[str, torch.nn.Module]]
) -> int:
    """`D`: `point_dim` as given (checked against the encoder's `in_dim`), else read."""
    if options.point_dim is None:
        return _read_point_dim(encoder, options, modules)
    declared = getattr(encoder, "in_dim", None)
    declares = isinstance(declared, int) and not isinstance(declared, bool)
    if declares and declared != options.point_dim:
        raise UsageValueError(
            f"{options.option_name('point_dim')} must match the encoder's in_dim = {declared}; "
            f"got {options.name('point_dim')} (leave it out to use the encoder's)"
        )
    return options.point_dim


def _check_channel(options: CheckOptions, point_dim: int) -> None:
    """A validity channel's index must fall among the encoder's `D + 1` channels."""
    channel = mask_channel(options.point_mask_as)
    if channel is None:
        return
    width = point_dim + 1
    if not -width <= channel[1] < width:
        raise UsageValueError(
            f"{options.name('point_mask_as')}: channel {channel[1]} is outside the encoder's "
            f"{width} channels ({point_dim} coordinates and the validity channel); use an index "
            f"from -{width} to {width - 1}"
        )


def _database_key(encoder: object) -> str:
    """What tells encoders apart in the example database: a module's class, else the
    callable's own qualified name (every plain function shares one class)."""
    if isinstance(encoder, Adapted):
        return _database_key(encoder.inner)
    if isinstance(encoder, torch.nn.Module):
        return subject_name(encoder)
    target = getattr(encoder, "func", encoder)  # functools.partial
    name = getattr(target, "__qualname__", None)
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if name and module else subject_name(encoder)


def _read_point_dim(
    encoder: Encoder, options: CheckOptions, modules: list[tuple[str, torch.nn.Module]]
) -> int:
    """`D` from an attribute (`POINT_DIM_ATTRIBUTES`), else from the input width of the
    encoder's layers (`nn.Linear.in_features`, `nn.Conv1d.in_channels`, an RNN's
    `input_size`), in the order they appear, confirmed by a probe call that runs."""
    declared = declared_width(encoder, POINT_DIM_ATTRIBUTES)
    if declared is not None:
        return declared
    candidates: list[int] = []
    extra = encoder.extra_channels if isinstance(encoder, Adapted) else 0  # a validity channel
    for _, module in modules:
        for layer in module.modules():
            width = (
                getattr(layer, "in_features", None)
                if isinstance(layer, torch.nn.Linear)
                else getattr(layer, "in_channels", None)
                if isinstance(layer, torch.nn.Conv1d)
                else getattr(layer, "input_size", None)
                if isinstance(layer, torch.nn.RNNBase)
                else None
            )
            if isinstance(width, int) and width > extra and width - extra not in candidates:
                candidates.append(width - extra)
    for width in candidates:
        if _runs_with(encoder, width, options, modules):
            return width
    tried = f" (the widths of its layers, {candidates}, did not run)" if candidates else ""
    raise unknown_width(
        "check_encoder",
        encoder,
        "how many coordinates a point has",
        POINT_DIM_ATTRIBUTES,
        options.how_to_pass("point_dim", "D", placeholder=True),
        tried,
    )


def _runs_with(
    encoder: Encoder,
    point_dim: int,
    options: CheckOptions,
    modules: list[tuple[str, torch.nn.Module]],
) -> bool:
    """True when `encoder` runs on one lane of 3 points of `point_dim` coordinates (within
    the hard stop of `deadline`, when there is one)."""
    module = encoder if isinstance(encoder, torch.nn.Module) else None
    try:
        if module is not None:
            module.eval()  # the caller's module: the engine's user_state_kept puts modes back
        with torch.no_grad():
            first = next(iter(_parameters_and_buffers(modules)), None)
            dtype = first.dtype if first is not None and first.is_floating_point() else None
            probe = probe_batch(point_dim, dtype or torch.float32, torch.device("cpu"))
            if first is not None:
                probe = probe.to(device=first.device)
            probe = _given_inputs(probe, options.other_inputs)
            if options.deadline is None:
                probe.call(encoder)
            else:
                call_within(hard_stop(options.deadline), probe.call, encoder)
    except (Exception, CallTimedOut):
        return False
    return True


def _parameters_and_buffers(modules: list[tuple[str, torch.nn.Module]]) -> Iterator[torch.Tensor]:
    for _, module in modules:
        yield from module.parameters()
        yield from module.buffers()


def _inputs_words(options: CheckOptions) -> str:
    """How the encoder was given its inputs, for the report's header ('' for lpim's own
    `encoder(points, point_mask)`): a pass claims no more than the call that was checked."""
    said = []
    if options.point_mask_as != "point_mask":
        said.append(f"the mask as {options.point_mask_as}")
    if options.other_inputs is not None:
        function = options.other_inputs
        name = getattr(function, "__qualname__", None) or type(function).__name__
        module = getattr(function, "__module__", None)
        said.append(f"other inputs from {module}.{name}" if module else f"other inputs from {name}")
    return f"; the encoder given {' and '.join(said)}" if said else ""


def _consumer_unsupported(
    consumer: Consumer,
    prepared: Consumer,
    embed_dim: int,
    dtype: torch.dtype,
    device: torch.device,
    options: CheckOptions,
    run: RunConsumer,
) -> str:
    """Why the consumer cannot run at `dtype` ('' if it can, or if its crash is not the
    dtype's), decided by experiment (`lpim.testing._dtype_probe`): one real lane, no padding,
    at the dtype and at plain float32. A consumer that needs other inputs crashes at float32
    too without them, so its dtype is left for the rows to try."""

    def lanes(at: torch.dtype) -> LaneSet:
        return LaneSet(
            torch.linspace(-1, 1, embed_dim).reshape(1, 1, embed_dim).to(device=device, dtype=at),
            torch.ones(1, 1, dtype=torch.bool, device=device),
        )

    def at_float32() -> None:
        run(Subject.prepare(consumer, torch.float32, device).encoder, lanes(torch.float32))

    return dtype_unsupported(
        lambda: run(prepared, lanes(dtype)),
        lambda: runs_at_float32(at_float32, device),
        dtype,
        device,
        mode="cast to it",
        alternative=f"check it at float32 ({options.how_to_pass('dtype', 'float32')}), which "
        "it runs",
    )


_EMBED_DIM_ATTRIBUTES = ("embed_dim", "d_model", "lane_dim")


def _read_embed_dim(consumer: Consumer, options: CheckOptions) -> int:
    """`C` from an attribute (`_EMBED_DIM_ATTRIBUTES`)."""
    declared = declared_width(consumer, _EMBED_DIM_ATTRIBUTES)
    if declared is None:
        raise unknown_width(
            "check_lane_consumer",
            consumer,
            "the lane embedding width C",
            _EMBED_DIM_ATTRIBUTES,
            options.how_to_pass("embed_dim", "C", placeholder=True),
        )
    return declared


def _walked(
    code: object, held: list[tuple[str, torch.nn.Module]]
) -> list[tuple[str, torch.nn.Module]]:
    """The modules reachable from `code` (`lpim.testing._state.reachable_modules`), given
    `held`, those reachable from what it was made of (the user's code; `code` is it, a copy of
    it or `Adapted` around it): a module is the one module reachable from it, and what is no
    module is never copied nor wrapped, so it is the user's code and holds `held`."""
    return [("encoder", code)] if isinstance(code, torch.nn.Module) else held


class UnderCheck:
    """What both sides know of the code under check, for a whole check: the code as it is
    called (`code`), its name, the options, the device, the modules it holds. Built by the
    engine once the user's state is saved (`lpim.testing._engine.run_check`, from the side's
    `holder`): every later use of the code goes through it.

    Args:
        code: the encoder or consumer as the user gave it (the engine checked it is callable).
        options: the check's options.
        held: the modules reachable from `code`, as the engine's saved state found them
            (`lpim.testing._state.user_state_kept`).
        reproducer: what writes a reproducer (`lpim.testing._reproducer.reproducer`, passed in
            by the side: it is built on this module, not below it).
    """

    def __init__(
        self,
        code: Any,
        options: CheckOptions,
        held: list[tuple[str, torch.nn.Module]],
        reproducer: Reproducer,
    ) -> None:
        self.name = subject_name(code)  # the user's class, even when called through `Adapted`
        self.code, self.options, self.held = code, options, held
        self.device = torch.device(options.device)
        self.features: frozenset[str] | None = None
        self.rebuild = reproducer

    def read(self) -> None:
        """Check what only the code's own check can (called inside the engine's saved state,
        since reading a width may call the code): its other inputs, when it takes any.

        Raises:
            UsageValueError: as `check_other_inputs`.
            UsageTypeError: as `check_other_inputs`.
        """
        if self.options.other_inputs is not None:
            check_other_inputs(self.options, self.device)

    def reproducer(
        self, example: LaneBatch | LaneSet, assert_name: str, failed: str, **how: Any
    ) -> str:
        """Source that rebuilds the code (`factory`, else its class) and re-raises `failed` on
        `example` (`how`: `lpim.testing._reproducer.reproducer`'s `call`, `keywords`,
        `autocast`)."""
        return self.rebuild(example, assert_name, failed, self.code, self.options.factory, **how)


class EncoderUnderCheck(UnderCheck):
    """One encoder for a whole check (`check_encoder`): as it is called, its point dimension,
    its device, its copies at each dtype (with one hang memory), the batches made outside the
    rows, its first output check and the dtype probe wired to it.

    Args:
        encoder: the encoder as the user gave it (seen through `Adapted` when the options say
            how it takes its inputs).
        options: the check's options.
        held: the modules reachable from `encoder` (`UnderCheck`).
        reproducer: as `UnderCheck`.
        lanes_alone_trouble: the experiment of the dtype probe
            (`lpim.testing._encoder_properties.lanes_alone_trouble`, passed in by the side).
    """

    def __init__(
        self,
        encoder: Encoder,
        options: CheckOptions,
        held: list[tuple[str, torch.nn.Module]],
        *,
        reproducer: Reproducer,
        lanes_alone_trouble: LanesTrouble,
    ) -> None:
        super().__init__(encoder, options, held, reproducer)
        if (
            options.output is not None
            or options.argument_names
            or options.point_mask_as != "point_mask"
        ):  # how it takes its inputs is said: it is called through the protocol's adapter
            self.code = Adapted(
                encoder, options.point_mask_as, options.argument_names, options.output
            )
        self.modules = _walked(self.code, held)
        self.trouble = lanes_alone_trouble
        # One hang is enough: after it, every call of the encoder, at every dtype, raises at
        # once, so a hanging encoder ends the check within two hard stops.
        self.hangs = HangMemory()
        self.point_dim = 0

    def read(self) -> None:
        """Its point dimension (declared, else read and confirmed by a probe call), a validity
        channel within it, its other inputs, and one call that finds its lane embedding
        (`_check_output`: `features`).

        Raises:
            UsageValueError: a width, channel, other inputs or output the check cannot use.
        """
        self.point_dim = _point_dim_of(self.options, self.code, self.modules)
        _check_channel(self.options, self.point_dim)
        super().read()
        self.features = _check_output(
            self.code, self.point_dim, self.device, self.options, self.hangs, self.modules
        )

    @property
    def database_key(self) -> str:
        """What tells encoders apart in the example database (`_database_key`)."""
        return _database_key(self.code)

    def inputs_words(self) -> str:
        """How the encoder was given its inputs, for the report's header (`_inputs_words`)."""
        return _inputs_words(self.options)

    def at(
        self, held_dtype: torch.dtype, row_dtype: torch.dtype, driver: Driver[LaneBatch]
    ) -> Subject | None:
        """The encoder copied to `held_dtype` on the device, timed by the check's deadline and
        sharing its hang memory; None (a `runs` row failed on `driver`) when it cannot be
        (`_prepare_at`)."""
        subject = _prepare_at(
            self.code,
            held_dtype,
            row_dtype,
            self.device,
            self.point_dim,
            driver,
            self.options,
            self.modules,
            self.rebuild,
        )
        if subject is not None:
            subject.deadline, subject.hangs = self.options.deadline, self.hangs
        return subject

    def unsupported(self, subject: Subject, dtype: torch.dtype, autocast: bool) -> str:
        """Why the encoder cannot run at `dtype` ('' if it can): `_encoder_unsupported`, against
        the float32 call `read` made."""
        return _encoder_unsupported(
            subject,
            self.point_dim,
            dtype,
            autocast,
            self.options,
            float32_runs=self.features is not None,
        )

    def dtypes_own(
        self,
        subject: Subject,
        dtype: torch.dtype,
        autocast: bool,
        context: Callable[[], Any],
        failure: PropertyError[LaneBatch],
    ) -> str:
        """Why `failure` is the dtype's and not the encoder's ('' when it is the encoder's):
        `_dtypes_own`."""
        return _dtypes_own(
            self.code, subject, dtype, autocast, context, self.options, failure, self.trouble
        )

    def batches(self, batches: st.SearchStrategy[LaneBatch]) -> st.SearchStrategy[LaneBatch]:
        """`batches`, each with the encoder's other inputs drawn for it (`_with_inputs`)."""
        return _with_inputs(batches, self.options.other_inputs)

    def with_empty_lanes(self, dtype: torch.dtype) -> LaneBatch:
        """The batch that shows what empty lanes give, at `dtype`, with its other inputs."""
        batch = _with_empty_lanes(self.point_dim, dtype, self.device)
        return _given_inputs(batch, self.options.other_inputs)


class ConsumerUnderCheck(UnderCheck):
    """One lane-set consumer for a whole check (`check_lane_consumer`): its embedding width,
    its device, its copies at each dtype and the dtype probe wired to it.

    Args:
        consumer: the consumer as the user gave it.
        options: the check's options.
        held: the modules reachable from `consumer` (`UnderCheck`).
        reproducer: as `UnderCheck`.
        run: how a consumer is run on a lane set, for the dtype probe
            (`lpim.testing._consumer_properties.run_consumer`, passed in by the side).
    """

    def __init__(
        self,
        consumer: Consumer,
        options: CheckOptions,
        held: list[tuple[str, torch.nn.Module]],
        *,
        reproducer: Reproducer,
        run: RunConsumer,
    ) -> None:
        super().__init__(consumer, options, held, reproducer)
        self.run = run
        self.embed_dim = 0

    def read(self) -> None:
        """Its embedding width (`embed_dim`, else declared), its other inputs, and what it does
        (`features`: attention modules found in its module tree; running it would need its
        other inputs, so what it does is otherwise unknown).

        Raises:
            UsageValueError: a width or other inputs the check cannot use.
        """
        options = self.options
        self.embed_dim = (
            options.embed_dim
            if options.embed_dim is not None
            else _read_embed_dim(self.code, options)
        )
        super().read()
        attends = holds_attention(_walked(self.code, self.held))
        self.features = frozenset({"attention"}) if attends else None

    def at(self, dtype: torch.dtype) -> Consumer:
        """A copy of the consumer in eval mode at `dtype` on the device (modules only)."""
        return Subject.prepare(self.code, dtype, self.device).encoder

    def unsupported(self, prepared: Consumer, dtype: torch.dtype) -> str:
        """Why the consumer cannot run at `dtype` ('' if it can): `_consumer_unsupported`."""
        return _consumer_unsupported(
            self.code, prepared, self.embed_dim, dtype, self.device, self.options, self.run
        )
