"""A call that hangs is stopped: `lpim.testing._deadline.call_within`, `Subject`, `check_encoder`.

- `call_within` returns what the call returns and raises what it raises; it stops a Python
  loop, `time.sleep` and a lock wait, on the main thread (a `SIGALRM` timer) and from any other
  thread (a worker thread it abandons); it restores the signal handler and any outer timer,
  nests, and never leaves a timer armed; the worker runs under the caller's grad mode,
  inference mode, autocast and `TorchFunctionMode`s.
- `Subject` with a deadline stops every call after `hard_stop(deadline)`: a merely slow first
  call is still timed again and passes when the second is quick; a call stopped twice is a
  `DeadlineExceeded` that says so, and the subject then raises at once, without calling again.
- End to end, `check_encoder` of an encoder that never returns ends with property `deadline`,
  in a subprocess with a timeout so that a regression cannot hang the suite.

No timing asserts except the generous bounds that tell "ended" from "hung". Every test that
could hang if the stop broke runs under `faulthandler.dump_traceback_later(..., exit=True)`: a
regression kills the run with every thread's traceback instead of hanging it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from lpim.batch import LaneBatch
from lpim.testing._deadline import (
    HARD_STOP_FLOOR,
    CallTimedOut,
    HangMemory,
    call_within,
    hard_stop,
    stop_method,
)
from lpim.testing._protocol import DeadlineExceeded, Subject
from lpim.zoo.misbehaving import MaskedMeanEncoder

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 0.1  # seconds: short, so that the tests of hangs stay quick
POSIX_SIGNALS = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no setitimer here")


@pytest.fixture(autouse=True)
def _never_hang() -> Iterator[None]:
    """Kill the test process (with tracebacks) if a test hangs: the stop under test broke."""
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def loop() -> None:
    while True:
        pass


def sleep() -> None:
    time.sleep(10**6)


def wait_on_lock() -> None:
    held = threading.Lock()
    held.acquire()
    held.acquire()  # nobody releases it


HANGS = {"loop": loop, "sleep": sleep, "lock": wait_on_lock}


def in_thread(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """`fn()` called from a new (non-main) thread; what it returned, or what it raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as error:
            outcome["error"] = error

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(timeout)
    assert not caller.is_alive(), f"the caller thread did not end within {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def main_thread_only() -> None:
    if stop_method() != "signal":
        pytest.skip("not on the main thread of a POSIX process (signal stop unavailable)")


# -- call_within: results and errors ---------------------------------------------------------------


def add(a: int, b: int = 0) -> int:
    return a + b


def fail() -> None:
    raise ValueError("the code's own error")


def test_returns_the_value_on_the_main_thread() -> None:
    assert call_within(1.0, add, 1, b=2) == 3


def test_returns_the_value_from_a_worker_thread() -> None:
    assert in_thread(lambda: call_within(1.0, add, 1, b=2)) == 3


def test_propagates_exceptions_unchanged() -> None:
    with pytest.raises(ValueError, match="the code's own error") as info:
        call_within(1.0, fail)
    assert info.traceback[-1].name == "fail"
    with pytest.raises(ValueError, match="the code's own error") as info:
        in_thread(lambda: call_within(1.0, fail))
    assert info.traceback[-1].name == "fail"


@pytest.mark.parametrize("seconds", [0, -1.0, float("inf"), float("nan")])
def test_seconds_must_be_positive_and_finite(seconds: float) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        call_within(seconds, add, 1)


def test_seconds_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="seconds must be a number"):
        call_within(True, add, 1)  # type: ignore[arg-type]


def test_stop_method_is_signal_on_the_main_thread_only() -> None:
    main_thread_only()
    assert stop_method() == "signal"
    assert in_thread(stop_method) == "thread"


# -- call_within: hangs are stopped ----------------------------------------------------------------


@POSIX_SIGNALS
@pytest.mark.parametrize("kind", list(HANGS))
def test_a_hang_is_stopped_on_the_main_thread(kind: str) -> None:
    main_thread_only()
    with pytest.raises(CallTimedOut) as info:
        call_within(LIMIT, HANGS[kind])
    stop = info.value
    assert stop.method == "signal" and not stop.abandoned and stop.join(0)
    assert stop.seconds == LIMIT and stop.elapsed >= LIMIT
    assert f"did not return within {LIMIT:.3g} s and was stopped" in str(stop)


@pytest.mark.parametrize("kind", list(HANGS))
def test_a_hang_is_stopped_from_a_worker_thread(kind: str) -> None:
    with pytest.raises(CallTimedOut) as info:
        in_thread(lambda: call_within(LIMIT, HANGS[kind]))
    stop = info.value
    assert stop.method == "thread" and stop.seconds == LIMIT and stop.elapsed >= LIMIT
    assert f"did not return within {LIMIT:.3g} s" in str(stop)
    if kind == "loop":  # asked to stop, a Python loop ends: nothing is left running
        assert stop.join(5.0) and not stop.abandoned
    else:  # a sleep and a lock wait cannot be interrupted from outside: abandoned, running
        assert stop.abandoned and not stop.join(0.01)
        assert "may still be running" in str(stop)


@POSIX_SIGNALS
def test_code_that_catches_the_stop_and_returns_is_still_stopped() -> None:
    main_thread_only()

    def stubborn() -> str:
        try:
            loop()
        except BaseException:  # what careless code under check does
            pass
        return "returned late"

    with pytest.raises(CallTimedOut):
        call_within(LIMIT, stubborn)


def test_code_that_catches_exception_does_not_swallow_the_stop() -> None:
    def careless() -> None:
        while True:
            try:
                time.sleep(10**6)
            except Exception:  # CallTimedOut is a BaseException: not caught here
                pass

    assert not issubclass(CallTimedOut, Exception)
    with pytest.raises(CallTimedOut):
        call_within(LIMIT, careless)


# -- call_within: signal handler and timers are restored -------------------------------------------


@POSIX_SIGNALS
@pytest.mark.parametrize("outcome", ["returns", "raises", "hangs"])
def test_the_previous_handler_is_restored_and_no_timer_is_left(outcome: str) -> None:
    main_thread_only()
    fired: list[int] = []

    def mine(signum: int, frame: object) -> None:
        fired.append(signum)

    before = signal.signal(signal.SIGALRM, mine)
    try:
        fn = {"returns": lambda: 1, "raises": fail, "hangs": loop}[outcome]
        expected = pytest.raises((ValueError, CallTimedOut))
        with expected if outcome != "returns" else contextlib.nullcontext():
            call_within(LIMIT, fn)
        assert signal.getsignal(signal.SIGALRM) is mine
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert fired == []
    finally:
        signal.signal(signal.SIGALRM, before)


@POSIX_SIGNALS
def test_an_outer_timer_keeps_its_remaining_time_and_fires() -> None:
    main_thread_only()
    fired: list[float] = []

    def outer(signum: int, frame: object) -> None:
        fired.append(time.perf_counter())

    before = signal.signal(signal.SIGALRM, outer)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        started = time.perf_counter()
        with pytest.raises(CallTimedOut):
            call_within(LIMIT, loop)  # expires before the outer timer: this call's own stop
        assert signal.getsignal(signal.SIGALRM) is outer
        left, interval = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < left < 1.0 and interval == 0
        assert fired == []
        while not fired and time.perf_counter() - started < 30:
            time.sleep(0.01)  # the outer timer still fires, once, on its own time
        assert len(fired) == 1 and fired[0] - started >= 1.0 - 0.01
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


@POSIX_SIGNALS
def test_calls_nest_and_the_tighter_limit_wins() -> None:
    main_thread_only()
    with pytest.raises(CallTimedOut) as info:
        call_within(5.0, call_within, LIMIT, loop)  # inner limit first
    assert info.value.seconds == LIMIT
    with pytest.raises(CallTimedOut) as info:
        call_within(LIMIT, call_within, 5.0, loop)  # outer limit first
    assert info.value.seconds == LIMIT
    assert call_within(5.0, call_within, 1.0, add, 2) == 2
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler)


# -- call_within: the worker runs under the caller's torch state ---------------------------------


def torch_state() -> tuple[bool, bool, bool, torch.dtype, str]:
    return (
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
        torch.is_autocast_enabled("cpu"),
        torch.get_autocast_dtype("cpu"),
        threading.current_thread().name,
    )


def test_the_worker_carries_grad_mode_and_autocast() -> None:
    def caller() -> tuple[Any, Any]:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            inside = call_within(1.0, torch_state)
        return inside, call_within(1.0, torch_state)

    inside, outside = in_thread(caller)
    assert inside == (False, False, True, torch.bfloat16, "lpim-call_within")
    assert outside[:3] == (True, False, False) and outside[4] == "lpim-call_within"


def test_the_worker_carries_inference_mode() -> None:
    def caller() -> Any:
        with torch.inference_mode():
            return call_within(1.0, torch_state), call_within(1.0, lambda: torch.ones(2) * 2)

    state, made = in_thread(caller)
    assert state[:2] == (False, True) and made.is_inference()


def test_the_worker_carries_torch_function_modes() -> None:
    class Recording(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_function__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            self.seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    def caller() -> list[str]:
        with Recording() as mode:
            call_within(1.0, lambda: torch.add(torch.zeros(1), 1))
        return mode.seen

    assert "add" in in_thread(caller)


def test_results_match_on_both_paths_under_autocast() -> None:
    """The same op under autocast gives the same dtype whether called in place or in a worker."""
    a = torch.randn(4, 4)

    def product() -> torch.dtype:
        return (a @ a).dtype

    def caller() -> torch.dtype:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return call_within(1.0, product)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        here = call_within(1.0, product)
    assert here == in_thread(caller) == torch.bfloat16


# -- hard_stop and HangMemory -------------------------------------------------------------------


def test_hard_stop_is_ten_deadlines_but_never_under_a_second() -> None:
    assert hard_stop(0.3) == pytest.approx(3.0)
    assert hard_stop(0.05) == HARD_STOP_FLOOR == 1.0
    assert hard_stop(2.0) == pytest.approx(20.0)


def test_hang_memory_keeps_the_first_hang() -> None:
    memory = HangMemory()
    assert not memory and memory.hung == ""
    first, second = RuntimeError("first"), RuntimeError("second")
    memory.remember(first)
    memory.remember(second)
    assert memory and memory.error is first and memory.hung == "first"


# -- Subject: every timed call is stopped; a hang is remembered ------------------------------------


def batch() -> LaneBatch:
    return LaneBatch(torch.ones(1, 2, 3, 2), torch.ones(1, 2, 3, dtype=torch.bool))


class Scripted(MaskedMeanEncoder):
    """The masked mean; call `i` first does `script[i]` (the last entry repeats): `"hang"`
    loops forever, a number sleeps that many seconds."""

    def __init__(self, *script: str | float) -> None:
        super().__init__()
        self.script = script
        self.calls = 0

    def forward(self, points: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if step == "hang":
            loop()
        elif isinstance(step, float | int) and step:
            time.sleep(step)
        return super().forward(points, point_mask)


def subject(encoder: Scripted, deadline: float) -> Subject:
    return Subject(encoder.eval(), torch.float32, torch.device("cpu"), deadline=deadline)


def test_a_slow_first_call_is_timed_again_and_passes() -> None:
    encoder = Scripted(0.3, 0)  # 0.3 s: over the deadline, under the stop (1 s)
    out = subject(encoder, 0.05)(batch())
    assert out.lane_embedding.shape == (1, 2, 8) and encoder.calls == 2


def test_a_stopped_first_call_is_made_again_and_passes_if_quick() -> None:
    encoder = Scripted("hang", 0)  # say, a warm-up interrupted by the stop
    checked = subject(encoder, 0.05)
    checked(batch())
    assert encoder.calls == 2 and not checked.hangs


def test_slow_twice_reports_both_times_and_is_not_a_hang() -> None:
    encoder = Scripted(0.2)
    checked = subject(encoder, 0.05)
    with pytest.raises(DeadlineExceeded, match=r"took 0\.2\d* s, and 0\.2\d* s when timed again"):
        checked(batch())
    assert not checked.hangs and encoder.calls == 2


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_a_hang_is_stopped_twice_then_remembered(where: str) -> None:
    encoder = Scripted("hang")
    checked = subject(encoder, 0.05)
    call: Callable[[], object] = lambda: checked(batch())  # noqa: E731
    run = call if where == "main thread" else (lambda: in_thread(call))
    with pytest.raises(DeadlineExceeded) as info:
        run()
    error = info.value
    assert error.hung and error.stopped == (True, True) and error.stop == hard_stop(0.05)
    assert "did not return within 1 s and was stopped" in str(error)
    assert "deadline is 0.05 s" in str(error)
    assert encoder.calls == 2 and checked.hangs.error is error
    # every later call raises at once, without calling, naming the earlier hang and its batch
    with pytest.raises(DeadlineExceeded, match="on an earlier call of this check") as later:
        run()
    assert encoder.calls == 2
    assert later.value.hung and later.value.batch is error.batch


def test_a_shared_memory_stops_every_subject_that_holds_it() -> None:
    memory = HangMemory()
    first, second = subject(Scripted("hang"), 0.05), subject(Scripted(0), 0.05)
    first.hangs = second.hangs = memory
    with pytest.raises(DeadlineExceeded):
        first(batch())
    with pytest.raises(DeadlineExceeded, match="on an earlier call"):
        second(batch())
    assert second.encoder.calls == 0  # type: ignore[attr-defined]


def test_without_a_deadline_nothing_is_stopped() -> None:
    encoder = Scripted(0.2)
    Subject(encoder.eval(), torch.float32, torch.device("cpu"))(batch())
    assert encoder.calls == 1


# -- end to end ------------------------------------------------------------------------------------


_CHECK_A_HANG = """
import time, torch
from hypothesis import settings
from torch import nn
from lpim.testing import EncoderPropertyError, check_encoder

class Forever(nn.Module):
    in_dim = 2

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(2, 8)

    def forward(self, points, point_mask):
        while True:
            pass

started = time.perf_counter()
try:
    check_encoder(
        Forever(),
        deadline=0.3,
        dtype=torch.float32,
        settings=settings(max_examples=5, database=None, deadline=None),
    )
except EncoderPropertyError as failure:
    print("property:", failure.property_name)
    print("message:", str(failure).splitlines()[0])
    print("rows:", sorted({r.verdict for r in failure.report.results}))
else:
    print("property: none")
print(f"seconds: {time.perf_counter() - started:.2f}")
"""


def test_check_encoder_reports_an_encoder_that_never_returns() -> None:
    """The whole check ends (6 s measured: two stops of 3 s, then no more calls), well within
    the generous bound; a subprocess with a timeout keeps a regression from hanging the suite."""
    bound = 60
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_CHECK_A_HANG)],
            capture_output=True,
            text=True,
            timeout=bound,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"check_encoder of an encoder that never returns did not end in {bound} s")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert lines["property"] == "deadline", result.stdout
    assert "did not return within 3 s and was stopped" in lines["message"]
    assert "the deadline is 0.3 s per call" in lines["message"]
    assert "FAIL" in lines["rows"]
    assert float(lines["seconds"]) < bound
