"""Settings for lpim's own test suite."""

import torch

# The suite runs thousands of tiny forward passes, where torch's intra-op threads cost more than
# they give, and under pytest-xdist every worker would start its own pool on the same cores.
torch.set_num_threads(1)
