"""Every padding-mask convention, named once, with converters, a validator and a diagnoser.

lpim's own convention is `point_mask [B, M, N]`, `torch.bool`, **True = real point**. Each
consumer wants something else; the `to_*` functions build it, the `from_*` functions read it
back, `validate` checks a mask against its convention and `diagnose` names what a
mask someone built actually is.

| convention | shape | dtype | meaning |
|---|---|---|---|
| `point_mask` | `[B, M, N]` | bool | True = real point (lpim) |
| `key_padding_mask` | `(B*M, S)` | bool | True = ignore (MHA) |
| `attn_mask_3d` | `(B*M*H, L, S)`, row b*H+h | bool | True = blocked (MHA) |
| `additive` | `(B*M, 1, 1, S)` | float | 0 keep, -inf block (added) |
| `sdpa` | `(B*M, 1, 1, S)` | bool | True = attend (SDPA) |
| `attention_mask` | `(B*M, S)` | int64 | 1 = valid (flash-attn, HF) |
| `lengths` | `(B*M,)` | int64 | real count, right padding only |
| `cu_seqlens` | `(B*M + 1,)` | int32 | offsets into packed tokens |
| `nested` | jagged `(B*M, j, D)` | points' | no mask: only real points |

`S = L = query_tokens + N`: query tokens prepended to each lane are never masked.
"""

from lpim.masks._conventions import CONVENTIONS, Convention
from lpim.masks._convert import (
    from_additive_mask,
    from_attention_mask,
    from_attn_mask_3d,
    from_cu_seqlens,
    from_key_padding_mask,
    from_lengths,
    from_sdpa_mask,
    keep_tokens,
    pack,
    to_additive_mask,
    to_attention_mask,
    to_attn_mask_3d,
    to_cu_seqlens,
    to_key_padding_mask,
    to_lengths,
    to_nested,
    to_sdpa_mask,
    unpack,
)
from lpim.masks._diagnose import MISTAKES, Diagnosis, diagnose, heads_agree, repeats_with_period
from lpim.masks._errors import MaskConventionError
from lpim.masks._validate import validate

__all__ = [
    "CONVENTIONS",
    "MISTAKES",
    "Convention",
    "Diagnosis",
    "MaskConventionError",
    "diagnose",
    "from_additive_mask",
    "from_attention_mask",
    "from_attn_mask_3d",
    "from_cu_seqlens",
    "from_key_padding_mask",
    "from_lengths",
    "from_sdpa_mask",
    "heads_agree",
    "keep_tokens",
    "pack",
    "repeats_with_period",
    "to_additive_mask",
    "to_attention_mask",
    "to_attn_mask_3d",
    "to_cu_seqlens",
    "to_key_padding_mask",
    "to_lengths",
    "to_nested",
    "to_sdpa_mask",
    "unpack",
    "validate",
]
