"""Task data: the observations and labels collected from an environment for pretraining, as an ``.npz`` file.

Contents:
    load_task_data -- ``obs`` (N, C, H, W) uint8 and ``labels`` (N,) or (N, K) from an ``.npz`` file, validated.
    save_task_data -- the inverse: validate and write an ``.npz`` atomically (temp file + ``os.replace``).
    task_data_origin -- where ``scripts/collect.py`` took the data: env id, wrappers, layout (for checkpoints' meta).

Every failure is a one-line ``fsae.data.DatasetError`` saying what is wrong and what to do.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from fsae.atomic import atomic_write
from fsae.config import ConfigError
from fsae.data import DatasetError, one_line


class LabelCountError(DatasetError, ConfigError):
    """Task data whose labels do not match its observations one to one: bad input, so the scripts exit 2 (a
    ``ConfigError``), while staying a ``DatasetError`` for code that catches data problems."""


__all__ = ["load_task_data", "save_task_data", "task_data_origin"]


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
        raise LabelCountError(
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
            "fsae.task_data.save_task_data"
        )
    fix = "re-collect it or write it with fsae.task_data.save_task_data"
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError:  # neither .npy nor zip magic: numpy takes it for a pickle and refuses it
        raise DatasetError(
            f"task data file {path} is not an .npz archive (no zip header; pickles are refused for safety); {fix}"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(
            f"task data file {path} is not a valid .npz file or is corrupt ({one_line(e)}); {fix}"
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
                raise DatasetError(f"task data file {path}: array '{key}' is corrupt ({one_line(e)}); {fix}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise DatasetError(f"task data file {path}: array '{key}' is corrupt ({one_line(e)}); {fix}") from None
    obs, labels = arrays["obs"], arrays["labels"]
    return _validate_task_arrays(obs, labels, str(path))


def task_data_origin(path: str | Path) -> dict[str, object]:
    """What ``scripts/collect.py`` recorded beside the arrays: ``env_id``, ``env_wrappers`` (the config's list) and
    ``layout`` (how each observation was made (C, H, W)); {} for a file without them (written by hand) or unreadable
    (``load_task_data`` says why). Pretraining copies it into each checkpoint's meta, so that an agent can see what
    the model read."""
    import json

    try:
        with np.load(Path(path).expanduser(), allow_pickle=False) as archive:
            found = {k: archive[k].item() for k in ("env_id", "layout", "config") if k in archive.files}
        config = json.loads(str(found.pop("config", "{}")))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, AttributeError):
        return {}
    if not found:
        return {}
    return {**{k: str(v) for k, v in found.items()}, "env_wrappers": config.get("env_wrappers", [])}


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
    save = np.savez_compressed if compress else np.savez
    try:  # to a file object, so np.savez appends no ".npz" to the name
        return atomic_write(path, lambda f: save(f, obs=obs, labels=labels, **extras))
    except OSError as e:
        raise DatasetError(
            f"cannot write task data to {path} ({one_line(e)}); check the folder and free space"
        ) from None
