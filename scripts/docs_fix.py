"""The seed's crash, the tempting fix and the right one, in plain torch, run while the site builds.

`docs/index.md` and `docs/howto/fix-3d-attn-mask.md` show the code below and what it did when the
site was built: the lines of the diff are the lines that ran, so the page cannot drift from torch.
"""

from __future__ import annotations

import torch

#: The seed's shapes: 8 samples x 200 lanes x 20 points, 8 heads, one query token per lane.
SETUP = """\
import torch
from torch import nn

torch.manual_seed(0)                    # the same batch on every run
B, M, N, H = 8, 200, 20, 8              # samples, lanes, points, heads
L = 1 + N                               # a query token + the lane's points
self_attn = nn.MultiheadAttention(16, H, batch_first=True)
x = torch.randn(B * M, L, 16)           # one token sequence per lane
point_mask = torch.rand(B, M, N) > 0.5  # True = real point
query = torch.zeros(B * M, 1, dtype=torch.bool)  # query token: never ignored
ignore = torch.cat([query, ~point_mask.reshape(B * M, N)], 1)  # True = ignore
"""

#: What the seed did: a 3D mask with one block per lane (it needs one per lane and head).
BEFORE = """\
attn_mask = ignore[:, None, :].expand(-1, L, -1)  # (B*M, L, L)
out, _ = self_attn(x, x, x, attn_mask=attn_mask)"""

#: The tempting fix: the right shape, the wrong row order (head-major where MHA reads lane-major).
REPEAT = """\
attn_mask = ignore[:, None, :].expand(-1, L, -1)  # (B*M, L, L)
attn_mask = attn_mask.repeat(H, 1, 1)             # (H*B*M, L, L), head-major
out, _ = self_attn(x, x, x, attn_mask=attn_mask)"""

#: The fix: the 2D mask as ``key_padding_mask``; torch expands it per head itself.
AFTER = """\
out, _ = self_attn(x, x, x, key_padding_mask=ignore)  # (B*M, L)"""


def run(code: str, namespace: dict[str, object]) -> str | None:
    """Run ``code`` in ``namespace``; the error it raised as ``Type: message``, else ``None``."""
    try:
        exec(code, namespace)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def worst_lane_error(namespace: dict[str, object], lanes: int = 24) -> float:
    """Largest difference, over the first ``lanes`` lanes, between the batched output's query
    token and the same attention run on that lane alone, unpadded (the truth)."""
    attn, x, ignore = namespace["self_attn"], namespace["x"], namespace["ignore"]
    out = namespace["out"]
    assert isinstance(attn, torch.nn.Module)
    assert isinstance(x, torch.Tensor) and isinstance(ignore, torch.Tensor)
    assert isinstance(out, torch.Tensor)
    worst = 0.0
    with torch.no_grad():
        for lane in range(lanes):
            real = x[lane : lane + 1, ~ignore[lane]]  # [1, n, C]: the lane alone, unpadded
            alone, _ = attn(real, real, real)
            worst = max(worst, (out[lane, 0] - alone[0, 0]).abs().max().item())
    return worst


def fresh() -> dict[str, object]:
    """A namespace with ``SETUP`` run in it (seeded: the same page on every build)."""
    torch.manual_seed(0)
    namespace: dict[str, object] = {}
    assert run(SETUP, namespace) is None
    return namespace


def outcomes() -> dict[str, str | float | None]:
    """What BEFORE, REPEAT and AFTER did: the error, and each one's worst lane error."""
    results: dict[str, str | float | None] = {}
    namespace = fresh()
    results["before"] = run(BEFORE, namespace)
    assert results["before"] is not None, "the seed's 3D mask no longer raises"
    for name, code in (("repeat", REPEAT), ("after", AFTER)):
        error = run(code, namespace)
        assert error is None, f"{name}: {error}"
        results[name] = worst_lane_error(namespace)
    return results


def diff(context: bool = True) -> str:
    """The fix as a Markdown ``diff`` block: the seed's lines removed, the fix added."""
    lines = ["```diff"]
    if context:
        lines += ["  " + line for line in SETUP.splitlines()[-1:]]
    lines += ["- " + line for line in BEFORE.splitlines()]
    lines += ["+ " + line for line in AFTER.splitlines()]
    return "\n".join([*lines, "```"])
