"""`lpim.sanitize`: watch the masks that reach torch's attention while your real model runs.

Property tests prove an encoder; they do not see the model you train, where a mask is built in
one module and consumed three modules later, on shapes no test drew. The sanitizer looks at every
call of `F.scaled_dot_product_attention`, `nn.MultiheadAttention` (slow path and fused fast
path), `nn.TransformerEncoderLayer`, `nn.TransformerEncoder`,
`F.multi_head_attention_forward` and, where torch has it, `torch.nn.attention.varlen`'s
`varlen_attn`, and reports what the call's own tensors prove is wrong:

```python title="Listing: around your model's call"
import lpim

with lpim.sanitize(on_finding="collect") as report:
    model(points, point_mask)  # one real forward (or training step)
print(report.table())
```

Where a fill, a head order or an empty row is suspect, the finding is proved on the call's own
tensors (the weight masked keys keep, the line that built the mask), and a fix is printed only
after it was applied to the same call and kept what the mask meant. `EXAMPLES` is the
sanitizer's zoo: one buggy call per finding kind, each with a harmless twin that gives nothing.

It uses torch's extension points (a `TorchFunctionMode` on each thread that starts a session,
global module hooks, and, while a session is on, `torch.nn.functional`'s two attention names
replaced so that other threads are seen too), changes no output, never stops a model (a call it
cannot read runs untouched and is counted in `SanitizeReport.skipped`), and leaves torch as it
found it when the last session ends, whatever the order sessions end in.
"""

from lpim.sanitizer._inspect import KINDS
from lpim.sanitizer._session import (
    Finding,
    MaskHazardError,
    MaskHazardWarning,
    Sanitize,
    SanitizeReport,
    SanitizeSession,
    sanitize,
)
from lpim.sanitizer._zoo import EXAMPLES, SanitizerExample

__all__ = [
    "EXAMPLES",
    "KINDS",
    "Finding",
    "MaskHazardError",
    "MaskHazardWarning",
    "Sanitize",
    "SanitizeReport",
    "SanitizeSession",
    "SanitizerExample",
    "sanitize",
]

# Errors and warnings show under the path users import them from.
for _public in (
    Finding,
    MaskHazardError,
    MaskHazardWarning,
    Sanitize,
    SanitizeReport,
    SanitizeSession,
):
    _public.__module__ = __name__
del _public
