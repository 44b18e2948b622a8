"""Misbehaving encoders: not mask bugs, but the ways an encoder can break the checker's trust.

`MISBEHAVING` maps a snake_case name to a `Misbehaviour`. Each encoder is correct about
masks (a masked mean over real points, or a wrapper around one) and misbehaves in one other way;
`lpim.testing.check_encoder` and `lpim check` must report each one clearly, as the
property in `reported_as`, and never crash:

```python title="Example: raises EncoderPropertyError (inputs_unchanged)"
from lpim.testing import check_encoder
from lpim.zoo.misbehaving import MISBEHAVING

entry = MISBEHAVING["mutates_inputs"]
check_encoder(entry.factory(), dtype="float32", deadline=entry.deadline)
```

From the shell: `lpim check "lpim.zoo.misbehaving:MISBEHAVING['raises'].factory"`.

Every factory builds its encoder with seed-0 weights and leaves the global RNG as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lpim._property_registry import property_named
from lpim.zoo._seeded import seeded

__all__ = [
    "MISBEHAVING",
    "DropoutMean",
    "EncoderFn",
    "Hangs",
    "InPlaceNormalise",
    "MaskedMeanEncoder",
    "Misbehaviour",
    "NoisyOutput",
    "OtherDeviceWrapper",
    "Raises",
    "ReturnsList",
    "ReturnsNaN",
    "Slow",
    "TrainingWrapper",
    "WrongDevice",
    "WrongDtype",
    "WrongShape",
]


class MaskedMeanEncoder(nn.Module):
    """Correct: embed each point, average over the lane's real points (empty lanes give 0).

    The base every misbehaving encoder here changes in one way. Padded points are selected
    away with `torch.where` before anything reads them.
    """

    def __init__(self, in_dim: int = 2, d_model: int = 8) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.embed = nn.Linear(in_dim, d_model)

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """`points [B, M, N, D]`, `point_mask [B, M, N]` -> `[B, M, C]`."""
        keep = point_mask[..., None]  # [B, M, N, 1]
        features = torch.where(keep, self.embed(torch.where(keep, points, 0)), 0)  # [B, M, N, C]
        count = point_mask.sum(-1, keepdim=True).clamp(min=1)  # [B, M, 1]
        return features.sum(2) / count.to(features.dtype)  # [B, M, C]


class Raises(MaskedMeanEncoder):
    """Raises on every batch (a shape assertion written for one dataset's padding, say).

    Reported as property `runs`, with the encoder's own exception as `__cause__`.
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Raise `ValueError`."""
        raise ValueError(f"expected 20 points per lane, got {points.shape[2]}")


class ReturnsList(MaskedMeanEncoder):
    """Returns a Python list of per-sample tensors instead of a `[B, M, C]` tensor.

    Not a misbehaviour a property reports: no part of the list is a lane embedding, so the
    checks refuse it as a usage error before drawing anything, naming what came back and the
    `output` option (`lpim.testing._protocol.NoLaneEmbedding`).
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> list[Tensor]:  # type: ignore[override]
        """A list of `[M, C]` tensors."""
        return list(super().forward(points, point_mask).unbind(0))


class WrongShape(MaskedMeanEncoder):
    """Returns lanes flattened to `[B*M, C]` (samples and lanes merged, never split back).

    Reported as property `runs`: the output breaks the protocol (its shape).
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """`[B*M, C]`."""
        return super().forward(points, point_mask).flatten(0, 1)


class WrongDtype(MaskedMeanEncoder):
    """Returns float64 whatever the input's dtype (an upcast "for accuracy" never undone).

    Reported as property `runs` at every dtype but float64: the output breaks the protocol
    (its dtype must be the points').
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """`[B, M, C]` float64."""
        return super().forward(points, point_mask).double()


class WrongDevice(MaskedMeanEncoder):
    """Returns its output on another device than the input's (`meta` stands in for a second
    device where there is no CUDA: the output moved to where the next stage was expected).

    Reported as property `runs`: the output breaks the protocol (its device).
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """`[B, M, C]` on `meta`."""
        return super().forward(points, point_mask).to("meta")


class ReturnsNaN(MaskedMeanEncoder):
    """Returns NaN in every lane embedding (a `0 / 0` left in a normalisation).

    Reported as property `finite`.
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """`[B, M, C]` of NaN."""
        out = super().forward(points, point_mask)
        return out * (out - out) / (out - out)  # 0 / 0 = NaN everywhere


class InPlaceNormalise(MaskedMeanEncoder):
    """Divides the caller's `points` by the coordinate range in place (`points /= 50`).

    Its output is right; the caller's batch is not, the next time it is used. Reported as
    property `inputs_unchanged` (the checker hands copies, so nothing of the caller's is
    harmed, and compares the copies with the batch after each call).
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Normalise `points` in place, then the masked mean."""
        points.div_(50.0)
        return super().forward(points, point_mask)


class NoisyOutput(MaskedMeanEncoder):
    """Adds Gaussian noise to its output in eval mode too (a "regulariser" left in forward).

    Reported as property `deterministic`: the same batch twice gives different outputs.
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """The masked mean plus noise of scale 0.1."""
        out = super().forward(points, point_mask)
        return out + 0.1 * torch.randn_like(out)


class DropoutMean(MaskedMeanEncoder):
    """The masked mean with `nn.Dropout(0.5)` on the point features: correct in eval mode."""

    def __init__(self, in_dim: int = 2, d_model: int = 8) -> None:
        super().__init__(in_dim, d_model)
        self.dropout = nn.Dropout(0.5)

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Dropout on the embedded points, then the masked mean."""
        keep = point_mask[..., None]  # [B, M, N, 1]
        features = self.dropout(self.embed(torch.where(keep, points, 0)))  # [B, M, N, C]
        features = torch.where(keep, features, 0)
        count = point_mask.sum(-1, keepdim=True).clamp(min=1)  # [B, M, 1]
        return features.sum(2) / count.to(features.dtype)


class TrainingWrapper:
    """A plain callable wrapping a `DropoutMean` left in train mode.

    `check_encoder` copies an `nn.Module` and calls `.eval()` on the copy, but it cannot
    reach a module inside an arbitrary callable: here dropout stays active. Reported as
    property `deterministic`, naming `encoder.model.dropout` and asking for `.eval()`.
    """

    in_dim = 2

    def __init__(self) -> None:
        self.model = DropoutMean().train()

    def __call__(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Run the wrapped model."""
        out: Tensor = self.model(points, point_mask)
        return out


class Slow(MaskedMeanEncoder):
    """Sleeps 0.25 s per call (a stand-in for a Python loop over lanes).

    Passes without a deadline; with `deadline=0.05` it is reported as property
    `deadline`, with both times it took.
    """

    seconds = 0.25

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Sleep, then the masked mean."""
        time.sleep(self.seconds)
        return super().forward(points, point_mask)


class Hangs(MaskedMeanEncoder):
    """Never returns: iterates until a change NaN never falls below a tolerance (a stand-in for
    any loop whose exit is never reached, or a wait that nothing releases).

    Without a deadline a check of it never ends; with `deadline=0.05` each call is stopped after
    1 s (`lpim.testing._deadline.hard_stop`), and it is reported as property `deadline` within
    about 2 s: a call that did not return and was stopped.
    """

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Iterate forever, then (never) the masked mean."""
        change = torch.tensor(float("nan"))
        while not bool(change < 1e-6):  # NaN compares False: never converges
            change = change * 0.5
        return super().forward(points, point_mask)


class OtherDeviceWrapper:
    """A plain callable whose model sits on another device than the one checked (`meta`
    stands in for a CUDA model checked on the CPU): `.to()` cannot reach it.

    Reported as property `runs` before any batch is drawn, naming the parameters and their
    device.
    """

    in_dim = 2

    def __init__(self) -> None:
        self.model = MaskedMeanEncoder().to("meta").eval()

    def __call__(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Run the wrapped model."""
        out: Tensor = self.model(points, point_mask)
        return out


EncoderFn = Callable[[Tensor, Tensor], object]
"""What a factory returns: anything callable as `encoder(points, point_mask)`."""


@dataclass(frozen=True)
class Misbehaviour:
    """One misbehaving encoder.

    Attributes:
        name: its key in `MISBEHAVING`.
        factory: zero-argument callable returning a fresh encoder (`in_dim == 2`).
        reported_as: the property `check_encoder` reports it as.
        message: a regular expression the report's message must match.
        summary: what it does wrong, in one line.
        deadline: the `deadline=` (seconds) under which it is reported, or None.
    """

    name: str
    factory: Callable[[], EncoderFn]
    reported_as: str
    message: str
    summary: str
    deadline: float | None = None

    def __post_init__(self) -> None:
        property_named(self.reported_as, "encoder")


MISBEHAVING: dict[str, Misbehaviour] = {
    entry.name: entry
    for entry in [
        Misbehaviour(
            "raises",
            seeded(Raises),
            "runs",
            r"the encoder raised ValueError: expected 20 points per lane",
            "raises ValueError on every batch",
        ),
        Misbehaviour(
            "wrong_shape",
            seeded(WrongShape),
            "runs",
            r"lane_embedding must have shape \[B, M, C\]",
            "returns [B*M, C] instead of [B, M, C]",
        ),
        Misbehaviour(
            "wrong_dtype",
            seeded(WrongDtype),
            "runs",
            r"lane_embedding must have the points' dtype torch\.float32; got torch\.float64",
            "returns float64 for float32 input",
        ),
        Misbehaviour(
            "wrong_device",
            seeded(WrongDevice),
            "runs",
            r"lane_embedding must be on the input's device cpu; got meta",
            "returns its output on another device (meta)",
        ),
        Misbehaviour(
            "returns_nan",
            seeded(ReturnsNaN),
            "finite",
            r"lane_embedding\[0\] is nan",
            "returns NaN lane embeddings",
        ),
        Misbehaviour(
            "mutates_inputs",
            seeded(InPlaceNormalise),
            "inputs_unchanged",
            r"the encoder modified points in place",
            "divides the caller's points by 50 in place",
        ),
        Misbehaviour(
            "nondeterministic",
            seeded(NoisyOutput),
            "deterministic",
            r"on a second call with the same batch.*is dropout active",
            "adds random noise to its output on every call",
        ),
        Misbehaviour(
            "train_mode_dropout",
            seeded(TrainingWrapper),
            "deterministic",
            r"training mode: encoder\.model\.dropout \(Dropout, p=0\.5\)\. Call \.eval\(\)",
            "a plain callable wrapping a module left in train mode with dropout",
        ),
        Misbehaviour(
            "slow",
            seeded(Slow),
            "deadline",
            r"took [0-9.e+-]+ s, and [0-9.e+-]+ s when timed again.*deadline is 0\.05 s",
            "sleeps 0.25 s per call; reported under deadline=0.05",
            deadline=0.05,
        ),
        Misbehaviour(
            "hangs",
            seeded(Hangs),
            "deadline",
            r"did not return within 1 s and was stopped.*deadline is 0\.05 s",
            "never returns (a loop whose exit NaN never reaches); stopped and reported under "
            "deadline=0.05",
            deadline=0.05,
        ),
        Misbehaviour(
            "parameters_on_other_device",
            seeded(OtherDeviceWrapper),
            "runs",
            r"holds tensors on another device than the one checked \(cpu\): "
            r"encoder\.model\.embed\.weight on meta",
            "a plain callable whose model sits on another device (meta) than the one checked",
        ),
    ]
}
"""Every misbehaving encoder by name, with the property it must be reported as."""
