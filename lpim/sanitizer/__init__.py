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

It uses torch's extension points (a `TorchFunctionMode` and global module hooks), changes no
output, and leaves torch as it found it when the last context exits.
"""

from lpim.sanitizer._checks import KINDS
from lpim.sanitizer._session import (
    Finding,
    MaskHazardError,
    MaskHazardWarning,
    Sanitize,
    SanitizeReport,
    SanitizeSession,
    sanitize,
)

__all__ = [
    "KINDS",
    "Finding",
    "MaskHazardError",
    "MaskHazardWarning",
    "Sanitize",
    "SanitizeReport",
    "SanitizeSession",
    "sanitize",
]

# Errors and warnings show under the path users import them from.
for _public in (Finding, MaskHazardError, MaskHazardWarning, Sanitize, SanitizeReport,
                SanitizeSession):  # fmt: skip
    _public.__module__ = __name__
del _public
