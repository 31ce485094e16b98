"""Datasets: MNIST (checked, cached, read-only) and the task data collected from environments for pretraining.

Contents:
    DatasetError       -- raised for any missing, corrupt or malformed data; its message is one line saying what is
                          wrong, where it looked and what to do.
    MNIST_SHA256       -- SHA-256 of the four decompressed MNIST IDX files (the published sums).
    MNIST_MIRRORS      -- public mirrors tried, in order, when MNIST has to be downloaded.
    default_mnist_root -- ``$FSAE_MNIST_DIR`` if set, else ``~/.cache/fsae-rl/mnist``.
    load_mnist         -- images (N, 28, 28) uint8 and labels (N,) int64 of the "train" or "test" split; files are
                          checked (SHA-256, IDX headers), downloaded when absent and allowed, and cached in-process.
    clear_mnist_cache  -- forget the in-process MNIST cache (e.g. after replacing the files).
    load_task_data     -- ``obs`` (N, C, H, W) uint8 and ``labels`` (N,) or (N, K) from an ``.npz`` file, validated.
    save_task_data     -- the inverse: validate and write an ``.npz`` atomically (temp file + ``os.replace``).
    to_float_images    -- uint8 (N, H, W) or (N, C, H, W) -> float32 tensor (N, C, H, W) in [0, 1].

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
import zipfile
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
    "load_task_data",
    "save_task_data",
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


def _one_line(text: object) -> str:
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
            f"MNIST file {path} is unreadable or corrupt ({_one_line(e)}); delete it and re-download or re-copy it"
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
            f"({_one_line(e)}); {_PROVIDE}"
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
            errors.append(f"{url}: {_one_line(e)}")
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


def _validate_task_arrays(obs: object, labels: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check task-data arrays; ``where`` (a file) goes into the one-line DatasetError message."""
    if not isinstance(obs, np.ndarray) or not isinstance(labels, np.ndarray):
        raise DatasetError(
            f"task data {where}: obs and labels must be numpy arrays, got {type(obs).__name__} and "
            f"{type(labels).__name__}"
        )
    if obs.ndim != 4 or obs.dtype != np.uint8:
        raise DatasetError(
            f"task data {where}: obs must be a 4-D uint8 array (N, C, H, W), got shape {obs.shape} dtype {obs.dtype}; "
            "store raw uint8 pixels, channels first"
        )
    is_int = np.issubdtype(labels.dtype, np.integer)
    is_float = np.issubdtype(labels.dtype, np.floating)
    if labels.ndim == 1 and not is_int:
        raise DatasetError(
            f"task data {where}: labels of shape (N,) must be integer classes, got dtype {labels.dtype}; "
            "use shape (N, 1) for a single regression target"
        )
    if labels.ndim not in (1, 2) or not (is_int or is_float):
        raise DatasetError(
            f"task data {where}: labels must be (N,) int or (N, K) int/float, got shape {labels.shape} "
            f"dtype {labels.dtype}"
        )
    if len(obs) != len(labels):
        raise DatasetError(
            f"task data {where}: obs has {len(obs)} samples but labels has {len(labels)}; both need one row per sample"
        )
    if len(obs) == 0:
        raise DatasetError(f"task data {where}: holds no samples; collect some data first")
    if is_float and not np.isfinite(labels).all():
        raise DatasetError(f"task data {where}: labels contain NaN or inf; drop or fix those samples")
    return obs, labels


def load_task_data(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read task data (observations and their labels, collected from an environment) from an ``.npz`` file.

    Args:
        path: the ``.npz`` file, as written by :func:`save_task_data` (other arrays in it are ignored).

    Returns:
        ``(obs, labels)``: obs (N, C, H, W) uint8; labels (N,) int classes, or (N, K) int/float targets.

    Raises:
        DatasetError: missing or corrupt file, not an ``.npz`` archive, pickled (object) arrays, missing ``obs`` or
            ``labels``, wrong shapes or dtypes, or mismatched lengths.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(
            f"task data file {path} does not exist; check the path, or collect the data and write it with "
            "fsae.data.save_task_data"
        )
    fix = "re-collect it or write it with fsae.data.save_task_data"
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError:  # neither .npy nor zip magic: numpy takes it for a pickle and refuses it
        raise DatasetError(
            f"task data file {path} is not an .npz archive (no zip header; pickles are refused for safety); {fix}"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(
            f"task data file {path} is not a valid .npz file or is corrupt ({_one_line(e)}); {fix}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"task data file {path} is a single .npy array, not an .npz archive; {fix}")
    with archive:
        missing = [k for k in ("obs", "labels") if k not in archive.files]
        if missing:
            raise DatasetError(
                f"task data file {path} lacks key(s) {missing}; keys found: {sorted(archive.files)}; "
                "it needs 'obs' (N, C, H, W) uint8 and 'labels'"
            )
        arrays = {}
        for key in ("obs", "labels"):
            try:
                arrays[key] = archive[key]
            except ValueError as e:
                if "pickle" in str(e).lower():
                    raise DatasetError(
                        f"task data file {path} holds '{key}' as a pickled object array, refused for safety; "
                        f"store plain numeric arrays (obs uint8, labels int/float) and {fix}"
                    ) from None
                raise DatasetError(f"task data file {path}: array '{key}' is corrupt ({_one_line(e)}); {fix}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise DatasetError(f"task data file {path}: array '{key}' is corrupt ({_one_line(e)}); {fix}") from None
    obs, labels = arrays["obs"], arrays["labels"]
    return _validate_task_arrays(obs, labels, str(path))


def save_task_data(
    path: str | Path, obs: np.ndarray, labels: np.ndarray, *, compress: bool = False, **extra_arrays: np.ndarray
) -> Path:
    """Validate and write task data to ``path`` atomically: a temp file in the same folder, then ``os.replace``.

    The file is written at exactly ``path`` (``.npz`` is not appended, unlike ``np.savez``), so the same path can be
    given to :func:`load_task_data`. Readers never see a half-written file.

    Args:
        path: destination file; its folder is created if missing.
        obs: (N, C, H, W) uint8 observations.
        labels: (N,) int classes or (N, K) int/float targets.
        compress: zip-deflate the arrays (smaller, slower).
        **extra_arrays: further arrays stored alongside (e.g. ``episode=...``); object arrays are refused.

    Returns:
        The path written.

    Raises:
        DatasetError: the arrays fail the checks of :func:`load_task_data`, or the file cannot be written.
    """
    path = Path(path).expanduser()
    obs, labels = _validate_task_arrays(obs, labels, str(path))
    extras = {}
    for name, value in extra_arrays.items():
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise DatasetError(
                f"task data {path}: extra array {name!r} has dtype object, which load_task_data refuses to unpickle; "
                "store a numeric or fixed-width string array"
            )
        extras[name] = arr
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as f:  # a file object, so np.savez appends no ".npz" to the name
            (np.savez_compressed if compress else np.savez)(f, obs=obs, labels=labels, **extras)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise DatasetError(
            f"cannot write task data to {path} ({_one_line(e)}); check the folder and free space"
        ) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


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
