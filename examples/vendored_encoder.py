"""Vendoring the reference encoder: copy it into your tree, load your weights, prove it still holds.

    python examples/vendored_encoder.py

does what you would do in your project: ``lpim vendor`` writes ``encoder.py`` (torch only) into a
directory of yours, your model imports it from there, and lpim checks the copy. Here the copy
goes to a temporary directory and gets the weights of lpim's own ``PriorEncoder``, so the script
can also show that the copy computes exactly what the original does.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lpim import PriorEncoder
from lpim.testing import check_encoder


def vendor_into(directory: Path) -> Path:
    # In your project: `lpim vendor my_project/models/` once, and commit the file.
    subprocess.run(["lpim", "vendor", str(directory)], check=True)
    return directory / "encoder.py"


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location("vendored_encoder", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        vendored = import_file(vendor_into(Path(tmp)))
        config = dict(d_model=32, nhead=4, num_layers=2, dim_feedforward=64, dropout=0.0)
        torch.manual_seed(0)
        original = PriorEncoder(**config).eval()
        copy = vendored.PriorEncoder(**config).eval()
        copy.load_state_dict(original.state_dict())  # same layout: your checkpoint loads as is

        points = torch.randn(4, 10, 20, 2) * 20  # [B, M, N, D] metres
        point_mask = torch.rand(4, 10, 20) > 0.6  # [B, M, N], True = real point
        with torch.no_grad():
            a, b = original(points, point_mask), copy(points, point_mask)
        torch.testing.assert_close(b.lane_embedding, a.lane_embedding, rtol=0, atol=0)
        print("vendored copy == lpim.PriorEncoder on", tuple(points.shape), "(bit for bit)")

        report = check_encoder(copy, dtype=torch.float32)
        print(report)
        if not report.passed:
            sys.exit(1)


if __name__ == "__main__":
    main()
