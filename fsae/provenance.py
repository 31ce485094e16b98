"""Provenance of a run folder: which code and machine made it, and which files it read and wrote, by SHA-256.

Contents:
    ProvenanceWarning  -- warned (one line) when a recorded file's bytes differ from what the run recorded.
    sha256_file        -- a file's SHA-256 (hex).
    run_info           -- package version, git commit, Python / torch / numpy versions, host name and time, as a dict.
    write_run_info     -- ``run_dir/run_info.json``: ``run_info()`` plus path and SHA-256 of every file the run depends
                          on (``depends_on``, e.g. the FSAE checkpoint of an agent run) and of every file it wrote
                          (``produced``, e.g. pretraining's checkpoints, stored relative to the run folder).
    check_dependencies -- warn for each recorded file whose SHA-256 differs now (or that is gone); returns the messages.
    check_file         -- the same for one file, against the ``run_info.json`` beside it (``load_fsae`` calls this).

A changed checkpoint is not an error: re-running an analysis on a retrained model is legitimate. But results can then
no longer be traced to the recorded run, so a warning says so, naming the file and both hashes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import socket
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy
import torch

from fsae.atomic import atomic_write_json

RUN_INFO = "run_info.json"
PACKAGE = "fsae-rl"
_REPO = Path(__file__).resolve().parent.parent


class ProvenanceWarning(UserWarning):
    """A file a run recorded (by SHA-256) has changed or gone since."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs (e.g. a network filesystem)
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_info() -> dict[str, Any]:
    """What made a run: package version, git commit (None outside a git checkout) and whether tracked files had
    uncommitted changes, interpreter and library versions, host name and UTC time."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "package": PACKAGE,
        "version": version,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "hostname": socket.gethostname(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }


def write_run_info(
    run_dir: str | Path,
    depends_on: dict[str, str | Path] | None = None,
    produced: dict[str, str | Path] | None = None,
) -> Path:
    """Write ``run_dir/run_info.json`` (``run_info()`` plus ``{name: {path, sha256}}`` for the files the run depends
    on and the files it produced); return its path. Dependencies are stored as absolute paths, products relative to
    ``run_dir`` so that the folder can move."""
    run_dir = Path(run_dir)
    info = run_info()
    info["depends_on"] = {
        name: {"path": str(Path(p).resolve()), "sha256": sha256_file(p)} for name, p in (depends_on or {}).items()
    }
    info["produced"] = {
        name: {"path": str(Path(p).resolve().relative_to(run_dir.resolve())), "sha256": sha256_file(p)}
        for name, p in (produced or {}).items()
    }
    return atomic_write_json(run_dir / RUN_INFO, info)


def _entries(run_dir: Path) -> list[tuple[Path, str]]:
    """(absolute path, recorded SHA-256) of every file ``run_dir/run_info.json`` records; [] without one."""
    try:
        info = json.loads((run_dir / RUN_INFO).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:  # a record that is there but does not read: say so, not silently pass
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        message = f"{run_dir / RUN_INFO} is unreadable ({reason}); the files it records are not checked"
        warnings.warn(message, ProvenanceWarning, stacklevel=3)
        return []
    if not isinstance(info, dict):
        return []
    out = []
    for section in ("depends_on", "produced"):
        for entry in (info.get(section) or {}).values():
            if isinstance(entry, dict) and "path" in entry and "sha256" in entry:
                out.append((run_dir / entry["path"], entry["sha256"]))  # an absolute path replaces run_dir
    return out


def _check(path: Path, recorded: str, source: Path) -> str | None:
    if not path.is_file():
        return f"{path} is gone (recorded SHA-256 {recorded} in {source})"
    now = sha256_file(path)
    if now != recorded:
        return f"{path} has SHA-256 {now}, but {source} recorded {recorded}; it changed since that run"
    return None


def check_dependencies(run_dir: str | Path) -> list[str]:
    """Warn (``ProvenanceWarning``, one line each) for every file in ``run_dir/run_info.json`` whose SHA-256 differs
    now or that is gone; return the messages ([] when all match or there is no record)."""
    run_dir = Path(run_dir)
    messages = [m for path, sha in _entries(run_dir) if (m := _check(path, sha, run_dir / RUN_INFO))]
    for m in messages:
        warnings.warn(m, ProvenanceWarning, stacklevel=2)
    return messages


def check_file(path: str | Path) -> str | None:
    """Warn (``ProvenanceWarning``) if the ``run_info.json`` beside ``path`` records another SHA-256 for it; return
    the message, or None (match, not recorded, or no record)."""
    path = Path(path)
    for recorded_path, sha in _entries(path.parent):
        if recorded_path.resolve() == path.resolve():
            message = _check(path, sha, path.parent / RUN_INFO)
            if message:
                warnings.warn(message, ProvenanceWarning, stacklevel=3)
            return message
    return None
