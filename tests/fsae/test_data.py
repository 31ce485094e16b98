"""Tests for fsae.data: MNIST loading/checking/caching/downloading, task-data files, and image conversion."""

from __future__ import annotations

import gzip
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fsae import data
from fsae.data import DatasetError, load_mnist, to_float_images
from fsae.task_data import load_task_data, save_task_data

# Published per-class counts of the MNIST splits.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist_dir() -> Path:
    root = data.default_mnist_root()
    if not (root / "t10k-labels-idx1-ubyte.gz").is_file() and not (root / "t10k-labels-idx1-ubyte").is_file():
        pytest.skip(f"no local MNIST in {root} (set FSAE_MNIST_DIR)")
    return root


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --- MNIST -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "counts"), [("train", TRAIN_COUNTS), ("test", TEST_COUNTS)])
def test_mnist_shapes_counts_and_cache(mnist_dir: Path, split: str, counts: list[int]) -> None:
    images, labels = load_mnist(split)
    n = sum(counts)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    hist = np.bincount(labels, minlength=10)
    assert hist.sum() == n and len(hist) == 10 and (hist > 0).all()
    assert hist.tolist() == counts
    assert int(images.min()) == 0 and int(images.max()) == 255

    again = load_mnist(split, root=str(mnist_dir), download=False)  # same resolved root -> same cache entry
    assert again[0] is images and again[1] is labels
    assert not images.flags.writeable and not labels.flags.writeable
    with pytest.raises(ValueError):
        images[0, 0, 0] = 1
    with pytest.raises(ValueError):
        labels[0] = 3


def test_mnist_bad_split() -> None:
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_mnist("val")


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FSAE_MNIST_DIR", str(tmp_path))
    assert data.default_mnist_root() == tmp_path
    monkeypatch.delenv("FSAE_MNIST_DIR")
    assert data.default_mnist_root() == Path.home() / ".cache" / "fsae-rl" / "mnist"


def test_mnist_missing_folder_no_download(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        load_mnist("test", root=root, download=False)
    msg = _one_line(err)
    assert str(root) in msg and "t10k-images-idx3-ubyte.gz" in msg and "FSAE_MNIST_DIR" in msg
    assert not root.exists()


def test_mnist_modified_labels_fail_checksum(mnist_dir: Path, tmp_path: Path) -> None:
    shutil.copy(mnist_dir / "t10k-images-idx3-ubyte.gz", tmp_path)
    raw = bytearray(gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one label changed: headers stay valid, only the checksum can tell
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DatasetError) as err:
        load_mnist("test", root=tmp_path, download=False)
    msg = _one_line(err)
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in msg and "SHA-256" in msg and "delete it" in msg


def test_mnist_truncated_gzip(mnist_dir: Path, tmp_path: Path) -> None:
    shutil.copy(mnist_dir / "t10k-images-idx3-ubyte.gz", tmp_path)
    good = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError) as err:
        load_mnist("test", root=tmp_path, download=False)
    msg = _one_line(err)
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in msg and "corrupt" in msg and "re-download" in msg


def test_mnist_download_from_mirror(mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, mirror)
    bad = tmp_path / "bad-mirror"  # serves nothing: the loader must move on to the next mirror
    monkeypatch.setattr(data, "MNIST_MIRRORS", (bad.as_uri() + "/", mirror.as_uri() + "/"))
    root = tmp_path / "cache" / "mnist"
    images, labels = load_mnist("test", root=root)
    assert images.shape == (10_000, 28, 28) and np.bincount(labels).tolist() == TEST_COUNTS
    assert sorted(p.name for p in root.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_mnist_download_all_mirrors_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "MNIST_MIRRORS", ((tmp_path / "none").as_uri() + "/",))
    root = tmp_path / "a" / "b"
    with pytest.raises(DatasetError) as err:
        load_mnist("test", root=root)
    msg = _one_line(err)
    assert str(root) in msg and "download failed" in msg and "t10k-images-idx3-ubyte.gz" in msg
    assert "FSAE_MNIST_DIR" in msg
    assert not (tmp_path / "a").exists()  # folders made for the failed download are removed again


# --- task data -------------------------------------------------------------------------------------------------------


def _task_arrays(n: int = 6, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=(n, 3, 8, 10), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64) if k is None else rng.normal(size=(n, k)).astype(np.float32)
    return obs, labels


@pytest.mark.parametrize("k", [None, 3])
def test_task_data_round_trip(tmp_path: Path, k: int | None) -> None:
    obs, labels = _task_arrays(k=k)
    path = tmp_path / "sub" / "task.npz"
    assert save_task_data(path, obs, labels, episode=np.arange(6)) == path
    got_obs, got_labels = load_task_data(path)
    assert got_obs.dtype == obs.dtype and got_labels.dtype == labels.dtype
    assert got_obs.tobytes() == obs.tobytes() and got_labels.tobytes() == labels.tobytes()
    assert got_obs.shape == (6, 3, 8, 10) and got_labels.shape == labels.shape
    with np.load(path) as z:
        assert sorted(z.files) == ["episode", "labels", "obs"]
    assert [p.name for p in path.parent.iterdir()] == ["task.npz"]  # no temp file left behind


def test_task_data_exact_path_without_suffix(tmp_path: Path) -> None:
    obs, labels = _task_arrays()
    path = tmp_path / "task.data"
    save_task_data(path, obs, labels, compress=True)
    assert [p.name for p in tmp_path.iterdir()] == ["task.data"]
    assert np.array_equal(load_task_data(path)[0], obs)


def _load_err(path: Path) -> str:
    with pytest.raises(DatasetError) as err:
        load_task_data(path)
    msg = _one_line(err)
    assert str(path) in msg
    return msg


def test_task_data_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in _load_err(tmp_path / "absent.npz")


def test_task_data_missing_key(tmp_path: Path) -> None:
    obs, _ = _task_arrays()
    path = tmp_path / "t.npz"
    np.savez(path, obs=obs, targets=np.zeros(6))
    msg = _load_err(path)
    assert "['labels']" in msg and "keys found: ['obs', 'targets']" in msg


def test_task_data_mismatched_lengths(tmp_path: Path) -> None:
    obs, labels = _task_arrays()
    path = tmp_path / "t.npz"
    np.savez(path, obs=obs, labels=labels[:4])
    assert "obs has 6 samples but labels has 4" in _load_err(path)


@pytest.mark.parametrize(
    ("obs", "text"),
    [
        (np.zeros((6, 3, 8, 10), dtype=np.float32), "dtype float32"),
        (np.zeros((6, 8, 10), dtype=np.uint8), "shape (6, 8, 10)"),
    ],
)
def test_task_data_bad_obs(tmp_path: Path, obs: np.ndarray, text: str) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, obs=obs, labels=np.zeros(6, dtype=np.int64))
    msg = _load_err(path)
    assert "4-D uint8" in msg and text in msg


def test_task_data_bad_labels(tmp_path: Path) -> None:
    obs, _ = _task_arrays()
    path = tmp_path / "t.npz"
    np.savez(path, obs=obs, labels=np.zeros(6, dtype=np.float64))
    assert "(N, 1)" in _load_err(path)
    np.savez(path, obs=obs, labels=np.full((6, 2), np.nan))
    assert "NaN" in _load_err(path)


def test_task_data_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    path.write_text("obs,labels\n1,2\n")
    assert "not an .npz archive" in _load_err(path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    assert "single .npy array" in _load_err(tmp_path / "single.npy")


def test_task_data_truncated_npz(tmp_path: Path) -> None:
    obs, labels = _task_arrays()
    path = save_task_data(tmp_path / "t.npz", obs, labels)
    path.write_bytes(path.read_bytes()[:200])
    assert "corrupt" in _load_err(path)


def test_task_data_pickled_object_array_refused(tmp_path: Path) -> None:
    obs, _ = _task_arrays()
    path = tmp_path / "t.npz"
    labels = np.empty(6, dtype=object)
    labels[:] = [{"digit": i} for i in range(6)]
    np.savez(path, obs=obs, labels=labels)  # np.savez pickles object arrays
    msg = _load_err(path)
    assert "pickled object array" in msg and "'labels'" in msg


def test_save_task_data_validates(tmp_path: Path) -> None:
    obs, labels = _task_arrays()
    path = tmp_path / "t.npz"
    with pytest.raises(DatasetError, match="obs has 6 samples but labels has 5"):
        save_task_data(path, obs, labels[:5])
    with pytest.raises(DatasetError, match="4-D uint8"):
        save_task_data(path, obs.astype(np.int16), labels)
    with pytest.raises(DatasetError, match="extra array 'meta' has dtype object"):
        save_task_data(path, obs, labels, meta=np.array([{}], dtype=object))
    assert list(tmp_path.iterdir()) == []


def test_save_task_data_replaces_existing(tmp_path: Path) -> None:
    obs, labels = _task_arrays()
    path = save_task_data(tmp_path / "t.npz", obs, labels)
    save_task_data(path, obs[:2], labels[:2])
    assert load_task_data(path)[0].shape == (2, 3, 8, 10)
    assert os.listdir(tmp_path) == ["t.npz"]


# --- to_float_images -------------------------------------------------------------------------------------------------


def test_to_float_images() -> None:
    gray = np.array([[[0, 255], [51, 102]]] * 3, dtype=np.uint8)  # (3, 2, 2)
    gray.flags.writeable = False  # like load_mnist's arrays: must not warn or fail
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_float_images(gray)
    assert t.shape == (3, 1, 2, 2) and t.dtype == torch.float32
    assert t.min().item() == 0.0 and t.max().item() == 1.0
    assert torch.allclose(t[0, 0], torch.tensor([[0.0, 1.0], [0.2, 0.4]]))

    rgb = np.full((2, 3, 4, 5), 255, dtype=np.uint8)
    out = to_float_images(rgb)
    assert out.shape == (2, 3, 4, 5) and bool((out == 1.0).all())
    out[0] = 0.0
    assert rgb.min() == 255  # a copy, not a view

    with pytest.raises(ValueError, match="uint8"):
        to_float_images(np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        to_float_images(np.zeros((4, 4), dtype=np.uint8))
