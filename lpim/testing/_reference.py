"""torch's own encoder stack carrying a `PriorEncoder`'s weights: the one reference build.

Tests and benchmarks compare `lpim.PriorEncoder` against `nn.TransformerEncoder` loaded with
the same weights; this module builds that stack once, the same way for both. It lives under
`lpim.testing` so that the vendorable `lpim/encoder.py` stays as small as it is.
"""

from __future__ import annotations

import copy

from torch import nn

from lpim.encoder import PriorEncoder

__all__ = ["torch_stack"]


def torch_stack(encoder: PriorEncoder, *, nested: bool = False) -> nn.TransformerEncoder:
    """torch's `nn.TransformerEncoder` holding `encoder`'s layer (and final norm) weights.

    The layers are `nn.TransformerEncoderLayer(activation="gelu", batch_first=True)` with the
    encoder's sizes, dropout and `norm_first`; a pre-norm encoder's final `LayerNorm` becomes
    the stack's `norm`. The state dicts load strictly (same names, same shapes). The stack is
    on the encoder's device and dtype and in its train/eval mode.

    Args:
        encoder: the encoder whose weights the stack carries (its position MLP and query token
            stay outside: feed the stack the tokens the encoder would build).
        nested: torch's `enable_nested_tensor`. With False (the default) torch never converts
            to a nested tensor; the MHA fast path is still chosen by
            `torch.backends.mha.set_fastpath_enabled`.

    Returns:
        The stack, a fresh module sharing no parameters with `encoder`.
    """
    layer = nn.TransformerEncoderLayer(
        encoder.d_model,
        encoder.nhead,
        encoder.dim_feedforward,
        encoder.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=encoder.norm_first,
    )
    stack = nn.TransformerEncoder(
        layer,
        encoder.num_layers,
        norm=copy.deepcopy(encoder.norm) if encoder.norm_first else None,
        enable_nested_tensor=nested,
    )
    weights = {k: v for k, v in encoder.state_dict().items() if k.startswith(("layers.", "norm."))}
    stack.load_state_dict(weights, strict=True)
    stack = stack.to(device=encoder.query.device, dtype=encoder.query.dtype)
    return stack.train(encoder.training)
