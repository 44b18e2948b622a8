"""The one property registry: every property lpim checks, on both sides (encoder and consumer).

Each [`Property`][lpim.testing.Property] says what it means, what usually breaks it (each cause
with the `lpim.zoo` bug that shows it), which `lpim.testing` assert checks it on one example, what
padded slots hold in the examples drawn for it, and which data contract excludes it. The checks
(`lpim.testing.check_encoder`, `lpim.testing.check_lane_consumer`), their reports and failure
messages, the CLI's `--property` choices, the zoo's `caught_by` names and the site's "Properties"
page all read this one table.

The module sits below `lpim.testing` and `lpim.zoo` (both read it; neither may import the other)
and imports only the standard library: the asserts are named here and looked up by the check of
their side, so that this table is data a reader can take in at once.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CONSUMER_PROPERTIES",
    "EXERCISED_BY",
    "GALLERY",
    "PROPERTIES",
    "REGISTRY",
    "Cause",
    "Padding",
    "Property",
    "Side",
    "property_named",
    "property_names",
    "reproducing_property",
]

GALLERY = "docs/pitfalls.md"
"""The pitfalls gallery (the site's "Pitfalls gallery" page): one section per `lpim.zoo` bug,
at `#<name-with-dashes>`."""


Side = Literal["encoder", "consumer"]
"""Which checks a property belongs to: `lpim.testing.check_encoder`'s (examples are
[`LaneBatch`][lpim.LaneBatch]es) or `lpim.testing.check_lane_consumer`'s
([`LaneSet`][lpim.LaneSet]s)."""

Padding = Literal["baseline", "contract", "finite", "nonfinite"]
"""What padded slots (padded lanes, for a consumer) hold in the examples drawn for a property:
`baseline` zeros (or the one fill the data contract allows), `contract` every fill the data
contract allows, `finite` its finite fills, `nonfinite` NaN and inf. Only the padding properties
vary it, so that a leak of padding is reported as such and not as a mismatch or a NaN."""


@dataclass(frozen=True)
class Cause:
    """One usual cause of a failed property.

    Attributes:
        text: what goes wrong, in a few words.
        zoo: the `lpim.zoo` bug that shows it (its gallery section), or "" for none.
        needs: what an example must have for this cause to produce a failure on it. Encoder
            examples: `"lanes"` (two lanes or more), `"padding"` (a padded slot), `"unaligned"`
            (left or scattered padding), `"empty_lane"` (a lane with no real point),
            `"nonfinite"` (NaN or inf in the example), `"half"` (float16). Consumer examples:
            `"lanes"`, `"padded_lanes"`, `"empty_sample"`. See `PropertyError.example_features`.
            Of the code under check: `"attention"` (it calls attention; the checks find out by
            running it, and assume it where they could not).
    """

    text: str
    zoo: str = ""
    needs: frozenset[str] = frozenset()

    def with_link(self) -> str:
        """The cause, its zoo name and its gallery link, in one line."""
        if not self.zoo:
            return self.text
        return f"{self.text} (zoo {self.zoo}, {GALLERY}#{self.zoo.replace('_', '-')})"


@dataclass(frozen=True)
class Property:
    """One property every encoder (or consumer) must hold.

    Attributes:
        name: its name in reports, `--property` and `PropertyError.property_name` (unique
            within its side).
        assert_name: the `lpim.testing` function that checks it on one example; `""` for
            the properties checked on every call of the code under check (`runs`,
            `inputs_unchanged`, `deadline`), which have no assert of their own.
        meaning: what it says, in one sentence.
        causes: the mistakes that usually break it, each with the example features it needs.
        side: `"encoder"` or `"consumer"` (see `Side`).
        padding: what padded slots hold in the examples drawn for it (see `Padding`).
        takes_garbage: its assert takes the data contract's `garbage=` (what it may write
            into padded slots); excluded when the contract allows a single fill.
        exercised_by: what an example must hold for the property to test anything (see
            `EXERCISED_BY`); a row none of whose examples held it is `excluded`, never a pass.
            `""`: every example exercises it.
        contract_keywords: the data contract's emptiness keywords its assert takes
            (`empty_lanes`, `empty_samples`), so that the batches it builds from a drawn one
            stay inside the contract.
        declared_by: the declaration that turns it on (`"empty_lanes='zero'"`); `""` for a
            property every subject must hold.
        reliability: a check of the calling protocol (the same output twice, inputs left
            alone, time), which misbehaving code breaks, rather than of masks.
    """

    name: str
    assert_name: str
    meaning: str
    causes: tuple[Cause, ...]
    side: Side
    padding: Padding = "baseline"
    takes_garbage: bool = False
    contract_keywords: tuple[str, ...] = ()
    exercised_by: str = ""
    declared_by: str = ""
    reliability: bool = False

    @property
    def every_call(self) -> bool:
        """Checked on every call of the code under check rather than by an assert."""
        return not self.assert_name

    @property
    def declared_keyword(self) -> str:
        """The keyword of `declared_by` (`"order_invariant"`), or "" for a property every
        subject must hold."""
        return self.declared_by.partition("=")[0]

    def is_declared(self, given: object) -> bool:
        """Whether the caller's value of `declared_keyword` turns this property on (always
        True for a property every subject must hold)."""
        if not self.declared_by:
            return True
        return bool(given == ast.literal_eval(self.declared_by.partition("=")[2]))

    def not_declared(self, given: object) -> str:
        """The note of an opt-in property's `excluded` row: `given` is the caller's value of
        `declared_keyword` (e.g. `False` for `order_invariant`)."""
        return (
            f"not declared: {self.declared_keyword}={given!r} (declare {self.declared_by} to "
            "check it)"
        )

    @property
    def usual_causes(self) -> str:
        """Every cause, in one line."""
        return "; ".join(cause.with_link() for cause in self.causes)

    def causes_for(self, features: frozenset[str]) -> list[Cause]:
        """The causes that can produce a failure on an example with `features`."""
        return [cause for cause in self.causes if cause.needs <= features]


# The zoo bugs whose cause is an attention mask: never offered for code that calls no attention.
_ATTENTION = frozenset(
    {
        "seed_crash_3d_mask",
        "empty_lane_nan_need_weights",
        "repeat_head_order",
        "library_mask_as_kpm",
        "mha_polarity_in_sdpa",
        "float_kpm",
        "kpm_without_query_column",
        "additive_minus_1e4",
        "kpm_values_from_padding",
        "nan_grad_from_empty_rows",
        "cuda_only_fast_path",
        "empty_sample_nan_need_weights",
        "unmasked_cross_attention",
        "kpm_values_not_cleaned",
    }
)


def _cause(text: str, zoo: str = "", *needs: str) -> Cause:
    return Cause(text, zoo, frozenset(needs) | ({"attention"} if zoo in _ATTENTION else set()))


# Each property's name, assert, meaning and causes, then what sets it apart (keywords).
EXERCISED_BY: Mapping[str, str] = {
    "padded_slot": "a padded slot",
    "two_lanes": "two lane slots",
    "empty_lane": "an empty lane",
    "padded_lane": "a padded lane",
}
"""What an example must hold for a property to test anything, in words (`Property.exercised_by`)."""

_encoder = functools.partial(Property, side="encoder")
_consumer = functools.partial(Property, side="consumer")


REGISTRY: tuple[Property, ...] = (
    _encoder(
        "runs",
        "",
        "the encoder runs on every valid batch and returns the protocol's output: a tensor "
        "[B, M, C] or an object with lane_embedding [B, M, C] (and point_features "
        "[B, M, N, C]) on the input's device",
        (
            _cause("a 3D attn_mask with B*M rows instead of B*M*num_heads", "seed_crash_3d_mask"),
            _cause("a fill value that overflows the dtype", "fill_minus_1e9_fp16", "half"),
            _cause("an empty lane or batch the code never expected", "", "empty_lane"),
            _cause(
                "a lane of one point the code cannot take (min_points= if it never "
                "occurs in your data)"
            ),
        ),
    ),
    _encoder(
        "deterministic",
        "assert_deterministic",
        "the encoder gives the same output when called twice on the same batch (a "
        "reliability check: a nondeterministic encoder cannot be held to any other property)",
        (
            _cause(
                "dropout left active (a module wrapped in a plain function and never put in "
                "eval mode, or F.dropout(training=True))"
            ),
            _cause("random numbers drawn in forward; state kept between calls"),
        ),
        padding="contract",
        reliability=True,
    ),
    _encoder(
        "inputs_unchanged",
        "",
        "the encoder does not write into points or point_mask (checked after every call: "
        "the checker hands the encoder copies)",
        (
            _cause(
                "in-place ops on the inputs: points.masked_fill_, points[~mask] = 0, "
                "points /= range, point_mask &= ..."
            ),
        ),
        reliability=True,
    ),
    _encoder(
        "deadline",
        "",
        "each call of the encoder on one batch finishes within check_encoder's deadline "
        "(timed twice before it counts; a call that does not return is stopped after "
        "max(10 x deadline, 1 s), and the encoder is not called again)",
        (
            _cause(
                "a Python loop over lanes or points; a per-call copy of the weights; a "
                "host sync per lane"
            ),
            _cause(
                "a loop whose exit is never reached (a convergence test that NaN or a low "
                "precision never passes); a wait on a lock, queue or process that nothing "
                "releases"
            ),
        ),
        reliability=True,
    ),
    _encoder(
        "finite",
        "assert_finite",
        "no NaN or inf in any output for finite real points, including empty lanes, empty "
        "samples and all-empty batches",
        (
            _cause(
                "a fully masked attention row with need_weights=True",
                "empty_lane_nan_need_weights",
                "empty_lane",
            ),
            _cause("NaN as an 'empty' marker", "nan_sentinel_empty_lanes", "empty_lane"),
            _cause("dividing by a zero count", "", "empty_lane"),
        ),
    ),
    _encoder(
        "matches_unpadded",
        "assert_matches_unpadded",
        "each real lane's output (and its real points' features) equals the same encoder "
        "run on that lane alone, unpadded, as points [1, 1, n, D]",
        (
            _cause(
                "a head-major 3D mask: repeat instead of repeat_interleave",
                "repeat_head_order",
                "lanes",
            ),
            _cause(
                "inverted polarity: True = real given where True = ignore",
                "library_mask_as_kpm",
                "padding",
            ),
            _cause("an MHA-polarity mask given to SDPA", "mha_polarity_in_sdpa", "padding"),
            _cause("a float 0/1 key_padding_mask, added to the scores", "float_kpm", "padding"),
            _cause("a missing or shifted query column", "kpm_without_query_column", "padding"),
            _cause("pooling over slots instead of real points", "mean_over_slots", "padding"),
            _cause("an unmasked max-pool over padded slots", "unmasked_max_pool", "padding"),
            _cause("positions from slot indices", "slot_index_positions", "unaligned"),
            _cause(
                "the last point at lengths - 1, or reading slot 0",
                "lengths_minus_one_indexing",
                "unaligned",
            ),
            _cause(
                "pack_padded_sequence on left or scattered padding (layout='right' if "
                "your loader right-pads)",
                "gru_packed_any_layout",
                "unaligned",
            ),
            _cause("lanes sorted and never unsorted", "sort_without_unsort", "lanes"),
            _cause("statistics across lanes", "normalise_across_lanes", "lanes"),
            _cause("packed points assigned to the wrong lane", "cu_seqlens_off_by_one", "lanes"),
        ),
    ),
    _encoder(
        "ignores_padding",
        "assert_ignores_padding",
        "whatever finite values padded slots hold (zeros, values in the real coordinates' "
        "range, the lane's last point repeated and, unless the data contract says "
        "garbage='finite', huge values) changes no output",
        (
            _cause(
                "a finite additive fill such as -1e4 that huge padded scores overcome",
                "additive_minus_1e4",
                "padding",
            ),
            _cause("pooling or attending over padded slots", "", "padding"),
        ),
        padding="finite",
        takes_garbage=True,
        exercised_by="padded_slot",
    ),
    _encoder(
        "ignores_nonfinite_padding",
        "assert_ignores_nonfinite_padding",
        "NaN or inf in padded slots changes no output (your loader must never write NaN/inf "
        "in padded slots, or the encoder must select real points before its first layer)",
        (
            _cause(
                "multiplying by the mask instead of selecting: 0 * NaN = NaN",
                "multiply_by_mask",
                "padding",
            ),
            _cause(
                "keys and values computed from padded slots and masked only in the "
                "softmax, where weight 0 times an inf value is NaN",
                "kpm_values_from_padding",
                "padding",
            ),
        ),
        padding="nonfinite",
        exercised_by="padded_slot",
    ),
    _encoder(
        "lanes_independent",
        "assert_lanes_independent",
        "a lane's outputs do not depend on other lanes or other samples: changing or "
        "emptying them changes nothing, and permuting lanes and samples permutes outputs",
        (
            _cause("statistics across lanes", "normalise_across_lanes", "lanes"),
            _cause(
                "empty lanes imputed from their sample's real lanes",
                "empty_lanes_take_sample_mean",
                "lanes",
            ),
            _cause("lanes reordered and not restored", "sort_without_unsort", "lanes"),
            _cause("a head-major 3D mask", "repeat_head_order", "lanes"),
        ),
        contract_keywords=("empty_lanes", "empty_samples"),
        exercised_by="two_lanes",
    ),
    _encoder(
        "gradients_isolated",
        "assert_gradients_isolated",
        "padded inputs get exactly zero gradient, no gradient is NaN, and no gradient flows "
        "from one lane's output to another lane's points",
        (
            _cause(
                "NaN from fully masked rows, masked in the forward pass but not the backward",
                "nan_grad_from_empty_rows",
                "empty_lane",
            ),
            _cause("multiplying by a mask", "multiply_by_mask", "padding"),
            _cause("lanes that interact", "", "lanes"),
        ),
    ),
    _encoder(
        "gradients_ignore_padding",
        "assert_gradients_ignore_padding",
        "training with huge, inf or NaN values in padded slots (those of the data contract) "
        "gives every parameter the finite gradient it gets with zeros there",
        (
            _cause(
                "a layer run on every slot and masked after it: the weight gradient sums 0 * NaN",
                "linear_on_every_slot",
                "padding",
            ),
        ),
        takes_garbage=True,
        exercised_by="padded_slot",
    ),
    _encoder(
        "empty_lanes_zero",
        "assert_empty_lanes_zero",
        "(declared with empty_lanes='zero') every empty lane's lane_embedding is exactly 0, "
        "so a consumer may read all M lanes without a lane mask",
        (_cause("a bias or a learned token left in empty lanes", "empty_lane_bias", "empty_lane"),),
        declared_by="empty_lanes='zero'",
        exercised_by="empty_lane",
    ),
    _encoder(
        "devices_agree",
        "assert_devices_agree",
        "the encoder on CUDA gives what it gives on the CPU, within the tolerance rule",
        (
            _cause("a fast path taken on one device only", "cuda_only_fast_path"),
            _cause("device-dependent kernels with different mask conventions"),
        ),
        padding="contract",
    ),
    _consumer(
        "runs",
        "",
        "the consumer runs on every valid lane set and returns a tensor, or a tuple, list or "
        "dict of tensors, on the input's device",
        (
            _cause(
                "an empty sample or batch the code never expected",
                "",
                "empty_sample",
            ),
            _cause("an index built from M"),
        ),
    ),
    _consumer(
        "deterministic",
        "assert_consumer_deterministic",
        "the consumer gives the same outputs when called twice on the same lane set (a "
        "reliability check: a nondeterministic consumer cannot be held to any other property)",
        (
            _cause(
                "F.dropout(x, p) without training=self.training: it drops in eval mode too",
                "functional_dropout_in_eval",
            ),
            _cause(
                "dropout left active in a module wrapped in a plain function and never put in "
                "eval mode"
            ),
            _cause("random numbers drawn in forward; state kept between calls"),
        ),
        padding="contract",
        reliability=True,
    ),
    _consumer(
        "inputs_unchanged",
        "",
        "the consumer does not write into lane_embedding, lane_mask or its other inputs "
        "(checked after every call: the checker hands the consumer copies)",
        (
            _cause(
                "in-place ops on the inputs: lane_embedding.masked_fill_, "
                "lane_embedding[~lane_mask] = 0, bev_queries += ..., lane_mask &= ...",
                "padded_lanes_zeroed_in_place",
            ),
        ),
        reliability=True,
    ),
    _consumer(
        "finite",
        "assert_consumer_finite",
        "no NaN or inf in any output for finite real lanes, including samples with no real "
        "lane and batches with none",
        (
            _cause(
                "attention whose every key is masked, with need_weights=True",
                "empty_sample_nan_need_weights",
            ),
            _cause("dividing by a zero lane count"),
        ),
    ),
    _consumer(
        "ignores_appended_lanes",
        "assert_ignores_appended_lanes",
        "appending padded lanes (M grows, lane_mask False there) changes no output",
        (
            _cause(
                "attention over all M lanes with no key_padding_mask",
                "unmasked_cross_attention",
            ),
            _cause("a mean over M slots instead of the real lanes", "zeroed_mean_over_slots"),
        ),
    ),
    _consumer(
        "ignores_padded_lanes",
        "assert_ignores_padded_lanes",
        "whatever padded lanes hold (zeros, huge values, inf, NaN) changes no output",
        (
            _cause("no lane mask at all", "unmasked_cross_attention", "padded_lanes"),
            _cause(
                "a key_padding_mask without selecting padded embeddings away: weight 0 "
                "times a NaN value is NaN",
                "kpm_values_not_cleaned",
                "padded_lanes",
            ),
            _cause("multiplying by the mask", "", "padded_lanes"),
        ),
        padding="contract",
        exercised_by="padded_lane",
    ),
    _consumer(
        "lane_order_invariant",
        "assert_lane_order_invariant",
        "(declared with order_invariant=True) reordering the lane slots, each lane with its "
        "mask, changes no output",
        (
            _cause(
                "positional encodings of the lane slot index",
                "lane_index_positions",
                "lanes",
            ),
            _cause("lanes sorted and read positionally", "", "lanes"),
        ),
        declared_by="order_invariant=True",
    ),
)
"""Every property, encoder side then consumer side, each in the order its check runs them."""

PROPERTIES: Mapping[str, Property] = {p.name: p for p in REGISTRY if p.side == "encoder"}
"""The encoder properties by name, in the order `lpim.testing.check_encoder` runs them."""

CONSUMER_PROPERTIES: Mapping[str, Property] = {p.name: p for p in REGISTRY if p.side == "consumer"}
"""The lane-consumer properties by name, in the order `lpim.testing.check_lane_consumer` runs
them."""


def property_names(side: Side) -> tuple[str, ...]:
    """The names of `side`'s properties that have an assert, in the order its check runs them:
    what `properties=` and `--property` choose among (the others are checked on every call)."""
    return tuple(p.name for p in REGISTRY if p.side == side and not p.every_call)


def property_named(name: str, side: Side = "encoder") -> Property:
    """The property `name` of `side`.

    Raises:
        ValueError: `side` has no property of that name (the message lists those it has).
    """
    for prop in REGISTRY:
        if prop.name == name and prop.side == side:
            return prop
    names = [p.name for p in REGISTRY if p.side == side]
    raise ValueError(f"no {side} property is named {name!r}; the {side} properties: {names}")


def reproducing_property(side: Side, row: str, failed: str) -> Property:
    """The property whose assert re-raises a failure of property `failed` seen while the check
    ran property `row`: its own, or, for a property checked on every call (a crash, a deadline),
    the row's, whose assert made that call."""
    prop = property_named(failed, side)
    return property_named(row, side) if prop.every_call else prop
