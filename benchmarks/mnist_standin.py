"""Write MNIST-shaped IDX files made from scikit-learn's 8x8 digits, for timing full-mode runs
on a machine that has no MNIST and no network (such as a rented GPU box).

The 1797 digits are upsampled to 28x28 (bilinear, values in 0..255) and split 1438 / 359 like
``lctools.data``'s offline fallback; the test split is repeated to 10,000 images, as many as
MNIST's.  Point ``LCTOOLS_DATA`` at the output folder and ``lctools.data.mnist`` reads them as
MNIST: the computation has MNIST's shapes and costs, but the images are *not* MNIST, so the
figures made from them are timing runs, not reproductions of the paper.

Run:  python benchmarks/mnist_standin.py OUT_DIR
"""
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits


def write_idx(path: Path, array: np.ndarray) -> None:
    code = 0x08  # unsigned bytes
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def main(out: str) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    big = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False).squeeze(1)
    big = (big.clamp(0, 1) * 255).round().numpy().astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:1438], order[1438:]
    test = np.resize(test, 10_000)
    write_idx(out / "train-images-idx3-ubyte", big[train])
    write_idx(out / "train-labels-idx1-ubyte", labels[train])
    write_idx(out / "t10k-images-idx3-ubyte", big[test])
    write_idx(out / "t10k-labels-idx1-ubyte", labels[test])
    print(f"wrote MNIST-shaped stand-in files to {out}: {len(train)} train, {len(test)} test images of 28x28")


if __name__ == "__main__":
    main(sys.argv[1])
