"""Lane-set consumers: LaneSet, lane_sets, the consumer asserts, check_lane_consumer, the zoo.

Every zoo bug is caught by the property it names, every correct consumer passes at float32 and
float64, each property catches a bug that no other property catches, and a reproducer fails the
same way in a fresh interpreter. Every call gets copies of its inputs (`inputs_unchanged`), and
a random consumer is reported as `deterministic`, not as a property it happened to break.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from torch import nn

from lpim import LaneSet
from lpim.strategies import bev_queries, lane_sets
from lpim.testing import (
    CONSUMER_PROPERTIES,
    LaneConsumerPropertyError,
    assert_consumer_deterministic,
    assert_consumer_finite,
    assert_ignores_appended_lanes,
    assert_ignores_padded_lanes,
    assert_lane_order_invariant,
    check_lane_consumer,
)
from lpim.testing._consumer_properties import nondeterminism_first
from lpim.zoo import CONSUMER_BUGS, CONSUMER_CORRECT, ConsumerZooEntry
from lpim.zoo.consumers import MaskedCrossAttention

ASSERTS: dict[str, Callable[[Any, LaneSet], float]] = {
    "finite": assert_consumer_finite,
    "ignores_appended_lanes": assert_ignores_appended_lanes,
    "ignores_padded_lanes": assert_ignores_padded_lanes,
    "lane_order_invariant": assert_lane_order_invariant,
}
# The reliability asserts: a consumer that breaks one may break the comparisons of the mask
# asserts too (a random output differs between any two runs), so "alone" is decided by the check.
RELIABILITY: dict[str, Callable[[Any, LaneSet], float]] = {
    "deterministic": assert_consumer_deterministic,
}
QUIET = settings(database=None, deadline=None, phases=[Phase.generate, Phase.shrink])


def fixed_lanes(
    entry: ConsumerZooEntry | None = None, dtype: torch.dtype = torch.float32
) -> LaneSet:
    """B=3, M=4, C=16: sample 0 has lanes 0 and 2, sample 1 none, sample 2 all four; zeros in
    padded lanes; BEV queries [3, 2, 16] when the consumer takes them."""
    generator = torch.Generator().manual_seed(0)
    embedding = torch.randn(3, 4, 16, generator=generator, dtype=torch.float64)
    lane_mask = torch.tensor([[True, False, True, False], [False] * 4, [True] * 4])
    embedding = torch.where(lane_mask[..., None], embedding, 0).to(dtype)
    args: tuple[Any, ...] = ()
    if entry is not None and entry.other_inputs is not None:
        args = (torch.randn(3, 2, 16, generator=generator, dtype=torch.float64).to(dtype),)
    return LaneSet(embedding, lane_mask, args)


@functools.cache
def _caught(name: str) -> LaneConsumerPropertyError:
    """What check_lane_consumer raises on zoo bug ``name`` at float32 (run once per process)."""
    entry = CONSUMER_BUGS[name]
    try:
        check_lane_consumer(
            entry.factory(),
            other_inputs=entry.other_inputs,
            order_invariant=entry.order_invariant,
            dtype=torch.float32,
            factory=f"lpim.zoo.consumers:CONSUMER_BUGS[{name!r}].factory",
        )
    except LaneConsumerPropertyError as error:
        return error
    raise AssertionError(f"check_lane_consumer passed the zoo bug {name}")


def _fails(entry: ConsumerZooEntry) -> set[str]:
    """The properties that fail when each assert runs on ``fixed_lanes`` (an assert's own, or
    ``inputs_unchanged``, checked on every call)."""
    consumer, lanes = entry.factory(), fixed_lanes(entry)
    failed = set()
    for name, assert_property in {**RELIABILITY, **ASSERTS}.items():
        try:
            assert_property(consumer, lanes)
        except LaneConsumerPropertyError as error:
            assert error.property_name in (name, "inputs_unchanged"), str(error)
            failed.add(error.property_name)
    return failed


# -- LaneSet and lane_sets -------------------------------------------------------------------------


def test_lane_set_rejects_bad_input_naming_expected_and_got() -> None:
    embedding, lane_mask = torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"lane_mask must be a torch.bool tensor \[B, M\].*int64"):
        LaneSet(embedding, lane_mask.long())
    with pytest.raises(ValueError, match=r"shape \[B, M\] = \(2, 3\).*got \(3, 2\)"):
        LaneSet(embedding, lane_mask.T)
    with pytest.raises(ValueError, match=r"\[B, M, C\]; got \(2, 3\)"):
        LaneSet(embedding[..., 0], lane_mask)
    with pytest.raises(TypeError, match="floating tensor"):
        LaneSet(embedding.long(), lane_mask)
    nan_real = embedding.clone()
    nan_real[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"real lane \(b=1, m=2\) holds NaN or inf"):
        LaneSet(nan_real, lane_mask)
    nan_padded = LaneSet(
        nan_real, lane_mask.clone().index_put_((torch.tensor(1),), torch.tensor(False))
    )
    assert "padded lanes hold zeros and nan" in repr(nan_padded)


def test_lane_set_repr_is_readable() -> None:
    lanes = fixed_lanes(CONSUMER_CORRECT["masked_cross_attention"])
    assert repr(lanes) == (
        "LaneSet(B=3, M=4, C=16, float32, cpu, real lanes per sample [2, 0, 4], "
        "padded lanes hold zeros, args=(Tensor[3, 2, 16] float32,))"
    )


@QUIET
@given(
    lane_sets(
        batch_size=(1, 3),
        num_lanes=(1, 5),
        embed_dim=(1, 8),
        garbage="nan",
        empty_samples=False,
        dtype=torch.float64,
        other_inputs=lambda b, dtype, device: st.fixed_dictionaries(
            {"queries": st.just(torch.zeros(b, 2, 3, dtype=dtype, device=device))}
        ),
    )
)
def test_lane_sets_honours_its_knobs(lanes: LaneSet) -> None:
    b, m, c = lanes.shape
    assert 1 <= b <= 3 and 1 <= m <= 5 and 1 <= c <= 8
    assert lanes.lane_embedding.dtype == torch.float64 and lanes.lane_mask.dtype == torch.bool
    assert bool(lanes.lane_mask.any(-1).all())  # empty_samples=False: every sample has a lane
    assert bool(lanes.lane_embedding[~lanes.lane_mask].isnan().all())
    assert bool(lanes.lane_embedding[lanes.lane_mask].abs().le(4.0).all())
    assert lanes.args == () and lanes.kwargs["queries"].shape == (b, 2, 3)


def test_lane_sets_shrinks_to_the_simplest_case() -> None:
    simplest = find(lane_sets(embed_dim=2), lambda lanes: True, settings=QUIET)
    assert simplest.shape == (1, 1, 2) and bool(simplest.lane_mask.all())
    assert not bool(simplest.lane_embedding.any())  # zeros
    empty_sample = find(
        lane_sets(embed_dim=2, garbage=None),
        lambda x: bool(x.lane_mask.any()) and not bool(x.lane_mask.any(-1).all()),
        settings=QUIET,
    )
    assert empty_sample.lane_mask.tolist() == [[True], [False]]
    assert not bool(empty_sample.lane_embedding.any())  # zeros, in padded lanes too


def test_lane_sets_rejects_other_inputs_that_are_not_a_tuple_or_dict() -> None:
    strategy = lane_sets(other_inputs=lambda b, dtype, device: st.just([torch.zeros(b)]))
    with pytest.raises(InvalidArgument, match=r"tuple .* or a dict .*; it drew list"):
        find(strategy, lambda lanes: True, settings=QUIET)


# -- the asserts on one fixed lane set -------------------------------------------------------------


def test_the_consumer_zoo_is_complete() -> None:
    caught = {entry.caught_by for entry in CONSUMER_BUGS.values()}
    assert caught == set(CONSUMER_PROPERTIES) - {"runs"}  # every property has a bug
    assert "unmasked_cross_attention" in CONSUMER_BUGS and len(CONSUMER_CORRECT) >= 2
    for entry in [*CONSUMER_BUGS.values(), *CONSUMER_CORRECT.values()]:
        consumer = entry.factory()
        assert not consumer.training and consumer.embed_dim == 16
        doc = type(consumer).__doc__ or ""
        assert len(doc) > 80 and (entry.caught_by is None or entry.caught_by in doc)


@pytest.mark.parametrize("name", sorted(CONSUMER_BUGS))
def test_each_zoo_bug_breaks_the_property_it_names_on_a_fixed_lane_set(name: str) -> None:
    entry = CONSUMER_BUGS[name]
    assert entry.caught_by in _fails(entry)


@pytest.mark.parametrize("name", sorted(CONSUMER_CORRECT))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_correct_consumers_hold_every_assert_on_a_fixed_lane_set(
    name: str, dtype: torch.dtype
) -> None:
    entry = CONSUMER_CORRECT[name]
    consumer = entry.factory().to(dtype)
    for assert_property in {**RELIABILITY, **ASSERTS}.values():
        assert 0.0 <= assert_property(consumer, fixed_lanes(entry, dtype)) <= 1.0


def test_each_property_alone_catches_some_bug() -> None:
    """For every property, a zoo bug that breaks it and holds every other property (for
    `deterministic`, see `test_a_random_consumer_fails_deterministic_alone`)."""
    alone = {}
    for name, entry in sorted(CONSUMER_BUGS.items()):
        failed = _fails(entry)
        if len(failed) == 1:
            alone.setdefault(failed.pop(), name)
    assert set(alone) - set(RELIABILITY) == {*ASSERTS, "inputs_unchanged"}, alone


def test_the_unmasked_fusion_changes_with_m_and_with_padded_content() -> None:
    """The bug in the wild breaks both padding properties; the masked fusion breaks neither."""
    assert _fails(CONSUMER_BUGS["unmasked_cross_attention"]) == {
        "ignores_appended_lanes",
        "ignores_padded_lanes",
    }
    assert _fails(CONSUMER_CORRECT["masked_cross_attention"]) == set()


def test_failure_names_the_output_element_and_the_variation() -> None:
    entry = CONSUMER_BUGS["zeroed_mean_over_slots"]
    with pytest.raises(LaneConsumerPropertyError) as info:
        assert_ignores_appended_lanes(entry.factory(), fixed_lanes(entry))
    message = str(info.value)
    assert "output['scene'][" in message
    assert "with 1 padded lane(s) appended (M 4 -> 5)" in message
    assert "x over" in message and CONSUMER_PROPERTIES["ignores_appended_lanes"].meaning in message


# -- the protocol ----------------------------------------------------------------------------------


def test_a_raising_consumer_fails_runs_with_the_cause() -> None:
    def consumer(lane_embedding: torch.Tensor, lane_mask: torch.Tensor) -> torch.Tensor:
        if not bool(lane_mask.any(-1).all()):
            raise IndexError("no lane to read")
        return lane_embedding.sum(1)

    with pytest.raises(LaneConsumerPropertyError, match="IndexError: no lane to read") as info:
        assert_consumer_finite(consumer, fixed_lanes())
    assert info.value.property_name == "runs"
    assert isinstance(info.value.__cause__, IndexError)


def test_an_output_that_is_not_tensors_fails_runs() -> None:
    with pytest.raises(LaneConsumerPropertyError, match=r"output\[1\] must be a tensor; got str"):
        assert_consumer_finite(lambda e, m: (e.sum(1), "x"), fixed_lanes())


def test_a_per_lane_output_fails_appended_lanes_saying_why() -> None:
    def per_lane(lane_embedding: torch.Tensor, lane_mask: torch.Tensor) -> torch.Tensor:
        return torch.where(lane_mask[..., None], lane_embedding, 0)  # [B, M, C]: grows with M

    with pytest.raises(LaneConsumerPropertyError, match="must not depend on M"):
        assert_ignores_appended_lanes(per_lane, fixed_lanes())


def test_a_plain_function_and_keyword_inputs_are_checked() -> None:
    def fuse(lane_embedding: torch.Tensor, lane_mask: torch.Tensor, *, scale: torch.Tensor):  # type: ignore[no-untyped-def]
        lanes = torch.where(lane_mask[..., None], lane_embedding, -torch.inf)
        pooled = torch.where(lane_mask.any(-1, keepdim=True), lanes.amax(1), 0)  # [B, C]
        return {"max": pooled * scale, "count": lane_mask.sum(-1)}  # int output: exact

    report = check_lane_consumer(
        fuse,
        embed_dim=4,
        other_inputs=lambda b, dtype, device: st.fixed_dictionaries(
            {"scale": st.floats(0.5, 2).map(lambda s: torch.full((b, 1), s, dtype=dtype))}
        ),
        order_invariant=True,
        dtype=torch.float64,
        settings=settings(max_examples=5, deadline=None, database=None),
    )
    assert report.passed and all(r.verdict == "pass" for r in report.results)


# -- check_lane_consumer ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONSUMER_BUGS))
def test_check_lane_consumer_catches_every_bug(name: str) -> None:
    error = _caught(name)
    assert error.property_name == CONSUMER_BUGS[name].caught_by, str(error)
    assert error.reproducer and error.dtype == "torch.float32"
    assert error.example.shape[0] == 1  # shrunk to one sample
    assert error.report is not None
    failed = [r for r in error.report.results if r.verdict == "FAIL"]
    assert failed and failed[0].property_name == error.property_name


@pytest.mark.parametrize("name", sorted(CONSUMER_CORRECT))
def test_check_lane_consumer_passes_every_correct_consumer(name: str) -> None:
    entry = CONSUMER_CORRECT[name]
    report = check_lane_consumer(
        entry.factory(),
        other_inputs=entry.other_inputs,
        order_invariant=True,
        dtype=[torch.float64, torch.float32],
    )
    assert report.passed, str(report)
    assert [r.verdict for r in report.results] == ["pass"] * 10, str(report)
    assert all(0.0 <= r.max_error_ratio <= 1.0 for r in report.results)
    assert "error/allowed" in str(report)


def test_order_invariance_is_excluded_unless_declared() -> None:
    entry = CONSUMER_BUGS["lane_index_positions"]
    report = check_lane_consumer(
        entry.factory(),
        other_inputs=entry.other_inputs,
        dtype=torch.float32,
        settings=settings(max_examples=5, deadline=None, database=None),
    )
    assert report.passed
    order = [r for r in report.results if r.property_name == "lane_order_invariant"]
    assert [r.verdict for r in order] == ["excluded"] and "order_invariant=False" in order[0].note


def test_reproducer_fails_the_same_way_in_a_fresh_process(tmp_path: Path) -> None:
    error = _caught("unmasked_cross_attention")  # its example holds BEV queries too
    assert error.property_name == "ignores_appended_lanes"
    script = tmp_path / "reproduce.py"
    script.write_text(error.reproducer)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert result.returncode == 1, result.stderr
    assert "LaneConsumerPropertyError" in result.stderr
    assert "lane-consumer property 'ignores_appended_lanes' failed" in result.stderr
    assert error.detail.split(" is ")[0] in result.stderr  # the same output element


def test_check_lane_consumer_never_touches_the_callers_module() -> None:
    consumer = MaskedCrossAttention().train()
    before = {k: v.clone() for k, v in consumer.state_dict().items()}
    check_lane_consumer(
        consumer,
        other_inputs=bev_queries(),
        dtype=torch.float64,
        properties=["finite"],
        settings=settings(max_examples=3, deadline=None, database=None),
    )
    assert consumer.training and next(consumer.parameters()).dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in consumer.state_dict().items())


def test_bad_arguments_name_what_is_expected() -> None:
    with pytest.raises(ValueError, match="pass embed_dim=C"):
        check_lane_consumer(lambda e, m: e.sum(1))
    with pytest.raises(ValueError, match="unknown properties"):
        check_lane_consumer(nn.Identity(), embed_dim=4, properties=["fast"])
    with pytest.raises(ValueError, match="dtype must be among"):
        check_lane_consumer(nn.Identity(), embed_dim=4, dtype=torch.int32)


# -- in a user's own @given test -------------------------------------------------------------------

_USER_CONSUMER = CONSUMER_CORRECT["masked_cross_attention"].factory()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lane_sets(num_lanes=(1, 8), garbage=None, other_inputs=bev_queries()))
def test_the_asserts_work_in_a_users_given_test(lanes: LaneSet) -> None:
    for assert_property in ASSERTS.values():
        assert assert_property(_USER_CONSUMER, lanes) <= 1.0


def test_finite_tries_a_batch_without_any_lane() -> None:
    def batch_mean(lane_embedding: torch.Tensor, lane_mask: torch.Tensor) -> torch.Tensor:
        lanes = torch.where(lane_mask[..., None], lane_embedding, 0)
        return lanes.sum((0, 1)) / lane_mask.sum()  # 0 / 0 only when no sample has a lane

    with pytest.raises(LaneConsumerPropertyError, match="with every lane padded") as info:
        assert_consumer_finite(batch_mean, fixed_lanes())
    assert info.value.property_name == "finite"
    assert not bool(info.value.example.lane_mask.any())  # the failing variant is the example


# -- reliability: inputs_unchanged and deterministic -----------------------------------------------


def _writes(where: str) -> Callable[..., torch.Tensor]:
    """A correct masked mean over lanes that then writes into one of its inputs, after use."""

    def consumer(
        lane_embedding: torch.Tensor, lane_mask: torch.Tensor, queries: torch.Tensor, *, scale: Any
    ) -> torch.Tensor:
        lanes = torch.where(lane_mask[..., None], lane_embedding, 0)
        out = lanes.sum(1) / lane_mask.sum(-1, keepdim=True).clamp(min=1) + queries.sum(1)
        out = out * scale["factor"]
        if where == "lane_embedding":
            lane_embedding.fill_(torch.nan)  # after use: its own output is right
        elif where == "lane_mask":
            lane_mask &= False
        elif where == "args[0]":
            queries.zero_()
        else:
            scale["factor"].mul_(2)
        return out

    return consumer


def _lanes_with_other_inputs() -> LaneSet:
    lanes = fixed_lanes()
    queries = torch.randn(3, 2, 16, generator=torch.Generator().manual_seed(1))
    return LaneSet(
        lanes.lane_embedding, lanes.lane_mask, (queries,), {"scale": {"factor": torch.ones(1)}}
    )


@pytest.mark.parametrize("where", ["lane_embedding", "lane_mask", "args[0]", "kwargs['scale']"])
def test_a_consumer_writing_into_an_input_fails_inputs_unchanged_naming_it(where: str) -> None:
    lanes = _lanes_with_other_inputs()
    kept = [
        lanes.lane_embedding.clone(),
        lanes.lane_mask.clone(),
        lanes.args[0].clone(),
        lanes.kwargs["scale"]["factor"].clone(),
    ]
    with pytest.raises(LaneConsumerPropertyError) as info:
        assert_consumer_finite(_writes(where), lanes)
    failure = info.value
    assert failure.property_name == "inputs_unchanged", str(failure)
    named = "kwargs['scale']['factor']" if where.startswith("kwargs") else where
    assert f"the consumer modified {named} in place" in failure.detail
    assert "out-of-place ops" in failure.detail and "torch.where" in failure.detail
    given = [
        lanes.lane_embedding,
        lanes.lane_mask,
        lanes.args[0],
        lanes.kwargs["scale"]["factor"],
    ]
    assert all(torch.equal(a, b) for a, b in zip(given, kept, strict=True))  # the caller's: intact


def test_nan_in_padded_lanes_left_as_it_was_is_not_a_change() -> None:
    """NaN == NaN when the copies are compared: padded lanes may hold NaN."""
    entry = CONSUMER_CORRECT["masked_cross_attention"]
    lanes = fixed_lanes(entry)
    nan_padded = LaneSet(
        torch.where(lanes.lane_mask[..., None], lanes.lane_embedding, torch.nan),
        lanes.lane_mask,
        lanes.args,
    )
    assert assert_consumer_finite(entry.factory(), nan_padded) == 0.0


def test_a_consumer_writing_into_its_inputs_after_use_is_reported_as_inputs_unchanged() -> None:
    """Once reported as `finite` (the next call read the NaN it wrote): now its own property,
    and no other row fails."""
    report_error = _check_failure(
        lambda e, m: _writes("lane_embedding")(e, m, torch.zeros(1, 1, 4), scale={"factor": 1.0}),
        embed_dim=4,
    )
    assert report_error.property_name == "inputs_unchanged", str(report_error)
    assert _failed_rows(report_error) == {"inputs_unchanged"}


def test_a_random_consumer_fails_deterministic_alone() -> None:
    """`functional_dropout_in_eval` is random: `deterministic` fails, and no later property
    that compares two runs is blamed for it (nor `runs` for Hypothesis' Flaky)."""
    error = _caught("functional_dropout_in_eval")
    assert error.property_name == "deterministic", str(error)
    assert _failed_rows(error) == {"deterministic"}
    assert "F.dropout(x, p) without training=self.training" in str(error)
    for row in error.report.results:  # type: ignore[union-attr]
        assert row.verdict in ("pass", "FAIL", "skipped"), row
        if row.verdict == "skipped":
            assert "deterministic failed first" in row.note


@pytest.mark.parametrize("name", ["padded_lanes_zeroed_in_place", "functional_dropout_in_eval"])
def test_the_reliability_zoo_consumers_fail_exactly_their_property(name: str) -> None:
    error = _caught(name)
    assert _failed_rows(error) == {CONSUMER_BUGS[name].caught_by}, str(error.report)


def test_a_flaky_failure_is_reported_as_deterministic() -> None:
    """State kept between calls: NaN on one call only. Hypothesis sees `finite` fail, then hold
    on the same lane set (Flaky): reported as `deterministic`, not `runs`."""
    calls = [0]

    def once_nan(lane_embedding: torch.Tensor, lane_mask: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        out = torch.where(lane_mask[..., None], lane_embedding, 0).sum(1)
        return out * torch.nan if calls[0] == 4 else out

    error = _check_failure(once_nan, embed_dim=4, properties=["finite"])
    assert error.property_name == "deterministic", str(error)
    assert "Hypothesis saw finite fail on a lane set and then hold" in error.detail
    assert _failed_rows(error) == {"deterministic"}


def test_nondeterminism_is_blamed_only_when_two_runs_differ() -> None:
    """A deterministic bug keeps its own property under `nondeterminism_first`."""
    entry = CONSUMER_BUGS["zeroed_mean_over_slots"]
    checked = nondeterminism_first(assert_ignores_appended_lanes)
    with pytest.raises(LaneConsumerPropertyError) as info:
        checked(entry.factory(), fixed_lanes(entry))
    assert info.value.property_name == "ignores_appended_lanes"
    random_entry = CONSUMER_BUGS["functional_dropout_in_eval"]
    with pytest.raises(LaneConsumerPropertyError) as info:
        nondeterminism_first(assert_ignores_padded_lanes)(
            _Noisy(random_entry.factory()), fixed_lanes(random_entry)
        )
    assert info.value.property_name == "deterministic"


class _Noisy:
    """A consumer whose output is pure noise: fails every comparison."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def __call__(self, lane_embedding: torch.Tensor, lane_mask: torch.Tensor) -> Any:
        out = self.consumer(lane_embedding, lane_mask)
        return {key: value + torch.randn(()) for key, value in out.items()}


def _check_failure(consumer: Any, **keywords: Any) -> LaneConsumerPropertyError:
    with pytest.raises(LaneConsumerPropertyError) as info:
        check_lane_consumer(
            consumer,
            dtype=torch.float32,
            settings=settings(max_examples=10, deadline=None, database=None),
            **keywords,
        )
    return info.value


def _failed_rows(error: LaneConsumerPropertyError) -> set[str]:
    assert error.report is not None
    return {r.property_name for r in error.report.results if r.verdict == "FAIL"}
