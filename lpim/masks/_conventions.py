"""The conventions registry: every mask convention lpim knows, named once, described once.

Each [`Convention`][lpim.masks.Convention] says what a convention is (shape, dtype, polarity, who
uses it), names the lpim converter that builds it from a `point_mask` (`build`) and the one that
reads it back (`read`), and writes the lpim call that builds it for given query tokens and heads
(`call`), which [`validate`][lpim.masks.validate]'s errors, [`diagnose`][lpim.masks.diagnose]'s
advice, the sanitizer's findings, `lpim conventions` and the docs all quote. The table of
conventions is written here and nowhere else in the library: the others print it from here.

This module is the bottom of `lpim.masks`: the converters and checks raise errors that quote it,
so it imports none of them (converters are named, not held; `validate` keeps the check of each
convention beside itself).

Shapes use `B` samples, `M` lanes, `N` point slots, `H` heads and `q` query tokens prepended to
each lane, so a lane is a sequence of `S = L = q + N` tokens. Every consumer convention flattens
samples and lanes into one batch axis of `B*M` sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONVENTIONS", "Convention"]


@dataclass(frozen=True)
class Convention:
    """One way of saying which tokens are real, and what lpim does with it.

    Attributes:
        name: the name used across lpim (`validate(mask, name)`, `diagnose(...).convention`).
        shape: the shape it has, in the symbols of this module.
        dtype: the dtype(s) it has.
        meaning: what `True` (or a value) means, i.e. its polarity.
        used_by: who consumes it.
        build: the name of the `lpim.masks` function that builds it (None for lpim's own
            `point_mask`).
        build_args: the arguments `build` is called with, by name.
        read: the name of the `lpim.masks` function that turns it back into a `point_mask`
            (None if none does).
        read_args: the arguments `read` is called with, by name.
        prefer: a convention that does the same job with less to get wrong, named in advice.
    """

    name: str
    shape: str
    dtype: str
    meaning: str
    used_by: str
    build: str | None
    build_args: tuple[str, ...]
    read: str | None
    read_args: tuple[str, ...]
    prefer: str | None = None

    @property
    def converter(self) -> str:
        """The call that builds it, as a signature: `"to_sdpa_mask(point_mask, query_tokens)"`."""
        if self.build is None:
            return "LaneBatch.point_mask"
        return f"{self.build}({', '.join(self.build_args)})"

    @property
    def inverse(self) -> str:
        """The call that reads it back into a `point_mask`, as a signature (empty if none)."""
        if self.read is None:
            return ""
        return f"{self.read}({', '.join(self.read_args)})"

    def call(self, query_tokens: int | str, num_heads: int | str | None = None) -> str:
        """The lpim call that builds this convention for the given query tokens and heads.

        Args:
            query_tokens: the tokens prepended to each lane, or a name for them (`"Q"`) when
                they are not known.
            num_heads: `H`; `None` writes `H` for the caller to fill in.

        Returns:
            Python to paste, with `point_mask` (and `points`, `dtype`) left as names, e.g.
            `"lpim.masks.to_attn_mask_3d(point_mask, num_heads=4, query_tokens=1)"`.
        """
        if self.build is None:
            return "LaneBatch(points, point_mask) with point_mask True = real point"
        values = {
            "query_tokens": f"query_tokens={query_tokens}",
            "num_heads": f"num_heads={num_heads if num_heads is not None else 'H'}",
        }
        arguments = ", ".join(values.get(name, name) for name in self.build_args)
        return f"lpim.masks.{self.build}({arguments})"

    def advice(self, query_tokens: int | str, num_heads: int | str | None = None) -> str:
        """[`call`][lpim.masks.Convention.call], followed by the preferred convention's call."""
        advice = self.call(query_tokens, num_heads)
        if self.prefer is not None:
            better = CONVENTIONS[self.prefer].call(query_tokens, num_heads)
            advice += f", or better pass a 2D {self.prefer}: {better}"
        return advice


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in [
        Convention(
            "point_mask",
            "[B, M, N]",
            "bool",
            "True = real point (lpim's own convention)",
            "lpim, LaneBatch, PriorEncoder",
            None,
            (),
            None,
            (),
        ),
        Convention(
            "key_padding_mask",
            "(B*M, S)",
            "bool",
            "True = ignore this key",
            "nn.MultiheadAttention, nn.Transformer*",
            "to_key_padding_mask",
            ("point_mask", "query_tokens"),
            "from_key_padding_mask",
            ("key_padding_mask", "num_lanes", "query_tokens"),
        ),
        Convention(
            "attn_mask_3d",
            "(B*M*H, L, S), row b*H + h",
            "bool",
            "True = blocked; heads are the minor index (repeat_interleave)",
            "nn.MultiheadAttention attn_mask",
            "to_attn_mask_3d",
            ("point_mask", "num_heads", "query_tokens"),
            "from_attn_mask_3d",
            ("attn_mask", "num_heads", "num_lanes", "query_tokens"),
            prefer="key_padding_mask",
        ),
        Convention(
            "additive",
            "(B*M, 1, 1, S), broadcast to (B*M, H, L, S)",
            "floating",
            "0 = keep, -inf = block (added to the scores)",
            "F.scaled_dot_product_attention, MHA, xformers",
            "to_additive_mask",
            ("point_mask", "dtype", "query_tokens"),
            "from_additive_mask",
            ("additive_mask", "num_lanes", "query_tokens"),
        ),
        Convention(
            "sdpa",
            "(B*M, 1, 1, S), broadcast to (B*M, H, L, S)",
            "bool",
            "True = attend (the opposite of MHA)",
            "F.scaled_dot_product_attention",
            "to_sdpa_mask",
            ("point_mask", "query_tokens"),
            "from_sdpa_mask",
            ("sdpa_mask", "num_lanes", "query_tokens"),
        ),
        Convention(
            "attention_mask",
            "(B*M, S)",
            "int64 (or bool)",
            "1 = valid token",
            "flash-attn unpad_input, Hugging Face",
            "to_attention_mask",
            ("point_mask", "query_tokens"),
            "from_attention_mask",
            ("attention_mask", "num_lanes", "query_tokens"),
        ),
        Convention(
            "lengths",
            "(B*M,)",
            "int64",
            "number of real tokens; right padding only",
            "pack_padded_sequence, length-based kernels",
            "to_lengths",
            ("point_mask", "query_tokens"),
            "from_lengths",
            ("lengths", "num_lanes", "num_points", "query_tokens"),
        ),
        Convention(
            "cu_seqlens",
            "(B*M + 1,) and max_seqlen",
            "int32",
            "offsets of each lane's tokens in the packed [T, ...] tensor",
            "flash-attn varlen",
            "to_cu_seqlens",
            ("point_mask", "query_tokens"),
            "from_cu_seqlens",
            ("cu_seqlens", "num_lanes", "num_points", "query_tokens"),
        ),
        Convention(
            "nested",
            "jagged (B*M, j, D), offsets (B*M + 1,)",
            "points' dtype",
            "no mask at all: only real points are stored",
            "torch.nested, SDPA on nested tensors",
            "to_nested",
            ("points", "point_mask"),
            "unpack",
            ("nested.values()", "point_mask"),
        ),
    ]
}
"""Every convention by name, the library's own `point_mask` first."""
