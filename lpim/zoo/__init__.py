"""The bug zoo: small lane encoders with one realistic padding-mask bug each, and correct ones.

`BUGS` and `CORRECT` map a snake_case name to a [`ZooEntry`][lpim.zoo.ZooEntry].
`entry.factory()` builds a fresh encoder (point dimension 2, `d_model` 16, deterministic
weights, eval mode) and `entry.caught_by` names the first property of
[`check_encoder`][lpim.testing.check_encoder] that fails on it (`None` for correct encoders):

```python
from lpim.zoo import BUGS

encoder = BUGS["repeat_head_order"].factory()
```

`lpim.zoo.misbehaving` holds encoders that misbehave in other ways (raise, mutate their
inputs, nondeterminism, slowness, ...), each reported by the check as the property it names.

Each encoder class says in its docstring what is wrong (or why it is right), why it is
realistic, which property catches it, and which line does it. The bugs subclass the correct
encoders ([`lpim.zoo.base`][lpim.zoo.base] and [`lpim.zoo.correct`][lpim.zoo.correct]) and
override one step, so the override is the bug.

`CONSUMER_BUGS` and `CONSUMER_CORRECT` ([`lpim.zoo.consumers`][lpim.zoo.consumers]) do the
same one step downstream, for lane-set consumers checked by
[`check_lane_consumer`][lpim.testing.check_lane_consumer].

Each bug's docstring also has a `Sanitizer:` paragraph: the `lpim.sanitize` finding kind that
reports it at run time ("found as `KIND`"), or why only the property check can ("needs
check_encoder: why"); `sanitizer_verdict` reads it.

The zoo imports neither the checks nor Hypothesis: `import lpim.zoo` needs only torch.
"""

from lpim.zoo import base, bugs, consumers, contracts, correct
from lpim.zoo._registry import BUGS, CAUGHT_BY, CORRECT, PropertyName, ZooEntry, sanitizer_verdict
from lpim.zoo.base import AttentionLaneEncoder, LaneOutput, PointLaneEncoder
from lpim.zoo.consumers import CONSUMER_BUGS, CONSUMER_CORRECT, ConsumerZooEntry

__all__ = [
    "BUGS",
    "CAUGHT_BY",
    "CONSUMER_BUGS",
    "CONSUMER_CORRECT",
    "CORRECT",
    "AttentionLaneEncoder",
    "ConsumerZooEntry",
    "LaneOutput",
    "PointLaneEncoder",
    "PropertyName",
    "ZooEntry",
    "base",
    "bugs",
    "consumers",
    "contracts",
    "correct",
    "sanitizer_verdict",
]
