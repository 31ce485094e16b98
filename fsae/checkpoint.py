"""Checkpoints: one file, written atomically, loaded without unpickling arbitrary objects.

Contents:
    CheckpointError -- one-line error for a missing, truncated, foreign or unsafe file.
    atomic_write, atomic_write_json -- files written through a temporary one and renamed (from ``fsae.atomic``).
    atomic_save     -- ``torch.save`` that way.
    safe_load       -- ``torch.load(weights_only=True)`` with clear errors.
    sha256_file     -- a file's SHA-256, recorded by runs that depend on a checkpoint (from ``fsae.provenance``).
    save_fsae, load_fsae -- an FSAE as {format, config, state_dict, meta}; loading rebuilds it from the config alone,
                       and warns when the ``run_info.json`` beside the file records another SHA-256 for it.

A checkpoint holds only tensors and plain Python values (dicts, lists, str, int, float, bool), so the restricted
unpickler of ``weights_only=True`` loads it; a file that needs anything else (e.g. a planted malicious pickle) is
refused before any of its code runs.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from fsae.atomic import atomic_write, atomic_write_json
from fsae.config import ConfigError, from_dict, to_dict
from fsae.model import FSAE, FSAEConfig
from fsae.provenance import check_file, sha256_file

__all__ = [
    "CheckpointError",
    "atomic_save",
    "atomic_write",
    "atomic_write_json",
    "load_fsae",
    "safe_load",
    "save_fsae",
    "sha256_file",
]

FSAE_FORMAT = "fsae-rl/fsae"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says which file, why, and what to do."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path``, atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with the restricted unpickler; every failure is one ``CheckpointError`` line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (pretraining writes it)")
    with path.open("rb") as f:
        head = f.read(64)
    if head.strip() and all(32 <= b < 127 or b in b"\t\n\r" for b in head):  # a .pt file is a zip (or a pickle)
        what = "JSON, such as a run's metrics.json" if head.lstrip()[:1] in (b"{", b"[") else "text"
        raise CheckpointError(
            f"{path} is not a checkpoint: it holds {what}, not the .pt file a run writes; pass that file (an FSAE: "
            "a pretraining run's fsae_<variant>.pt or autoencoder.pt; to resume: its train_state.pt), or re-create it"
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values and was refused unread; "
            "only load files you trust, and re-create it with this project's tools"
        ) from None
    # Arbitrary bytes read as a legacy pickle also fail with KeyError/IndexError/struct.error (bad memo or opcode).
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError, struct.error) as e:
        text = (str(e).strip().splitlines() or [""])[0][:120]  # a KeyError's text alone is just the key, e.g. '101'
        reason = f"{type(e).__name__}: {text}" if text else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a PyTorch file ({reason}); re-create it or restore a copy"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def _fresh(obj: Any) -> Any:
    """``obj`` with every string a new object: pickle writes a string used twice (say the key 'groups' and the head
    'groups') once and then refers back to it, so which strings are shared would otherwise decide the bytes."""
    if isinstance(obj, str):
        return obj.encode().decode()
    if isinstance(obj, dict):
        return {_fresh(k): _fresh(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_fresh(v) for v in obj)
    return obj


def save_fsae(path: str | Path, model: FSAE, **meta: Any) -> Path:
    """Write ``model`` (weights + full config + plain ``meta`` values) atomically to ``path``. The same weights,
    config and meta give the same bytes, however the model was made (trained, or loaded from a checkpoint)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # the same bytes, any layout
    return atomic_save(
        {
            "format": FSAE_FORMAT,
            "format_version": FORMAT_VERSION,
            "config": _fresh(to_dict(model.config)),
            "state_dict": state,
            "meta": _fresh(meta),
        },
        path,
    )


def _mismatch(expected: dict[str, torch.Tensor], found: dict[str, Any], show: int = 2) -> str:
    """The first ``show`` differences between a model's state dict and a saved one (missing and unexpected keys,
    shapes), e.g. 'abstract.layers.1.weight: file (9, 36), config (8, 36); 1 more'."""
    problems = [f"{k} missing from the file" for k in expected if k not in found]
    problems += [f"{k} in the file but not in the config" for k in found if k not in expected]
    for k, v in expected.items():
        shape = tuple(getattr(found.get(k), "shape", ()))
        if k in found and shape != tuple(v.shape):
            problems.append(f"{k}: file {shape}, config {tuple(v.shape)}")
    more = f"; {len(problems) - show} more" if len(problems) > show else ""
    return "; ".join(problems[:show]) + more


def load_fsae(path: str | Path, map_location: str | torch.device = "cpu") -> FSAE:
    """Rebuild an FSAE from a checkpoint's saved config, load its weights, and return it in eval mode.

    ``model.checkpoint_meta`` holds the saved ``meta`` dict (e.g. which variant, training metrics). A file that differs
    from the SHA-256 recorded in the ``run_info.json`` beside it is loaded with a ``ProvenanceWarning``.
    """
    ckpt = safe_load(path, map_location)
    check_file(path)
    if ckpt.get("format") != FSAE_FORMAT:
        found = ckpt.get("format", "no format tag")
        raise CheckpointError(f"checkpoint {path} is not an FSAE checkpoint ({found!r}); pass a file from pretrain.py")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {ckpt.get('format_version')}, this code reads {FORMAT_VERSION}"
        )
    for key in ("config", "state_dict", "meta"):  # meta may be left out
        if not isinstance(ckpt.get(key, {} if key == "meta" else None), dict):
            raise CheckpointError(f"checkpoint {path} has no '{key}' mapping; it is damaged or not from pretrain.py")
    try:
        config = from_dict(FSAEConfig, ckpt["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} has a config this code cannot build: {e}") from None
    model = FSAE(config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        detail = _mismatch(model.state_dict(), ckpt["state_dict"]) or str(e).splitlines()[0]
        raise CheckpointError(f"checkpoint {path}: weights do not fit its config ({detail})") from None
    model.checkpoint_meta = dict(ckpt.get("meta", {}))
    return model.to(map_location).eval()
