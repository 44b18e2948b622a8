"""One training step of the seed's lane prior encoder, with the mask built three ways.

The seed: 8 samples x 200 lane slots x 20 points, one query token prepended to every lane, 8 heads,
``nn.TransformerEncoderLayer(batch_first=True)``. Run it under the sanitizer:

    lpim sanitize examples/seed_training_step.py crash   # the per-lane 3D mask: RuntimeError
    lpim sanitize examples/seed_training_step.py repeat  # the tempting fix: runs, silently wrong
    lpim sanitize examples/seed_training_step.py kpm     # the right fix: a 2D key_padding_mask
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor, nn

B, M, N, H, D_MODEL = 8, 200, 20, 8, 64


class LanePrior(nn.Module):
    """Coordinates -> MLP tokens, a learned query token per lane, post-norm layers, token 0 out."""

    def __init__(self, mask_style: str, num_layers: int = 2) -> None:
        super().__init__()
        self.mask_style = mask_style
        self.pos_embed = nn.Sequential(
            nn.Linear(2, D_MODEL), nn.ReLU(), nn.Linear(D_MODEL, D_MODEL)
        )
        self.query = nn.Parameter(torch.randn(D_MODEL))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(D_MODEL, H, 4 * D_MODEL, activation="gelu", batch_first=True)
            for _ in range(num_layers)
        )

    def forward(self, points: Tensor, valid: Tensor) -> Tensor:
        """``points [B, M, N, 2]``, ``valid [B, M, N]`` bool, True = real point -> ``[B, M, C]``."""
        b, m, n, _ = points.shape
        tokens = self.pos_embed(points.reshape(b * m, n, 2) / 50.0)  # [B*M, N, C]
        query = self.query.expand(b * m, 1, D_MODEL)  # [B*M, 1, C]
        tokens = torch.cat([query, tokens], dim=1)  # [B*M, 1+N, C]
        # MHA's key_padding_mask: True = ignore; the query token is never masked
        key_padding_mask = torch.cat([valid.new_zeros(b * m, 1), ~valid.reshape(b * m, n)], dim=1)
        per_lane = key_padding_mask[:, None, :].expand(-1, n + 1, -1)  # [B*M, 1+N, 1+N]
        for layer in self.layers:
            if self.mask_style == "crash":  # the seed: one row per lane, MHA needs B*M*H
                tokens = layer(tokens, src_mask=per_lane)
            elif self.mask_style == "repeat":  # the tempting fix: right shape, head-major rows
                tokens = layer(tokens, src_mask=per_lane.repeat(H, 1, 1))
            else:  # the fix: a 2D key_padding_mask [B*M, 1+N], no head axis at all
                tokens = layer(tokens, src_key_padding_mask=key_padding_mask)
        return tokens[:, 0].reshape(b, m, D_MODEL)  # [B, M, C]


def batch(seed: int = 0) -> tuple[Tensor, Tensor]:
    """2.5-7.5 % of the 200 lanes real, 10-20 points each, padded with the lane's last point."""
    gen = torch.Generator().manual_seed(seed)
    valid = torch.zeros(B, M, N, dtype=torch.bool)
    for b in range(B):
        real = int(torch.randint(5, 16, (), generator=gen))
        lanes = torch.randperm(M, generator=gen)[:real]
        valid[b, lanes] = torch.arange(N) < torch.randint(10, N + 1, (real, 1), generator=gen)
    points = torch.rand(B, M, N, 2, generator=gen) * 100 - 50
    last = (valid.sum(-1) - 1).clamp(min=0)[..., None, None].expand(-1, -1, 1, 2)  # [B, M, 1, 2]
    points = torch.where(valid[..., None], points, points.gather(2, last))
    return points, valid


def main(mask_style: str) -> None:
    torch.manual_seed(0)
    model = LanePrior(mask_style)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    points, valid = batch()
    lane_embedding = model(points, valid)  # [B, M, C]
    loss = lane_embedding[valid.any(-1)][:, 0].square().mean()  # real lanes, a toy target
    loss.backward()
    optimiser.step()
    print(f"{mask_style}: one step, loss {loss.item():.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "kpm")
