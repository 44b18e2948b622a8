"""lpim.sanitize: each finding where the call's tensors prove it, none where they do not."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as torch_module

import lpim
from lpim.masks import to_attn_mask_3d, to_key_padding_mask, to_sdpa_mask
from lpim.sanitizer import KINDS, SanitizeReport

torch.set_num_threads(1)

H, C = 4, 16


def _point_mask(b: int = 3, m: int = 4, n: int = 5) -> torch.Tensor:
    """``[b, m, n]`` right-padded, lane j of sample i has ``(i + j) % (n + 1)`` points: empties."""
    counts = (torch.arange(b)[:, None] + torch.arange(m)[None]) % (n + 1)  # [b, m]
    return torch.arange(n) < counts[..., None]  # [b, m, n]


POINT_MASK = _point_mask()
LANES, S = POINT_MASK.shape[0] * POINT_MASK.shape[1], POINT_MASK.shape[2] + 1  # B*M, 1 + N


def _mha() -> nn.MultiheadAttention:
    torch.manual_seed(0)
    return nn.MultiheadAttention(C, H, batch_first=True).eval()


def _tokens() -> torch.Tensor:
    return torch.randn(LANES, S, C, generator=torch.Generator().manual_seed(1))


def _line() -> str:
    """``file:line`` of the caller's next line: where a finding made there must point."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return f"test_sanitize.py:{frame.f_back.f_lineno + 1}"


def _kinds(report: SanitizeReport) -> list[str]:
    return [finding.kind for finding in report.findings]


def _torch_hook_state() -> tuple[object, ...]:
    return (
        dict(torch_module._global_forward_pre_hooks),
        dict(torch_module._global_forward_hooks),
        dict(torch_module._global_forward_hooks_always_called),
        torch._C._len_torch_function_stack(),
    )


# -- each kind, where the call proves it --------------------------------------------------------


def test_head_major_3d_mask_found_at_the_users_line() -> None:
    mha, x = _mha(), _tokens()
    per_lane = to_key_padding_mask(POINT_MASK, query_tokens=1)[:, None, :].expand(-1, S, -1)
    with lpim.sanitize(on_finding="collect") as report:
        where = _line()
        mha(x, x, x, attn_mask=per_lane.repeat(H, 1, 1), need_weights=False)
    assert _kinds(report) == ["head_major_3d_mask"]
    finding = report.findings[0]
    assert finding.where.endswith(where), (finding.where, where)
    assert finding.count == 1 and finding.api == "nn.MultiheadAttention"
    message = str(finding)
    assert f"built at {finding.where}: `mha(x, x, x, attn_mask=per_lane.repeat(H, 1, 1)" in message
    assert f"attn_mask=per_entry.repeat_interleave({H}, dim=0)" in message
    assert "checked on this call" in message
    assert f"({LANES * H}, {S}, {S})" in message
    assert "point_mask" not in message  # no lane encoder in sight: no lane vocabulary


@pytest.mark.parametrize("batch", [2, 3, 4, 8])
def test_head_major_found_for_every_batch_to_heads_ratio(batch: int) -> None:
    """N dividing H (2, 4 with 4 heads) gives every entry the same H rows: still found, with
    the line of the repeat, which is not the line of the call."""
    torch.manual_seed(0)
    mha, length = nn.MultiheadAttention(C, 4, batch_first=True).eval(), 6
    x = torch.randn(batch, length, C)
    padded = torch.arange(length) >= (torch.arange(batch) % length + 1)[:, None]  # (N, S)
    per_entry = padded[:, None, :].expand(batch, length, length)  # (N, L, S), True = blocked
    with lpim.sanitize(on_finding="collect") as report:
        repeat_line = _line()
        head_major = per_entry.repeat(4, 1, 1)
        mha(x, x, x, attn_mask=head_major, need_weights=False)
    right = mha(x, x, x, attn_mask=per_entry.repeat_interleave(4, 0), need_weights=False)[0]
    wrong = mha(x, x, x, attn_mask=head_major, need_weights=False)[0]
    assert not torch.allclose(right, wrong)  # the premise: outputs move
    assert _kinds(report) == ["head_major_3d_mask"]
    call_line = int(repeat_line.rsplit(":", 1)[1]) + 1
    assert report.findings[0].where.endswith(f"test_sanitize.py:{call_line}")  # the call
    assert f"built at tests/{repeat_line}" in report.findings[0].message  # and the repeat
    assert "per_entry.repeat(4, 1, 1)" in report.findings[0].message


def test_head_major_follows_conversions_and_spares_per_head_masks() -> None:
    torch.manual_seed(0)
    mha, n, length = nn.MultiheadAttention(C, 4, batch_first=True).eval(), 4, 6
    x = torch.randn(n, length, C)
    padded = torch.arange(length) >= torch.tensor([6, 5, 3, 2])[:, None]  # (N, S)
    keep = ~padded[:, None, :].expand(n, length, length)  # (N, L, S), True = attend
    window = (torch.arange(length)[:, None] - torch.arange(length)[None]).abs()  # (L, S)
    per_head = torch.stack([window > h + 1 for h in range(4)])  # (H, L, S), True = blocked
    with lpim.sanitize(on_finding="collect") as report:
        mha(x, x, x, attn_mask=~keep.repeat(4, 1, 1), need_weights=False)  # N == H, per entry
        mha(x, x, x, attn_mask=per_head.repeat(n, 1, 1), need_weights=False)  # right
        same = keep[:1].expand(n, -1, -1)  # every entry the same mask: any order is right
        mha(x, x, x, attn_mask=~same.repeat(4, 1, 1), need_weights=False)
    assert _kinds(report) == ["head_major_3d_mask"]
    assert "keep.repeat(4, 1, 1)" in report.findings[0].message


def _lane_encoder_step(mha: nn.Module, x: torch.Tensor, point_mask: torch.Tensor) -> None:
    """Stands for a lane encoder's forward: its `point_mask` is what lpim can see."""
    per_lane = to_key_padding_mask(point_mask, query_tokens=1)[:, None, :].expand(-1, S, -1)
    mha(x, x, x, attn_mask=per_lane.repeat(H, 1, 1), need_weights=False)
    mha(x, x, x, key_padding_mask=to_key_padding_mask(point_mask, 1).float(), need_weights=False)


def test_lane_vocabulary_only_from_a_lane_encoder() -> None:
    mha, x = _mha(), _tokens()
    with lpim.sanitize(on_finding="collect") as report:
        _lane_encoder_step(mha, x, POINT_MASK)
    assert _kinds(report) == ["head_major_3d_mask", "float_mask_as_additive"]
    for finding in report.findings:
        assert "lpim.masks.to_key_padding_mask(point_mask, query_tokens=1)" in finding.message


def test_missing_head_rows_raises_before_torchs_runtime_error() -> None:
    mha, x = _mha(), _tokens()
    per_lane = to_key_padding_mask(POINT_MASK, query_tokens=1)[:, None, :].expand(-1, S, -1)
    with pytest.raises(lpim.MaskHazardError) as caught, lpim.sanitize(on_finding="raise"):
        mha(x, x, x, attn_mask=per_lane)
    assert isinstance(caught.value, AssertionError)
    assert caught.value.finding.kind == "missing_head_rows"
    assert f"{LANES}*{H} = {LANES * H}" in str(caught.value)
    assert f"attn_mask=attn_mask.repeat_interleave({H}, dim=0)" in str(caught.value)
    # collect records it and lets torch raise its own error
    with pytest.raises(RuntimeError, match="3D attn_mask"), lpim.sanitize("collect") as report:
        mha(x, x, x, attn_mask=per_lane)
    assert _kinds(report) == ["missing_head_rows"]


def test_float_01_key_padding_mask_and_sdpa_mask() -> None:
    """The fix follows the polarity the structure shows (a row without padding), checked."""
    mha, x = _mha(), _tokens()
    kpm = to_key_padding_mask(POINT_MASK, query_tokens=1)
    q = torch.randn(LANES, H, S, C // H)
    with lpim.sanitize(on_finding="collect") as report:
        mha(x, x, x, key_padding_mask=kpm.float(), need_weights=False)
        F.scaled_dot_product_attention(q, q, q, attn_mask=to_sdpa_mask(POINT_MASK, 1).float())
    assert _kinds(report) == ["float_mask_as_additive"] * 2
    assert "`key_padding_mask=key_padding_mask.bool()`" in report.findings[0].message
    assert "`attn_mask=attn_mask.bool()`" in report.findings[1].message
    assert all("padded keys stay masked" in f.message for f in report.findings)


def _causal_float(length: int) -> torch.Tensor:
    return torch.tril(torch.ones(length, length))  # 1 = may attend: the author's meaning


@pytest.mark.parametrize("api", ["mha", "sdpa", "layer"])
def test_float_causal_mask_advice_keeps_it_causal(api: str) -> None:
    """The printed fix, applied as printed, blocks exactly the future (never anti-causal)."""
    torch.manual_seed(0)
    length = 5
    x = torch.randn(2, length, C)
    attn_mask = src_mask = _causal_float(length)
    q = torch.randn(2, H, length, C // H)
    mha = nn.MultiheadAttention(C, H, batch_first=True).eval()
    layer = nn.TransformerEncoderLayer(C, H, 32, dropout=0.0, batch_first=True).eval()
    with lpim.sanitize(on_finding="collect") as report:
        if api == "mha":
            mha(x, x, x, attn_mask=attn_mask, need_weights=False)
        elif api == "sdpa":
            F.scaled_dot_product_attention(q, q, q, attn_mask=attn_mask)
        else:
            layer(x, src_mask=src_mask)
    assert _kinds(report) == ["float_mask_as_additive"]
    message = report.findings[0].message
    assert "the mask stays causal" in message and "padding" not in message
    fixes = [part.split("`")[0] for part in message.split("Fix: pass `")[1].split(" or `")]
    future = torch.ones(length, length, dtype=torch.bool).triu(1)  # True = a later key
    for fix in fixes:
        arguments = eval(f"dict({fix})", {"torch": torch}, {"attn_mask": attn_mask,
                                                            "src_mask": src_mask})  # fmt: skip
        mask = arguments.get("attn_mask", arguments.get("src_mask"))
        if mask is None:
            assert arguments["is_causal"] is True and api == "sdpa"
            continue
        assert mask.dtype == torch.bool
        blocked = ~mask if api == "sdpa" else mask  # SDPA: True = attend; MHA: True = blocked
        assert torch.equal(blocked, future), fix


@pytest.mark.parametrize(
    ("fill", "dtype"),
    [(-1e4, torch.float32), (-1e6, torch.float32), (-1e9, torch.float32),
     (-1e4, torch.float16)],
)  # fmt: skip
def test_harmless_finite_fill_gives_nothing(fill: float, dtype: torch.dtype) -> None:
    """A fill whose outputs equal the -inf mask's is no finding, in any dtype it fits."""
    mha = _mha().to(dtype)
    x = _tokens().to(dtype)
    kpm = to_key_padding_mask(POINT_MASK, query_tokens=1)
    filled = torch.zeros(kpm.shape, dtype=dtype).masked_fill(kpm, fill)
    with lpim.sanitize(on_finding="collect") as report:
        out = mha(x, x, x, key_padding_mask=filled, need_weights=False)[0]
    exact = mha(x, x, x, key_padding_mask=kpm, need_weights=False)[0]
    assert torch.equal(out, exact)  # the premise: the fill changes nothing here
    assert report.ok and report.calls == 1, report.table()


@pytest.mark.parametrize("fill", [-10.0, -1e-12])
def test_leaky_fill_found_with_its_weight(fill: float) -> None:
    q = 3 * torch.randn(LANES, H, S, C // H, generator=torch.Generator().manual_seed(0))
    keep = to_sdpa_mask(POINT_MASK, query_tokens=1)  # [B*M, 1, 1, S], True = attend
    additive = torch.zeros(keep.shape).masked_fill(~keep, fill)
    with lpim.sanitize(on_finding="collect") as report:
        F.scaled_dot_product_attention(q, q, q, attn_mask=additive)
    weights = (q @ q.transpose(-1, -2) / (C // H) ** 0.5 + additive).softmax(-1)
    leaked = float((weights * ~keep).sum(-1).max())
    assert leaked > 1e-3  # the premise: measurable weight on masked keys
    assert _kinds(report) == ["finite_fill"]
    assert f"up to {leaked:.3g} of a row's attention weight" in report.findings[0].message
    assert "float('-inf')" in report.findings[0].message


def test_fill_that_overflows_float16_found() -> None:
    """finfo(float16).min plus a negative score is -inf: a row it empties becomes NaN."""
    scores = -torch.rand(4, 6, dtype=torch.float16) - 32  # below -16: the sum passes -65520
    additive = torch.zeros(4, 6, dtype=torch.float16)
    additive[0] = torch.finfo(torch.float16).min  # row 0: every key filled
    additive[1:, 3:] = torch.finfo(torch.float16).min
    with lpim.sanitize(on_finding="collect") as report:
        weights = (scores + additive).softmax(-1)
    assert bool(weights[0].isnan().all())  # the premise: it overflowed to -inf and NaN
    assert sorted(_kinds(report)) == ["finite_fill", "fully_masked_rows"]
    assert "overflows torch.float16" in str(report.findings[0])


def test_sdpa_called_with_keywords() -> None:
    q = torch.randn(LANES, H, S, C // H)
    float_mask = to_sdpa_mask(POINT_MASK, 1).float()
    with lpim.sanitize(on_finding="collect") as report:
        F.scaled_dot_product_attention(query=q, key=q, value=q, attn_mask=float_mask)
    assert _kinds(report) == ["float_mask_as_additive"]


def test_finite_fill_fully_masked_rows_are_an_average() -> None:
    """With no query token an empty lane's row is fully blocked: by -1e9 it averages V; the
    rows with a key are exact, so the fill itself is no finding."""
    q = torch.randn(LANES, H, S - 1, C // H)
    keep = to_sdpa_mask(POINT_MASK)  # no query column: empty lanes keep nothing
    additive = torch.zeros(keep.shape).masked_fill(~keep, -1e9)
    with lpim.sanitize(on_finding="collect") as report:
        F.scaled_dot_product_attention(q, q, q, attn_mask=additive)
    assert _kinds(report) == ["fully_masked_rows"]
    assert "came out finite values that are not 0" in report.findings[0].message


def test_fully_masked_rows_found_from_the_mask_whatever_the_call_gave() -> None:
    """need_weights=True gives NaN on an empty lane's rows, need_weights=False 0: both found,
    each saying what it gave; `allow` silences an intended pattern by kind and site."""
    mha, x = _mha(), _tokens()[:, 1:]
    kpm = to_key_padding_mask(POINT_MASK)  # no query column: empty lanes are fully masked
    empty = int((~POINT_MASK.any(-1)).sum())
    assert empty > 0
    with lpim.sanitize(on_finding="collect") as report:
        out_nan = mha(x, x, x, key_padding_mask=kpm)[0]
        zero_line = _line()
        out_zero = mha(x, x, x, key_padding_mask=kpm, need_weights=False)[0]
    assert bool(out_nan.isnan().any()) and not bool(out_zero.isnan().any())  # the premise
    assert _kinds(report) == ["fully_masked_rows"] * 2
    nan_message, zero_message = (f.message for f in report.findings)
    assert f"{empty * (S - 1)} of {LANES * (S - 1)} query row(s)" in nan_message
    assert "came out NaN" in nan_message and "came out 0" in zero_message
    assert "need_weights=True" in zero_message
    assert report.findings[1].where.endswith(zero_line)
    with lpim.sanitize("collect", allow=[("fully_masked_rows", zero_line)]) as allowed:
        nan_line = _line()
        mha(x, x, x, key_padding_mask=kpm)
    assert [f.where for f in allowed.findings] == [f"tests/{nan_line}"]
    with lpim.sanitize("collect", allow=[("fully_masked_rows", "test_sanitize.py")]) as allowed:
        mha(x, x, x, key_padding_mask=kpm)
    assert allowed.ok and allowed.calls == 1
    with pytest.raises(ValueError, match="unknown finding kind 'fully_masked'"):
        lpim.sanitize(allow=["fully_masked"])
    with pytest.raises(ValueError, match="a finding kind or a"):
        lpim.sanitize(allow=[("finite_fill", "a.py", "b.py")])
    with pytest.raises(TypeError, match="a finding kind or a"):
        lpim.sanitize(allow=[5])  # type: ignore[list-item]


# -- hand-written attention ---------------------------------------------------------------------


def test_hand_written_attention_weak_fill_found() -> None:
    scores = torch.randn(LANES, S, S, generator=torch.Generator().manual_seed(0))
    valid = to_sdpa_mask(POINT_MASK, query_tokens=1)[:, 0].int()  # (B*M, 1, S), 1 = real
    with lpim.sanitize(on_finding="collect") as report:
        where = _line()
        scores.masked_fill(valid == 0, -1e-12).softmax(-1)
        scores.masked_fill(valid == 0, -1e9).softmax(dim=-1)  # harmless here: nothing
        torch.softmax(scores.masked_fill(valid == 0, float("-inf")), -1)  # right
    assert report.calls == 3
    assert _kinds(report) == ["finite_fill"]
    assert report.findings[0].where.endswith(where)
    assert "fill with float('-inf') instead of -1e-12" in report.findings[0].message


def test_hand_written_fully_masked_rows() -> None:
    scores = torch.randn(LANES, S - 1, S - 1)
    padded = to_key_padding_mask(POINT_MASK)[:, None, :]  # (B*M, 1, N), True = padded
    with lpim.sanitize(on_finding="collect") as report:
        F.softmax(scores.masked_fill(padded, float("-inf")), dim=-1)
    assert _kinds(report) == ["fully_masked_rows"]
    assert "came out NaN" in report.findings[0].message


def test_a_run_without_attention_says_so() -> None:
    with lpim.sanitize(on_finding="collect") as report:
        torch.randn(3, 3).softmax(-1)  # a softmax over unmasked scores is not attention
    assert report.calls == 0 and report.ok
    assert "saw no attention call" in report.table()


def test_nonfinite_output_from_nan_at_a_masked_key() -> None:
    q = torch.randn(LANES, H, S, C // H)
    v = q.clone()
    padded = ~to_sdpa_mask(POINT_MASK, query_tokens=1)[:, 0, 0]  # [B*M, S], True = padded key
    v[padded[:, None, :].expand(-1, H, -1)] = float("nan")  # garbage in padded slots
    with lpim.sanitize(on_finding="collect") as report:
        F.scaled_dot_product_attention(q, q, v, attn_mask=to_sdpa_mask(POINT_MASK, 1))
    assert _kinds(report) == ["nonfinite_output"]
    assert "0 * NaN" in report.findings[0].message


def test_functional_multi_head_attention_forward() -> None:
    mha, x = _mha(), _tokens().transpose(0, 1)  # (L, N, E): the functional form is seq-first
    per_lane = to_key_padding_mask(POINT_MASK, query_tokens=1)[:, None, :].expand(-1, S, -1)
    with lpim.sanitize(on_finding="collect") as report:
        F.multi_head_attention_forward(
            x, x, x, C, H, mha.in_proj_weight, mha.in_proj_bias, None, None, False, 0.0,
            mha.out_proj.weight, mha.out_proj.bias, attn_mask=per_lane.repeat(H, 1, 1),
            need_weights=False,
        )  # fmt: skip
    assert _kinds(report) == ["head_major_3d_mask"]
    assert report.findings[0].api == "F.multi_head_attention_forward"


# -- no finding where nothing is proved ---------------------------------------------------------


def test_correct_and_legitimate_masks_give_no_finding() -> None:
    mha, x = _mha(), _tokens()
    kpm = to_key_padding_mask(POINT_MASK, query_tokens=1)
    causal = torch.ones(S, S, dtype=torch.bool).triu(1)  # (L, S), True = blocked
    # a genuine per-head mask shared by every lane: head h sees a window of h + 1 keys. With
    # LANES a multiple of H it has period LANES too, which must not read as head-major.
    window = torch.stack([(torch.arange(S)[None] > torch.arange(S)[:, None] + h) for h in range(H)])
    assert LANES % H == 0
    per_head = window.repeat(LANES, 1, 1)  # [B*M*H, S, S], row n*H + h = window h
    q = torch.randn(LANES, H, S, C // H)
    with lpim.sanitize(on_finding="raise") as report:
        mha(x, x, x, key_padding_mask=kpm, need_weights=False)
        mha(x, x, x, attn_mask=to_attn_mask_3d(POINT_MASK, H, query_tokens=1), need_weights=False)
        mha(x, x, x, attn_mask=causal, key_padding_mask=kpm)
        mha(x, x, x, attn_mask=per_head | kpm.repeat_interleave(H, 0)[:, None, :])
        mha(x, x, x, attn_mask=causal.repeat(LANES * H, 1, 1))  # 3D causal, heads agree
        F.scaled_dot_product_attention(q, q, q, attn_mask=to_sdpa_mask(POINT_MASK, 1))
        F.scaled_dot_product_attention(q, q, q, attn_mask=~causal)  # (L, S) broadcast
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
        bias = torch.randn(1, H, S, S)  # a float bias (ALiBi-like): neither 0/1 nor a fill
        F.scaled_dot_product_attention(q, q, q, attn_mask=bias)
        additive = torch.zeros(LANES, 1, 1, S).masked_fill(kpm[:, None, None, :], float("-inf"))
        F.scaled_dot_product_attention(q, q, q, attn_mask=additive)
    assert report.ok and report.calls == 10, report


def test_per_head_mask_that_differs_per_entry_is_not_head_major() -> None:
    """Per-entry padding AND per-head windows: heads differ, no period-N repeat: no finding."""
    mha, x = _mha(), _tokens()
    kpm = to_key_padding_mask(POINT_MASK, query_tokens=1)
    window = torch.stack([(torch.arange(S)[None] > torch.arange(S)[:, None] + h) for h in range(H)])
    mask = window.repeat(LANES, 1, 1) | kpm.repeat_interleave(H, 0)[:, None, :]
    with lpim.sanitize(on_finding="collect") as report:
        mha(x, x, x, attn_mask=mask, need_weights=False)
    assert report.ok, report


# -- policies -----------------------------------------------------------------------------------


def test_warn_once_per_site_and_kind_with_counts() -> None:
    mha, x = _mha(), _tokens()
    kpm = to_key_padding_mask(POINT_MASK, query_tokens=1).float()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lpim.sanitize() as report:  # warn is the default
            for _ in range(3):
                mha(x, x, x, key_padding_mask=kpm, need_weights=False)
    hazard_warnings = [w for w in caught if issubclass(w.category, lpim.MaskHazardWarning)]
    assert len(hazard_warnings) == 1
    assert hazard_warnings[0].filename == __file__
    assert report.findings[0].count == 3 and report.calls == 3


def test_outputs_unchanged_and_fast_paths_still_taken() -> None:
    """nn.TransformerEncoder's nested fast path (eval, no_grad): same output, same kernels."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(C, H, 2 * C, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    x, kpm = _tokens(), to_key_padding_mask(POINT_MASK, query_tokens=1)

    def run() -> tuple[torch.Tensor, set[str]]:
        with torch.no_grad(), torch.profiler.profile() as prof, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = encoder(x, src_key_padding_mask=kpm)
        return out, {event.name for event in prof.events()}

    plain, plain_ops = run()
    with lpim.sanitize(on_finding="raise") as report:
        watched, watched_ops = run()
    assert "aten::_transformer_encoder_layer_fwd" in plain_ops  # the premise: fast path
    assert "aten::_transformer_encoder_layer_fwd" in watched_ops
    assert torch.equal(plain, watched)  # bit for bit, padded zeros included
    assert report.ok and report.calls == 1  # the encoder once; its layers are the same call


def test_head_major_mask_caught_on_the_encoder_layers_fast_path() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(C, H, 2 * C, dropout=0.0, batch_first=True).eval()
    x = _tokens()
    per_lane = to_key_padding_mask(POINT_MASK, query_tokens=1)[:, None, :].expand(-1, S, -1)
    head_major = per_lane.repeat(H, 1, 1)
    with torch.no_grad(), torch.profiler.profile() as prof:
        with lpim.sanitize(on_finding="collect") as report:
            watched = layer(x, src_mask=head_major)
    assert "aten::_transformer_encoder_layer_fwd" in {e.name for e in prof.events()}
    assert _kinds(report) == ["head_major_3d_mask"]
    assert report.findings[0].api == "nn.TransformerEncoderLayer"
    with torch.no_grad():
        assert torch.equal(layer(x, src_mask=head_major), watched)


def test_mha_fast_path_fully_masked_rows() -> None:
    """MHA's fused self-attention (eval, no_grad) gives NaN on fully masked rows: found."""
    mha, x = _mha(), _tokens()[:, 1:]
    kpm = to_key_padding_mask(POINT_MASK)
    with torch.no_grad(), lpim.sanitize(on_finding="collect") as report:
        mha(x, x, x, key_padding_mask=kpm, need_weights=False)
    assert _kinds(report) == ["fully_masked_rows"]


# -- torch left as it was -----------------------------------------------------------------------


def test_enable_disable_and_nesting_leave_torch_as_it_was() -> None:
    before = _torch_hook_state()
    mha, x = _mha(), _tokens()
    kpm = to_key_padding_mask(POINT_MASK, query_tokens=1).float()
    outer = lpim.sanitize.enable(on_finding="collect")
    assert lpim.sanitize.active
    with lpim.sanitize(on_finding="collect") as inner:
        mha(x, x, x, key_padding_mask=kpm, need_weights=False)
        with pytest.raises(lpim.MaskHazardError), lpim.sanitize(on_finding="raise"):
            mha(x, x, x, key_padding_mask=kpm, need_weights=False)
    assert [f.count for f in inner.findings] == [1, 1]  # two sites, one call each
    assert lpim.sanitize.disable() is outer
    assert [f.count for f in outer.findings] == [1, 1]
    assert lpim.sanitize.disable() is None
    assert not lpim.sanitize.active
    assert _torch_hook_state() == before
    # an error inside the block, and a module that raised inside it, restore it too
    per_lane = to_key_padding_mask(POINT_MASK, 1)[:, None, :].expand(-1, S, -1)
    with pytest.raises(RuntimeError), lpim.sanitize(on_finding="collect"):
        mha(x, x, x, attn_mask=per_lane)
    assert _torch_hook_state() == before


def test_another_mode_entered_inside_stays_when_the_session_ends() -> None:
    """Modes may end in any order: the sanitizer takes its own mode out from under another
    library's, which stays on (and works) until its owner exits it."""
    from torch.overrides import TorchFunctionMode

    seen: list[object] = []

    class Other(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            seen.append(func)
            return func(*args, **(kwargs or {}))

    before = _torch_hook_state()
    session = lpim.sanitize(on_finding="collect")
    session.__enter__()
    other = Other()
    other.__enter__()
    session.__exit__(None, None, None)
    assert not lpim.sanitize.active
    assert torch._C._len_torch_function_stack() == before[-1] + 1  # the other one, alone
    torch.ones(1).add(1)
    assert seen, "the other mode still sees calls"
    other.__exit__(None, None, None)
    assert _torch_hook_state() == before


def test_bad_on_finding() -> None:
    with pytest.raises(ValueError, match="on_finding must be one of"):
        lpim.sanitize(on_finding="loud")  # type: ignore[arg-type]


def test_varlen_attn_is_watched_where_torch_has_it() -> None:
    varlen = pytest.importorskip("torch.nn.attention.varlen")
    q = torch.randn(6, H, 8, dtype=torch.float16)
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    with lpim.sanitize(on_finding="collect") as report:
        try:
            varlen.varlen_attn(q, q, q, cu, cu, 4, 4)
        except (NotImplementedError, RuntimeError):  # flash kernels: CUDA only
            pass
    assert report.calls == 1 and report.ok


def test_kinds_are_the_contract() -> None:
    assert list(KINDS) == [
        "missing_head_rows",
        "head_major_3d_mask",
        "float_mask_as_additive",
        "fully_masked_rows",
        "finite_fill",
        "nonfinite_output",
    ]


# -- advice is checked, the cache follows the mask ------------------------------------------------


def test_a_fix_that_breaks_the_meaning_is_refused() -> None:
    """`verify` applies a fix to the call: `attn_mask.bool()` on a tril(ones) float mask would
    block the past instead of the future in MHA's polarity, so it is never printed."""
    from lpim.sanitizer import _proof

    captured: list[bool] = []
    original = _proof.verify

    def spy(call: _proof.Call, fix: _proof.Fix, intended: torch.Tensor, scope: dict) -> bool:
        verdict = original(call, fix, intended, scope)
        if call.api == "nn.MultiheadAttention":
            anti_causal = _proof.Fix({"attn_mask": "attn_mask.bool()"})
            captured.append(original(call, anti_causal, intended, scope))
        return verdict

    mha, x = _mha(), torch.randn(2, 5, C)
    _proof.verify = spy  # type: ignore[assignment]
    try:
        with lpim.sanitize(on_finding="collect") as report:
            mha(x, x, x, attn_mask=torch.tril(torch.ones(5, 5)), need_weights=False)
    finally:
        _proof.verify = original  # type: ignore[assignment]
    assert captured == [False]
    assert "attn_mask.bool()" not in report.findings[0].message


def test_ambiguous_zero_one_mask_gets_no_fix() -> None:
    """1 = padded or 1 = real cannot be told when rows without 0s and without 1s both exist."""
    mha, x = _mha(), torch.randn(3, 4, C)
    float_mask = torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]])
    with lpim.sanitize(on_finding="collect") as report:
        mha(x, x, x, key_padding_mask=float_mask, need_weights=False)
    assert _kinds(report) == ["float_mask_as_additive"]
    assert "cannot be told" in report.findings[0].message
    assert "Fix: pass" not in report.findings[0].message


def test_a_mask_changed_in_place_is_read_again() -> None:
    mha, x = _mha(), _tokens()[:, 1:]
    kpm = to_key_padding_mask(POINT_MASK, query_tokens=0).clone()
    kpm[:, 0] = False  # every lane keeps its first key
    with lpim.sanitize(on_finding="collect") as report:
        mha(x, x, x, key_padding_mask=kpm, need_weights=False)
        kpm[0] = True  # lane 0 now has no key: the cached reading must not be reused
        mha(x, x, x, key_padding_mask=kpm, need_weights=False)
    assert _kinds(report) == ["fully_masked_rows"]
