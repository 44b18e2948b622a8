"""The check against the zoo: every bug caught by the property it names, every correct one passes.

And each property earns its place: for every property there is a bug that no other property
catches (run the check without that property and the bug passes).
"""

from __future__ import annotations

import pytest
import torch

from lpim import PriorEncoder, zoo
from lpim.testing import CHECKED_PROPERTIES, PROPERTIES, EncoderPropertyError, check_encoder
from lpim.zoo import BUGS, CORRECT, ZooEntry

HAS_CUDA = torch.cuda.is_available()


def _dtypes(entry: ZooEntry) -> list[torch.dtype]:
    # the overflow bug exists only where -1e9 does not fit: float16
    return [torch.float16] if "fp16" in entry.name else [torch.float64, torch.float32]


def test_the_zoo_is_complete() -> None:
    assert len(BUGS) >= 16 and len(CORRECT) >= 5
    for entry in [*BUGS.values(), *CORRECT.values()]:
        encoder = entry.factory()
        assert not encoder.training and encoder.in_dim == 2
        assert type(encoder).__doc__ and len(type(encoder).__doc__ or "") > 80
        assert entry.caught_by is None or entry.caught_by in PROPERTIES


@pytest.mark.parametrize("name", sorted(BUGS))
def test_check_encoder_catches_every_bug(name: str) -> None:
    entry = BUGS[name]
    if entry.caught_by == "devices_agree" and not HAS_CUDA:
        report = check_encoder(entry.factory(), dtype=torch.float32)
        skipped = [r for r in report.results if r.property_name == "devices_agree"]
        assert skipped and all(r.verdict == "skipped" for r in skipped)
        pytest.skip(
            "devices_agree needs CUDA to catch this bug (torch.cuda.is_available() is False)"
        )
    for dtype in _dtypes(entry):
        with pytest.raises(EncoderPropertyError) as info:
            check_encoder(
                entry.factory(),
                dtype=dtype,
                properties=_up_to(entry.caught_by),
                factory=f"lpim.zoo:BUGS[{name!r}].factory",
                **entry.contract,
            )
        # The first failure of the check is the property the entry names, and every property
        # before it in the check's order holds.
        assert info.value.property_name == entry.caught_by, str(info.value)
        assert info.value.reproducer


def _up_to(caught_by: str | None) -> list[str]:
    """The check's properties up to and including ``caught_by`` (a crash shows on the first
    two): the rest of the matrix cannot change which property fails first."""
    if caught_by not in CHECKED_PROPERTIES:
        return list(CHECKED_PROPERTIES[:2])
    return list(CHECKED_PROPERTIES[: CHECKED_PROPERTIES.index(caught_by) + 1])


# Measured on an H200 with torch 2.11: the fused CUDA kernel behind nn.TransformerEncoderLayer's
# fast path (eval, no grad) differs from torch's own slow path by 1.3e-4 at float64 (7.6e-5 at
# float32) on real tokens, for a bare torch layer too, while the CPU fast path agrees with the
# slow path to 4e-16. devices_agree reports that; strict, so a torch that fixes it shows here.
_TORCH_CUDA_FAST_PATH = pytest.mark.xfail(
    HAS_CUDA,
    reason="torch's CUDA fast path of TransformerEncoderLayer drifts ~1e-4 from its slow path",
    raises=EncoderPropertyError,
    strict=True,
)


@pytest.mark.parametrize(
    "name",
    [
        *(
            pytest.param(n, marks=_TORCH_CUDA_FAST_PATH)
            if n == "torch_transformer_fast_path"
            else n
            for n in sorted(CORRECT)
        ),
        "PriorEncoder",
    ],
)
def test_check_encoder_passes_every_correct_encoder(name: str) -> None:
    if name == "PriorEncoder":
        torch.manual_seed(0)
        encoder = PriorEncoder(d_model=16, nhead=2, num_layers=2, dim_feedforward=32)
    else:
        encoder = CORRECT[name].factory()
    contract = CORRECT[name].contract if name in CORRECT else {}
    report = check_encoder(encoder, **contract)  # all four dtypes
    assert report.passed, str(report)
    for result in report.results:
        if name in RUNS_IN_FLOAT32_ONLY and result.dtype != torch.float32:
            assert result.verdict == "unsupported", str(report)
            assert "another dtype internally" in result.note  # by experiment: two dtypes met
        elif result.property_name == "devices_agree" and not HAS_CUDA:
            assert result.verdict == "skipped"
        elif result.verdict == "excluded":  # outside the entry's stated contract
            assert contract and result.note.startswith("not in the data contract")
        else:
            assert result.verdict == "pass", str(report)
            assert result.max_error_ratio <= 1.0
    if name in RUNS_IN_FLOAT32_ONLY:  # as mixed-precision training runs it: every row runs
        autocast = check_encoder(
            encoder, dtype=[torch.bfloat16, torch.float16], precision="autocast"
        )
        assert all(
            r.verdict == "pass" for r in autocast.results if r.property_name != "devices_agree"
        ), str(autocast)


# Correct encoders that compute in float32 whatever they are given: unsupported under cast.
RUNS_IN_FLOAT32_ONLY = ("float32_internal",)


def _caught_alone(entry: ZooEntry) -> bool:
    """True if every property but ``entry.caught_by`` holds on the bug."""
    others = [p for p in CHECKED_PROPERTIES if p != entry.caught_by]
    try:
        check_encoder(entry.factory(), dtype=_dtypes(entry)[0], properties=others, **entry.contract)
    except EncoderPropertyError:
        return False
    return True


@pytest.mark.parametrize(
    "property_name", [p for p in zoo.CAUGHT_BY if p not in ("runs", "devices_agree")]
)
def test_each_property_alone_catches_some_bug(property_name: str) -> None:
    alone = [
        name
        for name, entry in sorted(BUGS.items())
        if entry.caught_by == property_name and _caught_alone(entry)
    ]
    assert alone, f"no zoo bug is caught by {property_name} alone"
