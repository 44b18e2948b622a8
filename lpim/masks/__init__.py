"""Every padding-mask convention, named once, with converters, a validator and a diagnoser.

lpim's own convention is `point_mask [B, M, N]`, `torch.bool`, **True = real point**. Each
consumer wants something else; the `to_*` functions build it, the `from_*` functions read it
back, `validate` checks a mask against its convention and `diagnose` names what a
mask someone built actually is.

Each convention (its shape, dtype, polarity, who uses it and the converter that builds it) is
one entry of [`CONVENTIONS`][lpim.masks.CONVENTIONS], the one table of them in lpim: the
conventions page of the docs and `lpim conventions` print it from there.

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
from lpim.masks._diagnose import MISTAKES, Diagnosis, diagnose
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
    "keep_tokens",
    "pack",
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
