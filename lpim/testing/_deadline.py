"""One call of code under check, with a hard stop: `call_within(seconds, fn, *args)`.

A check that times its calls (`check_encoder(deadline=...)`) must also end when the code never
returns (a `while True:` loop, `time.sleep(10**6)`, a lock nobody releases). Two ways to stop a
call, chosen per call:

- **signal** (the main thread of a POSIX process, the usual case): the call runs where it was
  made, so every thread-local state of torch and of the code itself is as the caller left it;
  `signal.setitimer(ITIMER_REAL)` arms a timer whose `SIGALRM` handler raises
  `CallTimedOut` inside the call. Python runs signal
  handlers between bytecodes and wakes `time.sleep` and lock waits, so Python loops and
  waits stop at the limit; one long op in C (a torch kernel) runs to its end first, and the call
  stops when it returns to Python. The previous handler and timer are restored afterwards (an
  outer timer keeps its remaining time; one that expires first is left to fire), so calls
  nest and no timer stays armed.
- **thread** (any other thread, or a `SIGALRM` handler lpim cannot restore): the call runs in a
  daemon worker thread that carries the caller's thread-local torch state (grad mode,
  `torch.inference_mode`, autocast per device type with its dtype and cache setting,
  `TorchFunctionMode`s such as `lpim.sanitize`'s, the current CUDA device and stream). At the
  limit the caller gets `CallTimedOut` at once, whatever the call is doing; the worker is
  abandoned, and asked to stop (an asynchronous exception, which ends a Python loop at its next
  bytecode; a sleep, a wait or an op in C ends on its own time, in the background).

Measured (`benchmarks/deadline.py`, 2 shared CPU cores, torch 2.13 CPU, one torch thread, a
limit of 0.2 s; seconds until the caller got `CallTimedOut`):

| hang | signal (main thread) | thread (worker) | worker left running |
|---|---|---|---|
| `while True: pass` | 0.200 | 0.214 | no (stopped) |
| `time.sleep(10**6)` | 0.200 | 0.221 | yes |
| `lock.acquire()`, never released | 0.200 | 0.221 | yes |
| one 1.6 s float64 matmul | 1.40 (when it returns) | 0.239 | yes, until it ends |

A call that returns at once costs about 13 µs more with the signal stop, 120 µs with the worker.
An abandoned worker is a daemon thread: the process does not wait for it, but one still inside a
torch op when the interpreter exits makes the process abort (`terminate called without an active
exception`, exit status 134; seen with the matmul above). The main thread, where `lpim check`
and pytest run, never leaves one.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

__all__ = [
    "HARD_STOP_FACTOR",
    "HARD_STOP_FLOOR",
    "CallTimedOut",
    "HangMemory",
    "call_within",
    "hard_stop",
    "stop_method",
]

_T = TypeVar("_T")

HARD_STOP_FACTOR = 10.0
"""A timed call is stopped at `HARD_STOP_FACTOR` times its deadline (see `hard_stop`)."""

HARD_STOP_FLOOR = 1.0
"""...and never before `HARD_STOP_FLOOR` seconds (see `hard_stop`)."""


def hard_stop(deadline: float) -> float:
    """Seconds after which a call timed against `deadline` is stopped:
    `max(HARD_STOP_FACTOR * deadline, HARD_STOP_FLOOR)`.

    Why that bound: a call over the deadline counts only when the call made again on the same
    batch is over it too, because the first call on a new shape pays one-off costs (a CUDA
    context, cuBLAS handles, oneDNN primitives, lazy initialisation). Those costs do not scale
    with the deadline, and are typically 0.1 to 2 s: the floor keeps a tiny deadline from
    stopping them. Ten times the deadline keeps an encoder that is merely a few times too slow
    reported with the two times it took, not as a hang. A call that never returns is stopped
    twice (the call, then the call again), so it is reported within
    `2 * hard_stop(deadline)` seconds: 6 s for a deadline of 0.3 s.
    """
    return max(HARD_STOP_FACTOR * deadline, HARD_STOP_FLOOR)


class CallTimedOut(BaseException):
    """A call made by `call_within` had not returned
    after its limit, and was stopped.

    A `BaseException`, like `KeyboardInterrupt`: code under check that catches `Exception`
    (a retry loop, a fallback) does not swallow it, and Hypothesis neither shrinks nor replays
    it.

    Attributes:
        seconds: the limit, in seconds.
        elapsed: seconds from the call to the stop.
        method: `"signal"` (stopped inside the call, on the thread that made it) or
            `"thread"` (the caller was released; the call was abandoned in a worker thread).
        abandoned: True when the call may still be running in its abandoned worker thread
            (it ignored the request to stop, or had not yet reached a point where it could).
    """

    def __init__(
        self,
        seconds: float,
        elapsed: float,
        method: str,
        abandoned: bool,
        worker: threading.Thread | None = None,
    ) -> None:
        self.seconds, self.elapsed, self.method = seconds, elapsed, method
        self.abandoned = abandoned
        self._worker = worker
        if method == "signal":
            how = f"was stopped after {elapsed:.3g} s"
        elif abandoned:
            how = (
                f"was abandoned after {elapsed:.3g} s in its worker thread, where it may still "
                "be running"
            )
        else:
            how = f"was stopped after {elapsed:.3g} s (in its worker thread)"
        super().__init__(f"the call did not return within {seconds:.3g} s and {how}")

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for an abandoned call to end; True when nothing runs
        any more (the call was stopped in place, or its worker thread has ended)."""
        if self._worker is not None:
            self._worker.join(timeout)
            self.abandoned = self._worker.is_alive()
        return not self.abandoned


def stop_method() -> str:
    """How a call made from this thread now would be stopped: `"signal"` or `"thread"`
    (see the module docstring)."""
    if not hasattr(signal, "setitimer") or not hasattr(signal, "SIGALRM"):
        return "thread"
    if threading.current_thread() is not threading.main_thread():
        return "thread"
    if signal.getsignal(signal.SIGALRM) is None:  # installed outside Python: cannot restore it
        return "thread"
    return "signal"


def call_within(seconds: float, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """`fn(*args, **kwargs)`, stopped if it has not returned after `seconds`.

    Returns what `fn` returns and raises what it raises, unchanged. On the main thread of a
    POSIX process the call runs in place under a `SIGALRM` timer; elsewhere in a worker thread
    that carries the caller's thread-local torch state (see the module docstring for both, and
    what each can and cannot stop).

    Raises:
        CallTimedOut: the call had not returned after `seconds` (or, on the main thread, it
            caught the stop and returned late: it still took too long).
        ValueError: `seconds` is not a positive finite number.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"seconds must be a number; got {seconds!r}")
    if not 0 < seconds < float("inf"):
        raise ValueError(f"seconds must be a positive finite number; got {seconds}")
    if stop_method() == "signal":
        return _with_signal(float(seconds), fn, args, kwargs)
    return _in_worker(float(seconds), fn, args, kwargs)


@dataclass
class HangMemory:
    """Remembers that code under check hung, so that later calls fail at once.

    A call stopped by `call_within` (twice in a row, by the
    rule of the caller) is remembered here with the error that reported it; whoever holds the
    memory raises at once on every later call instead of waiting for the limit again, row
    after row. One memory per piece of code under check: `lpim.testing._protocol.Subject` has its
    own, and an engine may hand one to several subjects (every dtype of one encoder) to stop
    calling the encoder anywhere after one hang.

    Attributes:
        error: the error that reported the first hang (None while nothing has hung); its
            example is the input the code hung on.
    """

    error: BaseException | None = None

    @property
    def hung(self) -> str:
        """What hung, in words (`""` while nothing has)."""
        return "" if self.error is None else str(self.error)

    def remember(self, error: BaseException) -> None:
        """Record the hang `error` reported (the first one is kept)."""
        if self.error is None:
            self.error = error

    def __bool__(self) -> bool:
        return self.error is not None


# -- signal: in place, on the main thread ----------------------------------------------------------


@dataclass
class _Alarm:
    seconds: float
    started: float
    active: bool = True
    fired: bool = False


def _with_signal(seconds: float, fn: Callable[..., _T], args: Any, kwargs: Any) -> _T:
    previous_handler = signal.getsignal(signal.SIGALRM)
    previous_delay, previous_interval = signal.getitimer(signal.ITIMER_REAL)
    if 0 < previous_delay <= seconds:  # an outer timer expires first: it stops this call too
        return fn(*args, **kwargs)
    alarm = _Alarm(seconds, time.perf_counter())

    def on_alarm(signum: int, frame: object) -> None:
        if not alarm.active:
            return
        alarm.fired = True
        raise CallTimedOut(seconds, time.perf_counter() - alarm.started, "signal", False)

    signal.signal(signal.SIGALRM, on_alarm)
    try:
        # The interval raises again should the code catch the first one and carry on.
        signal.setitimer(signal.ITIMER_REAL, seconds, seconds)
        try:
            result = fn(*args, **kwargs)
        finally:
            alarm.active = False  # from here on, a late signal is ignored
            signal.setitimer(signal.ITIMER_REAL, 0)
        if alarm.fired:  # the code caught the stop and returned anyway: it still took too long
            raise CallTimedOut(seconds, time.perf_counter() - alarm.started, "signal", False)
        return result
    finally:
        alarm.active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:  # give the outer timer what it has left (fire it now if none)
            left = previous_delay - (time.perf_counter() - alarm.started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), previous_interval)


# -- thread: in a worker that carries the caller's torch state ----------------------------------


class _Stop(BaseException):
    """Raised asynchronously in an abandoned worker to end a Python loop."""


class _Worker(threading.Thread):
    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(name="lpim-call_within", daemon=True)
        self._work = target

    def run(self) -> None:
        try:
            self._work()
        except _Stop:  # asked to stop after its call had already ended
            pass


def _in_worker(seconds: float, fn: Callable[..., _T], args: Any, kwargs: Any) -> _T:
    state = _TorchState.capture()
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            try:
                with state.restored():
                    outcome["value"] = fn(*args, **kwargs)
            except _Stop:
                outcome["stopped"] = True
            except BaseException as error:  # handed to the caller as it is
                outcome["error"] = error
        finally:
            done.set()

    worker = _Worker(work)
    started = time.perf_counter()
    worker.start()
    if not done.wait(seconds):
        elapsed = time.perf_counter() - started
        _ask_to_stop(worker)
        worker.join(0.02)  # a Python loop ends at once; report whether it did
        raise CallTimedOut(seconds, elapsed, "thread", worker.is_alive(), worker)
    if "error" in outcome:
        error = outcome.pop("error")
        try:
            raise error
        finally:
            del error  # no reference cycle through the traceback
    return outcome["value"]  # type: ignore[no-any-return]


def _ask_to_stop(worker: threading.Thread) -> None:
    """Raise `_Stop` in `worker` at its next bytecode (best effort: C code finishes first)."""
    if worker.ident is None or not worker.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(worker.ident), ctypes.py_object(_Stop)
    )


@dataclass
class _TorchState:
    """The caller's thread-local torch state that a worker thread must run under."""

    grad: bool
    inference: bool
    autocast: list[tuple[str, torch.dtype]]
    autocast_cache: bool
    function_modes: list[Any]
    cuda: tuple[int, Any] | None

    @classmethod
    def capture(cls) -> _TorchState:
        autocast = [
            (device_type, torch.get_autocast_dtype(device_type))
            for device_type in _autocast_device_types()
            if torch.is_autocast_enabled(device_type)
        ]
        modes = [
            torch._C._get_function_stack_at(i) for i in range(torch._C._len_torch_function_stack())
        ]
        cuda = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            cuda = (torch.cuda.current_device(), torch.cuda.current_stream())
        return cls(
            grad=torch.is_grad_enabled(),
            inference=torch.is_inference_mode_enabled(),
            autocast=autocast,
            autocast_cache=torch.is_autocast_cache_enabled(),
            function_modes=modes,
            cuda=cuda,
        )

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if self.cuda is not None:
                device, stream = self.cuda
                stack.enter_context(torch.cuda.device(device))
                stack.enter_context(torch.cuda.stream(stream))
            if self.inference:
                stack.enter_context(torch.inference_mode())
            stack.enter_context(torch.set_grad_enabled(self.grad))
            for device_type, dtype in self.autocast:
                stack.enter_context(
                    torch.autocast(device_type, dtype=dtype, cache_enabled=self.autocast_cache)
                )
            for mode in self.function_modes:  # what TorchFunctionMode.__enter__ does
                torch._C._push_on_torch_function_stack(mode)
                stack.callback(torch._C._pop_torch_function_stack)
            yield


def _autocast_device_types() -> list[str]:
    supported = getattr(torch._C, "_autocast_supported_devices", None)
    types = list(supported()) if callable(supported) else ["cpu", "cuda"]
    return [t for t in types if torch.amp.is_autocast_available(t)]
