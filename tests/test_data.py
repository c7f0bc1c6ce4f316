"""Tests for lctools.data: toy sets, the subspace mixture, the IDX parser and mnist()'s three paths."""
import gzip
import struct
import sys
import types

import numpy as np
import pytest
import torch

from lctools import data
from lctools.data import balanced_subset, gaussian_mixture, mnist, read_idx

TOYS = [data.two_moons, data.spirals, data.circles, data.xor_blobs]


# --------------------------------------------------------------------------- helpers


def write_idx(path, array, gz=False, code=None):
    """Write ``array`` as an IDX file (written here independently of the parser under test)."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    array = np.asarray(array)
    code = codes[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(payload)
    return path


def fake_mnist(folder, n_train=40, n_test=20, size=4, gz=True, seed=0):
    """Small MNIST-like IDX files (``size x size`` images, labels ``i % 10``) in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, gz=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz=gz)
        out[prefix] = (images, labels)
    return out


@pytest.fixture
def no_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` raise ImportError


# --------------------------------------------------------------------------- toy sets


@pytest.mark.parametrize("make", TOYS, ids=lambda f: f.__name__)
def test_toy_shapes_range_determinism(make):
    X, y = make(n=201, seed=3)
    assert X.shape == (201, 2) and X.dtype == torch.float32
    assert y.shape == (201,) and y.dtype == torch.int64
    assert set(y.tolist()) == {0, 1}
    assert abs((y == 0).sum().item() - (y == 1).sum().item()) <= 1
    assert X.abs().max() < 1.6  # roughly in [-1, 1]^2 (noise tails may poke out a little)
    assert (X.abs() <= 1.05).all(dim=1).float().mean() > 0.95
    X2, y2 = make(n=201, seed=3)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    X3, _ = make(n=201, seed=4)
    assert not torch.equal(X, X3)


def test_toy_bad_args():
    with pytest.raises(ValueError):
        data.two_moons(n=0)
    with pytest.raises(ValueError):
        data.circles(n=10, factor=1.5)


# --------------------------------------------------------------------------- gaussian mixture


def test_gaussian_mixture_subspace():
    ds = gaussian_mixture(300, dim=50, intrinsic_dim=3, num_classes=4, seed=1)
    X, y = ds  # unpacks like a pair
    assert X.shape == (300, 50) and X.dtype == torch.float32
    assert y.shape == (300,) and set(y.tolist()) == {0, 1, 2, 3}
    U = ds.basis
    assert U.shape == (50, 3) and ds.intrinsic_dim == 3
    assert torch.allclose(U.T @ U, torch.eye(3), atol=1e-5)
    assert ds.means.shape == (4, 50)
    # class means and (without ambient noise) the data lie in span(U)
    for points in (ds.means, X):
        residual = points - (points @ U) @ U.T
        assert residual.norm() / points.norm() < 1e-5
    assert ds.project(X).shape == (300, 3)


def test_gaussian_mixture_ambient_noise_and_determinism():
    a = gaussian_mixture(200, dim=30, intrinsic_dim=2, ambient_std=0.1, seed=5)
    b = gaussian_mixture(200, dim=30, intrinsic_dim=2, ambient_std=0.1, seed=5)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    residual = a.X - (a.X @ a.basis) @ a.basis.T
    assert 0.05 < residual.pow(2).mean().sqrt() < 0.15  # isotropic noise of std 0.1 off the subspace
    means_res = a.means - (a.means @ a.basis) @ a.basis.T
    assert means_res.abs().max() < 1e-5
    with pytest.raises(ValueError):
        gaussian_mixture(10, dim=3, intrinsic_dim=5)


# --------------------------------------------------------------------------- IDX parser


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
    labels = np.array([7, 0, 3], dtype=np.uint8)
    floats = rng.standard_normal((2, 3)).astype(np.float32)
    ints = rng.integers(-1000, 1000, size=(6,)).astype(np.int32)
    for name, arr in [("img", images), ("lbl", labels), ("f", floats), ("i", ints)]:
        out = read_idx(write_idx(tmp_path / f"{name}.idx", arr, gz=gz))
        assert out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)


def test_read_idx_errors(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad)
    with pytest.raises(ValueError, match="dtype code"):
        read_idx(write_idx(tmp_path / "code.idx", np.zeros(2, np.uint8), code=0x42))
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x00\x01")
    with pytest.raises(ValueError, match="bytes"):
        read_idx(short)


# --------------------------------------------------------------------------- mnist()


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, no_torchvision, gz, capsys):
    ref = fake_mnist(tmp_path, gz=gz)
    ds = mnist(train=True, root=tmp_path)
    assert ds.name == "mnist" and ds.image_shape == (4, 4) and ds.dim == 16
    assert ds.X.shape == (40, 16) and ds.X.dtype == torch.float32 and ds.y.dtype == torch.int64
    np.testing.assert_allclose(ds.X.numpy(), ref["train"][0].reshape(40, 16) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y.numpy(), ref["train"][1])
    test = mnist(train=False, root=tmp_path, flatten=False)
    assert test.X.shape == (20, 1, 4, 4) and len(test) == 20
    assert "FALLBACK" not in capsys.readouterr().out


def test_mnist_env_var_and_torchvision_layout(tmp_path, monkeypatch, no_torchvision):
    fake_mnist(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("LCTOOLS_DATA", str(tmp_path))
    assert mnist().name == "mnist"


def test_mnist_uses_torchvision_downloader(tmp_path, monkeypatch):
    calls = []

    def MNIST(root, train=True, download=False):  # a stand-in downloader: writes IDX files
        calls.append((root, train, download))
        fake_mnist(tmp_path / "MNIST" / "raw")

    fake_tv = types.SimpleNamespace(datasets=types.SimpleNamespace(MNIST=MNIST))
    monkeypatch.setitem(sys.modules, "torchvision", fake_tv)
    ds = mnist(root=tmp_path)
    assert calls == [(str(tmp_path), True, True)]
    assert ds.name == "mnist" and len(ds) == 40


def test_mnist_download_failure_falls_back(tmp_path, monkeypatch, capsys):
    def MNIST(root, train=True, download=False):
        raise RuntimeError("no network")

    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(datasets=types.SimpleNamespace(MNIST=MNIST)))
    ds = mnist(root=tmp_path)
    assert ds.name == "digits"
    out = capsys.readouterr().out
    assert "FALLBACK" in out and "no network" in out


def test_mnist_fallback_digits(tmp_path, no_torchvision, capsys):
    train = mnist(train=True, root=tmp_path)
    out = capsys.readouterr().out
    assert "OFFLINE FALLBACK" in out and "torchvision" in out and "LCTOOLS_DATA" in out
    test = mnist(train=False, root=tmp_path, verbose=False)
    assert capsys.readouterr().out == ""
    assert train.name == "digits" and train.image_shape == (8, 8) and train.num_classes == 10
    assert train.X.shape == (1438, 64) and test.X.shape == (359, 64)
    for ds in (train, test):
        assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.X.min() >= 0 and ds.X.max() <= 1 and ds.X.max() == 1
        assert set(ds.y.tolist()) == set(range(10))
    # deterministic split, disjoint train/test
    again = mnist(train=True, root=tmp_path, verbose=False)
    assert torch.equal(train.X, again.X)
    rows = {tuple(r) for r in train.X.numpy().round(4).tolist()}
    assert sum(tuple(r) in rows for r in test.X.numpy().round(4).tolist()) < 10  # (digits has a few duplicate images)
    assert mnist(root=tmp_path, flatten=False, verbose=False).X.shape == (1438, 1, 8, 8)


def test_mnist_subset(tmp_path, no_torchvision):
    a = mnist(subset=500, seed=1, root=tmp_path, verbose=False)
    b = mnist(subset=500, seed=1, root=tmp_path, verbose=False)
    c = mnist(subset=500, seed=2, root=tmp_path, verbose=False)
    assert len(a) == 500 and torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)
    assert torch.bincount(a.y, minlength=10).tolist() == [50] * 10
    assert len(mnist(train=False, subset=10_000, root=tmp_path, verbose=False)) == 359  # capped at the split
    with pytest.raises(ValueError):
        mnist(subset=0, root=tmp_path, verbose=False)


def test_balanced_subset():
    y = np.array([0] * 50 + [1] * 30 + [2] * 5)
    idx = balanced_subset(y, 31, seed=0)
    assert len(idx) == len(set(idx)) == 31 and np.all(np.diff(idx) > 0)
    counts = np.bincount(y[idx], minlength=3)
    assert counts[2] == 5 and abs(counts[0] - counts[1]) <= 1  # short class gives all it has
    np.testing.assert_array_equal(idx, balanced_subset(y, 31, seed=0))
