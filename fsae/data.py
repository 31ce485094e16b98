"""MNIST, checked, cached and read-only, and the conversion of uint8 images to float tensors.

Contents:
    DatasetError       -- raised for any missing, corrupt or malformed data; its message is one line saying what is
                          wrong, where it looked and what to do.
    MNIST_SHA256       -- SHA-256 of the four decompressed MNIST IDX files (the published sums).
    MNIST_MIRRORS      -- public mirrors tried, in order, when MNIST has to be downloaded.
    default_mnist_root -- ``$FSAE_MNIST_DIR`` if set, else ``~/.cache/fsae-rl/mnist``.
    load_mnist         -- images (N, 28, 28) uint8 and labels (N,) int64 of the "train" or "test" split; files are
                          checked (SHA-256, IDX headers), downloaded when absent and allowed, and cached in-process.
    clear_mnist_cache  -- forget the in-process MNIST cache (e.g. after replacing the files).
    to_float_images    -- uint8 (N, H, W) or (N, C, H, W) -> float32 tensor (N, C, H, W) in [0, 1].

The task data collected from environments are read and written by ``fsae.task_data``.

MNIST is looked up in a folder holding the four IDX files, each either gzip-compressed (``*.gz``) or already
decompressed. The SHA-256 check is on the decompressed bytes, so recompressed archives are accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import threading
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "DatasetError",
    "clear_mnist_cache",
    "default_mnist_root",
    "load_mnist",
    "to_float_images",
]


class DatasetError(RuntimeError):
    """Data are missing, corrupt or malformed; the one-line message says what, where, and what to do about it."""


MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_MNIST_SPLITS: dict[str, tuple[str, str, int]] = {
    # split: (images file, labels file, number of records)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_MNIST_SIDE = 28
_DOWNLOAD_TIMEOUT_S = 10.0
_PROVIDE = "set FSAE_MNIST_DIR or data.root to a folder holding the four IDX files"

_mnist_cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
_mnist_lock = threading.Lock()


def one_line(text: object) -> str:
    """``str(text)`` with newlines collapsed, so every DatasetError message stays on one line."""
    return " ".join(str(text).split())


def default_mnist_root() -> Path:
    """The folder MNIST is read from (and downloaded into) when no root is given.

    Returns:
        ``$FSAE_MNIST_DIR`` if that variable is set and non-empty, else ``~/.cache/fsae-rl/mnist``.
    """
    env = os.environ.get("FSAE_MNIST_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fsae-rl" / "mnist"


def clear_mnist_cache() -> None:
    """Forget every MNIST split loaded so far in this process; the next :func:`load_mnist` reads the files again."""
    with _mnist_lock:
        _mnist_cache.clear()


def _find_mnist_file(root: Path, name: str) -> Path | None:
    """The decompressed file if present (faster to read), else the ``.gz`` one, else ``None``."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _decompressed_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in ``.gz``; unreadable files raise DatasetError."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(
            f"MNIST file {path} is unreadable or corrupt ({one_line(e)}); delete it and re-download or re-copy it"
        ) from None


def _check_sha256(data: bytes, name: str, path: Path) -> None:
    """Raise DatasetError unless ``data`` (decompressed) hashes to the published SHA-256 of ``name``."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_SHA256[name]:
        raise DatasetError(
            f"MNIST file {path} is corrupt or truncated (SHA-256 of its decompressed content is {digest[:16]}..., "
            f"expected {MNIST_SHA256[name][:16]}...); delete it and re-download or re-copy it"
        )


def _parse_idx(data: bytes, path: Path, magic: int, count: int) -> np.ndarray:
    """Parse an IDX images (magic 2051) or labels (magic 2049) file and check its header against what is expected.

    Args:
        data: the decompressed file content.
        path: where it came from, for error messages.
        magic: the expected magic number.
        count: the expected number of records.

    Returns:
        A read-only uint8 view of the payload: (count, 28, 28) for images, (count,) for labels.
    """
    header = 16 if magic == _IMAGES_MAGIC else 8
    fix = "delete it and re-download or re-copy it"
    if len(data) < header:
        raise DatasetError(f"MNIST file {path} is too short for an IDX header ({len(data)} bytes); {fix}")
    fields = struct.unpack(f">{header // 4}i", data[:header])
    if fields[0] != magic:
        raise DatasetError(f"MNIST file {path} has IDX magic {fields[0]}, expected {magic}; {fix}")
    if fields[1] != count:
        raise DatasetError(f"MNIST file {path} holds {fields[1]} records, expected {count}; {fix}")
    shape: tuple[int, ...] = (count,)
    if magic == _IMAGES_MAGIC:
        if fields[2:] != (_MNIST_SIDE, _MNIST_SIDE):
            raise DatasetError(f"MNIST file {path} has {fields[2]}x{fields[3]} images, expected 28x28; {fix}")
        shape = (count, _MNIST_SIDE, _MNIST_SIDE)
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DatasetError(f"MNIST file {path} has {len(data)} bytes, expected {expected}; {fix}")
    arr = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    arr.flags.writeable = False
    return arr


def _download_mnist_file(root: Path, name: str) -> Path:
    """Download ``name.gz`` from the first mirror that serves a file with the right checksum into ``root``.

    The download goes to a temp file in ``root`` and is moved into place with ``os.replace`` only after its
    decompressed content passed the SHA-256 check, so an interrupted or bad download never leaves a broken file.

    Returns:
        The path of the downloaded ``.gz`` file.

    Raises:
        DatasetError: every mirror failed; the message lists where it looked and each mirror's error.
    """
    looked = f"looked for {name}.gz or {name}"
    created = [d for d in (root, *root.parents) if not d.exists()]  # removed again if every mirror fails
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(
            f"MNIST not found in {root} ({looked}) and that folder cannot be created for a download "
            f"({one_line(e)}); {_PROVIDE}"
        ) from None
    target = root / f"{name}.gz"
    errors = []
    for mirror in MNIST_MIRRORS:
        url = mirror.rstrip("/") + f"/{name}.gz"
        tmp: Path | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{name}.", suffix=".part")
            tmp = Path(tmp_name)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, out)
            digest = hashlib.sha256(gzip.decompress(tmp.read_bytes())).hexdigest()
            if digest != MNIST_SHA256[name]:
                errors.append(f"{url}: wrong SHA-256 {digest[:16]}...")
                continue
            tmp.chmod(0o644)
            os.replace(tmp, target)
            return target
        except (OSError, EOFError, zlib.error, ValueError) as e:  # URLError and timeouts are OSErrors
            errors.append(f"{url}: {one_line(e)}")
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    for d in created:  # deepest first; leaves any folder that is no longer empty
        try:
            d.rmdir()
        except OSError:
            break
    tried = "; ".join(errors) if errors else "no mirrors configured"
    raise DatasetError(
        f"MNIST not found in {root} ({looked}) and download failed ({tried}); "
        f"{_PROVIDE}, or download them from a mirror on a machine that reaches one"
    )


def _read_mnist(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """Find (or download), check and parse one split's two files; the uncached body of :func:`load_mnist`."""
    images_name, labels_name, count = _MNIST_SPLITS[split]
    arrays = []
    for name, magic in ((images_name, _IMAGES_MAGIC), (labels_name, _LABELS_MAGIC)):
        path = _find_mnist_file(root, name)
        if path is None:
            if not download:
                where = root if root.is_dir() else f"{root} (no such folder)"
                raise DatasetError(
                    f"MNIST not found in {where} (looked for {name}.gz or {name}); {_PROVIDE}, or allow download"
                )
            path = _download_mnist_file(root, name)
        data = _decompressed_bytes(path)
        _check_sha256(data, name, path)
        arrays.append(_parse_idx(data, path, magic, count))
    images, labels_u8 = arrays
    labels = labels_u8.astype(np.int64)
    labels.flags.writeable = False
    return images, labels


def load_mnist(
    split: str = "train", root: str | Path | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one MNIST split, checked against the published SHA-256 sums and cached for the life of the process.

    Args:
        split: "train" (60,000 records) or "test" (10,000 records).
        root: folder holding the IDX files (``*.gz`` or decompressed); ``None`` means :func:`default_mnist_root`.
        download: fetch missing files from :data:`MNIST_MIRRORS` into ``root``.

    Returns:
        ``(images, labels)``: images (N, 28, 28) uint8 in 0..255 and labels (N,) int64 in 0..9. Both are read-only
        and shared between calls with the same root and split; copy them before modifying.

    Raises:
        ValueError: ``split`` is not "train" or "test".
        DatasetError: files missing (and not downloadable), corrupt, or with unexpected IDX headers.
    """
    if split not in _MNIST_SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; valid splits: {list(_MNIST_SPLITS)}")
    root_path = Path(root).expanduser() if root is not None else default_mnist_root()
    key = (str(root_path.resolve()), split)
    with _mnist_lock:
        cached = _mnist_cache.get(key)
        if cached is None:
            cached = _read_mnist(root_path, split, download)
            _mnist_cache[key] = cached
    return cached


def to_float_images(images: np.ndarray) -> torch.Tensor:
    """Convert uint8 images to a float32 tensor in [0, 1], channels first.

    Args:
        images: uint8 array (N, H, W) (a channel axis is added) or (N, C, H, W). Read-only arrays are fine.

    Returns:
        A new float32 tensor (N, C, H, W) with values ``images / 255``.

    Raises:
        ValueError: not a uint8 array of 3 or 4 dimensions.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim not in (3, 4):
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(f"to_float_images expects a uint8 array (N, H, W) or (N, C, H, W), got {shape} {dtype}")
    if images.ndim == 3:
        images = images[:, None]
    return torch.from_numpy(images.astype(np.float32)).div_(255.0)
