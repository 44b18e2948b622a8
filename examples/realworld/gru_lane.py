"""GRU lane encoder over ``pack_padded_sequence``: lpim's own implementation, after PGP.

Family: the recurrent lane encoders of PGP (Deo et al., CoRL 2021) and other graph-based
planners: each lane node's poses pass through a Linear embedding with a LeakyReLU, then a GRU;
the GRU's hidden state after the lane's last real pose is the lane embedding.
``nn.utils.rnn.pack_padded_sequence(x, lengths)`` makes the GRU stop at each lane's length.

Loader's data contract: PGP's loader pads every lane on the right with zeros (real poses first),
and ``pack_padded_sequence`` relies on it: it reads each lane's *first* ``length`` slots. (PGP's
own encoder also keeps a float32 ``torch.zeros`` buffer, so it runs at float32 only; this one
follows the module's dtype.)

What lpim finds: checked under the loader's contract (``layout="right"``, and its zeros; any
garbage passes too, since padded slots are selected to zero and never read) it passes every
property. Without the contract, left or scattered padding puts padded slots among the first
``length`` ones, and ``matches_unpadded`` fails: the lane differs from itself unpadded. That is
not a bug in the encoder but a contract to state. Run it from this folder::

    lpim check gru_lane:build_encoder --layout right     # exit 0
    lpim check gru_lane:build_encoder                    # exit 1: matches_unpadded
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GruLaneEncoder(nn.Module):
    """``forward(points [B, M, N, D], point_mask [B, M, N]) -> [B, M, C]``, right padding only.

    Args:
        in_dim: ``D``, features per pose; lpim reads it from here.
        emb_dim: width of the pose embedding.
        hidden: ``C``, the GRU's hidden size.
        coord_range: coordinates are divided by this.
    """

    def __init__(
        self, in_dim: int = 2, emb_dim: int = 16, hidden: int = 32, coord_range: float = 50.0
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.coord_range = coord_range
        self.embed = nn.Linear(in_dim, emb_dim)
        self.act = nn.LeakyReLU()
        self.gru = nn.GRU(emb_dim, hidden, batch_first=True)

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        """Lane embeddings ``[B, M, C]``; zeros for a lane without poses."""
        B, M, N, D = points.shape
        # Select padded slots to 0: the GRU never reads past a length, but the backward of an
        # unread NaN slot would still be 0 * NaN in the embedding's weight gradient.
        x = torch.where(point_mask[..., None], points, 0) / self.coord_range  # [B, M, N, D]
        x = self.act(self.embed(x.reshape(B * M, N, D)))  # [B*M, N, E]
        lengths = point_mask.sum(dim=-1).reshape(B * M)  # [B*M]
        packed = nn.utils.rnn.pack_padded_sequence(
            x,
            lengths.clamp(min=1).cpu(),  # an empty lane runs one step, selected away below
            batch_first=True,
            enforce_sorted=False,
        )
        _, last = self.gru(packed)  # [1, B*M, C]: the state after each lane's last pose
        out = last[0].reshape(B, M, -1)  # [B, M, C]
        return torch.where(point_mask.any(dim=-1)[..., None], out, 0)


def build_encoder() -> GruLaneEncoder:
    """Seed-0 weights, eval mode."""
    torch.manual_seed(0)
    return GruLaneEncoder().eval()
