"""lpim.sanitize never breaks a model: every case runs as it does without the sanitizer, is seen
where it can be read, and leaves no hook, patch or mode behind (issue 22, item 6)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as torch_module

import lpim
from lpim.cli import main
from lpim.errors import UsageValueError
from lpim.sanitizer import SanitizeReport, _watch

torch.set_num_threads(1)

H, E, L = 4, 16, 5
SDPA, MHA_FORWARD = F.scaled_dot_product_attention, F.multi_head_attention_forward


def _torch_state() -> tuple[object, ...]:
    """Everything the sanitizer may change in torch: hooks, this thread's modes, F's names."""
    return (
        dict(torch_module._global_forward_pre_hooks),
        dict(torch_module._global_forward_hooks),
        dict(torch_module._global_forward_hooks_always_called),
        torch._C._len_torch_function_stack(),
        F.scaled_dot_product_attention,
        F.multi_head_attention_forward,
        lpim.sanitize.active,
    )


@pytest.fixture(autouse=True)
def torch_left_as_it_was() -> Iterator[None]:
    before = _torch_state()
    assert before[4] is SDPA and before[5] is MHA_FORWARD and not before[6]
    yield
    assert _torch_state() == before


def _kinds(report: SanitizeReport) -> list[str]:
    return [finding.kind for finding in report.findings]


def _x(n: int = 3) -> torch.Tensor:
    return torch.randn(n, L, E, generator=torch.Generator().manual_seed(0))


def _padding(n: int = 3) -> torch.Tensor:
    """`(n, L)` bool key_padding_mask, True = ignore: entry i has its last i keys padded."""
    return torch.arange(L) >= L - torch.arange(n)[:, None]


# -- subclasses with their own forward --------------------------------------------------------


class SelfAttention(nn.MultiheadAttention):
    """A subclass whose forward takes other parameters than nn.MultiheadAttention's."""

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> Any:  # type: ignore[override]
        return super().forward(x, x, x, key_padding_mask=pad, need_weights=False)[0]


class Layer(nn.TransformerEncoderLayer):
    """A layer subclass whose forward takes other parameters than torch's."""

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, src_key_padding_mask=pad)


class Tagged(nn.MultiheadAttention):
    """A subclass whose forward takes every parameter torch's does, and one more."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,  # type: ignore[no-untyped-def,override]
                attn_mask=None, tag: str = "") -> Any:  # fmt: skip
        return super().forward(
            query, key, value, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
            need_weights=need_weights,
        )  # fmt: skip


def _same_with_and_without(run: Callable[[], Any]) -> SanitizeReport:
    """Run `run` without and with the sanitizer: the same output, bit for bit; the report."""
    torch.manual_seed(0)
    plain = run()
    with lpim.sanitize(on_finding="collect") as report:
        torch.manual_seed(0)
        watched = run()
    assert torch.equal(plain, watched)
    return report


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_subclass_with_its_own_forward_runs_and_its_attention_is_still_seen(grad: bool) -> None:
    torch.manual_seed(0)
    mha = SelfAttention(E, H, batch_first=True).eval()
    x, pad = _x(), _padding()
    with torch.set_grad_enabled(grad):
        report = _same_with_and_without(lambda: mha(x, pad))
        assert report.ok and report.calls == 1
        # eval + no_grad: torch's fused fast path, as without the sanitizer, which reads nothing
        unread = f"{_watch.SKIP_FORWARD} (SelfAttention.forward)"
        assert report.skipped == ({} if grad else {unread: 1})
        # the mask it passes on is read where it reaches torch (its slow path; the fused fast
        # path of eval + no_grad reads nothing, as without the subclass's own forward)
        with lpim.sanitize(on_finding="collect") as report:
            mha.train()(x, pad.float())
    assert _kinds(report) == ["float_mask_as_additive"]
    assert report.findings[0].api == "F.multi_head_attention_forward"


def test_layer_subclass_with_its_own_forward_is_read_at_its_attention() -> None:
    torch.manual_seed(0)
    layer = Layer(E, H, 2 * E, dropout=0.0, batch_first=True)
    x, pad = _x(), _padding()
    report = _same_with_and_without(lambda: layer(x, pad))
    assert report.ok and report.calls == 1
    with lpim.sanitize(on_finding="collect") as report:
        layer(x, pad.float())
    assert _kinds(report) == ["float_mask_as_additive"]
    assert report.findings[0].api == "nn.MultiheadAttention"  # its self_attn, a watched module


def test_subclass_taking_torchs_parameters_is_read_at_its_call() -> None:
    torch.manual_seed(0)
    mha = Tagged(E, H, batch_first=True)
    x = _x(5)
    per_entry = _padding(5)[:, None, :].expand(-1, L, -1)  # (N, L, S), True = blocked
    with lpim.sanitize(on_finding="collect") as report:
        mha(x, x, x, attn_mask=per_entry.repeat(H, 1, 1), tag="x")
    assert _kinds(report) == ["head_major_3d_mask"] and report.findings[0].api == "Tagged"


def test_a_call_torch_refuses_raises_torchs_own_error() -> None:
    mha, x = nn.MultiheadAttention(E, H, batch_first=True), _x()
    with pytest.raises(TypeError) as plain:
        mha(x)  # no key, no value
    with pytest.raises(TypeError) as watched, lpim.sanitize(on_finding="raise") as report:
        mha(x)
    assert str(watched.value) == str(plain.value)
    assert report.calls == 0 and not report.skipped


# -- tensors without data, and zero-size calls ---------------------------------------------------


def test_meta_tensors_are_counted_and_not_read() -> None:
    q = torch.randn(2, H, L, E // H, device="meta")
    mha = nn.MultiheadAttention(E, H, batch_first=True, device="meta")
    x = _x().to("meta")
    with lpim.sanitize(on_finding="raise") as report:
        out = F.scaled_dot_product_attention(q, q, q, attn_mask=torch.zeros(L, L, device="meta"))
        mha(x, x, x, key_padding_mask=_padding().float().to("meta"))
    assert out.is_meta
    assert report.calls == 2 and report.skipped == {_watch.SKIP_NO_DATA: 2}
    assert "2 call(s) not read: tensors without data" in report.table()


def test_fake_tensors_are_counted_and_not_read() -> None:
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    with FakeTensorMode():
        q = torch.randn(2, H, L, E // H)
        float_01 = torch.zeros(L, L)
        with lpim.sanitize(on_finding="raise") as report:
            out = F.scaled_dot_product_attention(q, q, q, attn_mask=float_01)
    assert isinstance(out, FakeTensor)
    assert report.skipped == {_watch.SKIP_NO_DATA: 1}


def test_real_tensors_under_a_dispatch_mode_are_read_unseen_by_it() -> None:
    """A dispatch mode (a FlopCounterMode, a FakeTensorMode allowing real inputs) sees the
    model's operations, and none of the sanitizer's."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, batch_first=True)
    x, pad = _x(), _padding().float()

    def ops() -> list[str]:
        with Log() as log:
            mha(x, x, x, key_padding_mask=pad)
        return log.ops

    plain = ops()
    with lpim.sanitize(on_finding="collect") as report:
        watched = ops()
    assert watched == plain
    assert _kinds(report) == ["float_mask_as_additive"]


def test_sdpa_with_zero_keys() -> None:
    q, k = torch.randn(2, H, L, E // H), torch.randn(2, H, 0, E // H)
    keep = torch.ones(L, 0, dtype=torch.bool)
    report = _same_with_and_without(lambda: F.scaled_dot_product_attention(q, k, k, keep))
    assert report.ok and report.skipped == {_watch.SKIP_EMPTY: 1}


def test_empty_batch_with_a_correct_mask_gives_nothing() -> None:
    mha = nn.MultiheadAttention(E, H, batch_first=True)
    x = torch.randn(0, L, E)
    blocked = torch.zeros(0, L, L, dtype=torch.bool)  # (0 * H, L, S)
    report = _same_with_and_without(lambda: mha(x, x, x, attn_mask=blocked)[0])
    assert report.ok and report.calls == 1


def test_an_error_while_reading_a_call_skips_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise IndexError("a bug in a check")

    monkeypatch.setattr(_watch, "inspect_sdpa", broken)
    monkeypatch.setattr(_watch, "inspect_mha", broken)
    q, x, mha = torch.randn(2, H, L, E // H), _x(), nn.MultiheadAttention(E, H, batch_first=True)
    report = _same_with_and_without(lambda: F.scaled_dot_product_attention(q, q, q))
    assert report.skipped == {f"{_watch.SKIP_UNREAD} (IndexError: a bug in a check)": 1}
    report = _same_with_and_without(lambda: mha(x, x, x)[0])
    assert report.calls == 1 and len(report.skipped) == 1


def test_torch_compile_under_the_sanitizer() -> None:
    """Compiled code runs and gives the eager output; its attention calls are read eagerly (a
    graph break at each), at the user's line."""

    def attend(x: torch.Tensor, float_mask: torch.Tensor) -> torch.Tensor:
        q = x.view(1, 2, L, 4)
        return F.scaled_dot_product_attention(q, q, q, attn_mask=float_mask)  # the call

    x, float_01 = torch.randn(2 * L * 4), torch.ones(L, L)
    with lpim.sanitize(on_finding="collect") as report:
        out = torch.compile(attend)(x, float_01)
    torch.testing.assert_close(out, attend(x, float_01))
    assert _kinds(report) == ["float_mask_as_additive"]
    call_line = attend.__code__.co_firstlineno + 2  # def, q = ..., the call
    assert report.findings[0].where.endswith(f"test_sanitize_robust.py:{call_line}")


def test_a_reference_taken_during_a_session_is_torchs_function_after_it() -> None:
    """An import made under `lpim sanitize` may keep `F.scaled_dot_product_attention` as it
    was then: once the session ends it is torch's function again, eager and compiled (no
    graph break)."""
    with lpim.sanitize(on_finding="collect"):
        sdpa = F.scaled_dot_product_attention
    assert sdpa is not SDPA  # the premise: it kept the sanitizer's name

    def attend(x: torch.Tensor) -> torch.Tensor:
        q = x.view(1, 2, L, 4)
        return sdpa(q, q, q, attn_mask=torch.ones(L, L))

    x = torch.randn(2 * L * 4)
    assert torch.equal(attend(x), SDPA(*[x.view(1, 2, L, 4)] * 3, attn_mask=torch.ones(L, L)))
    assert torch._dynamo.explain(attend)(x).graph_break_count == 0


# -- threads ---------------------------------------------------------------------------------------


def test_attention_in_other_threads_is_seen() -> None:
    q = torch.randn(2, H, L, E // H)
    float_01 = (~_padding(2))[:, None, None, :].float()  # 1 = attend, as if it were bool
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, batch_first=True)
    x = _x()
    sites: dict[str, int] = {}

    def work() -> None:
        sites["sdpa"] = _next_line()
        F.scaled_dot_product_attention(q, q, q, attn_mask=float_01)
        sites["mha"] = _next_line()
        mha(x, x, x, key_padding_mask=_padding().float())

    with lpim.sanitize(on_finding="collect") as report:
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    assert _kinds(report) == ["float_mask_as_additive"] * 2
    assert [f.where.rsplit(":", 1)[1] for f in report.findings] == [
        str(sites["sdpa"]),
        str(sites["mha"]),
    ]
    assert report.calls == 2


def test_raise_in_another_thread_reaches_its_caller() -> None:
    q = torch.randn(2, H, L, E // H)
    float_01 = torch.ones(L, L)
    with lpim.sanitize(on_finding="raise"), ThreadPoolExecutor(1) as pool:
        future = pool.submit(F.scaled_dot_product_attention, q, q, q, attn_mask=float_01)
        with pytest.raises(lpim.MaskHazardError):
            future.result()


@pytest.mark.parametrize("first_out", ["first_in", "last_in"])
def test_sessions_in_two_threads_end_in_any_order(first_out: str) -> None:
    q = torch.randn(2, H, L, E // H)
    events = {
        (what, name): threading.Event()
        for what in ("entered", "called", "leave", "left")
        for name in "ab"
    }
    reports: dict[str, SanitizeReport] = {}
    errors: list[BaseException] = []

    def wait(what: str, name: str) -> None:
        assert events[what, name].wait(timeout=30), (what, name)

    def thread(name: str) -> None:
        try:
            with lpim.sanitize(on_finding="collect") as report:
                reports[name] = report
                events["entered", name].set()
                wait("entered", "a"), wait("entered", "b")
                F.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(L, L))
                events["called", name].set()
                wait("called", "a"), wait("called", "b")  # both calls made under both sessions
                wait("leave", name)
            events["left", name].set()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = {name: threading.Thread(target=thread, args=(name,)) for name in "ab"}
    threads["a"].start()
    wait("entered", "a")
    threads["b"].start()  # b enters after a
    first, second = ("a", "b") if first_out == "first_in" else ("b", "a")
    events["leave", first].set()
    wait("left", first)
    assert lpim.sanitize.active  # the other session is still on
    events["leave", second].set()
    for t in threads.values():
        t.join(timeout=30)
    assert not errors, errors
    assert [reports[name].findings[0].count for name in "ab"] == [2, 2]  # each saw both calls


@pytest.mark.parametrize("exit_order", list(itertools.permutations(range(3))))
def test_sessions_in_one_thread_end_in_any_order(exit_order: tuple[int, ...]) -> None:
    """`enable`, `with` blocks and modes end in any order; each session records exactly the
    calls made while it was on."""
    q, float_01 = torch.randn(1, 1, 2, 2), torch.ones(2, 2)
    sessions = [lpim.sanitize(on_finding="collect") for _ in range(3)]
    reports = [session.__enter__() for session in sessions]
    F.scaled_dot_product_attention(q, q, q, attn_mask=float_01)
    for ended, index in enumerate(exit_order):
        sessions[index].__exit__(None, None, None)
        F.scaled_dot_product_attention(q, q, q, attn_mask=float_01)
        assert lpim.sanitize.active == (ended < 2)
    # on for the first call and for one more per session that ended after it
    assert [report.calls for report in reports] == [1 + exit_order.index(i) for i in range(3)]


def test_many_threads_starting_and_ending_sessions_at_once() -> None:
    """Sessions begun and ended concurrently in four threads, under one long session: every
    call counted once by the long one, each thread's own sessions see their own call."""
    q, float_01 = torch.randn(1, 1, 3, 2), torch.ones(3, 3)
    rounds, workers = 20, 4
    own: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for _ in range(rounds):
                with lpim.sanitize(on_finding="collect") as report:
                    F.scaled_dot_product_attention(q, q, q, attn_mask=float_01)
                with lock:
                    own.append(report.findings[0].count if report.findings else 0)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    with lpim.sanitize(on_finding="collect") as outer:
        threads = [threading.Thread(target=work) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    assert outer.calls == rounds * workers
    assert len(own) == rounds * workers and min(own) >= 1


def test_a_session_ended_during_a_forward_in_another_thread() -> None:
    """The forward's post-hook never runs (the hooks are gone): the thread's next calls under
    a new session are still read, not taken for calls nested in that forward."""
    inside, ended, returned, again, done = (threading.Event() for _ in range(5))
    q, float_01 = torch.randn(1, 1, 3, 2), torch.ones(3, 3)

    class Waits(nn.MultiheadAttention):
        def forward(self, query, key, value, key_padding_mask=None, need_weights=True,  # type: ignore[no-untyped-def,override]
                    attn_mask=None) -> Any:  # fmt: skip
            inside.set()
            assert ended.wait(timeout=30)
            return super().forward(query, key, value, need_weights=need_weights)

    mha, x = Waits(E, H, batch_first=True), _x()

    def work() -> None:
        mha(x, x, x)
        returned.set()
        assert again.wait(timeout=30)
        F.scaled_dot_product_attention(q, q, q, attn_mask=float_01)
        done.set()

    worker = threading.Thread(target=work)
    with lpim.sanitize(on_finding="collect"):
        worker.start()
        assert inside.wait(timeout=30)
    ended.set()
    assert returned.wait(timeout=30)  # the forward ended while no hook was installed
    with lpim.sanitize(on_finding="collect") as report:
        again.set()
        assert done.wait(timeout=30)
    worker.join()
    assert _kinds(report) == ["float_mask_as_additive"]


def test_enable_in_one_thread_disable_in_another() -> None:
    """The enabling thread's mode goes inert, and is taken off its stack at its next session."""
    started, disabled = threading.Event(), threading.Event()
    depths: list[int] = []

    def enabling_thread() -> None:
        lpim.sanitize.enable(on_finding="collect")
        started.set()
        disabled.wait()
        torch.ones(1).add(1)  # through the inert mode: nothing happens
        with lpim.sanitize(on_finding="collect"):
            pass
        depths.append(torch._C._len_torch_function_stack())

    worker = threading.Thread(target=enabling_thread)
    worker.start()
    started.wait()
    assert lpim.sanitize.disable() is not None
    disabled.set()
    worker.join()
    assert depths == [0]


# -- arguments, and scripts that leave modes entered ---------------------------------------------


def test_bad_on_finding_to_enable_changes_nothing() -> None:
    report = lpim.sanitize.enable(on_finding="collect")
    try:
        state = _torch_state()
        with pytest.raises(UsageValueError) as caught:
            lpim.sanitize.enable(on_finding="bogus")  # type: ignore[arg-type]
        assert isinstance(caught.value, ValueError)
        message = str(caught.value)
        assert "on_finding" in message and "'collect'" in message and "'bogus'" in message
        assert _torch_state() == state
        F.scaled_dot_product_attention(*[torch.randn(1, 1, 2, 2)] * 3, attn_mask=torch.ones(2, 2))
        assert _kinds(report) == ["float_mask_as_additive"]  # the first session is still on
    finally:
        assert lpim.sanitize.disable() is report


def test_script_that_leaves_a_mode_entered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "leaves_a_mode.py"
    script.write_text(
        "import torch\n"
        "from torch.overrides import TorchFunctionMode\n"
        "q = torch.randn(1, 2, 3, 4)\n"
        "torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(3, 3))\n"
        "TorchFunctionMode().__enter__()  # never exited\n"
    )
    assert main(["sanitize", str(script)]) == 1
    captured = capsys.readouterr()
    assert "float_mask_as_additive" in captured.out and "1 finding(s)" in captured.out
    assert "left 1 torch function mode(s) entered" in captured.err
    assert "Traceback" not in captured.err


def _next_line() -> int:
    import inspect

    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno + 1
