"""Files written atomically: through a temporary file in the same folder, synced, then renamed onto the path, so that
a reader, or a run killed mid-write, sees the old file or the complete new one, never a part.

Contents:
    atomic_write      -- ``write(f)`` on the temporary file, then ``os.replace``; the file gets the mode a plain
                         write would (0o666 less the umask), not the temporary file's 0o600.
    atomic_write_json -- a JSON file that way (``metrics.json``, ``run_info.json``, a sweep's ``done.json``).

No dependencies beyond the standard library, so that every module may use it (``fsae.checkpoint`` adds
``atomic_save`` for ``torch.save``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

# The process's umask, read once at import (os.umask can only be read by setting it): ``atomic_write`` gives its files
# the mode a plain ``open(path, "w")`` would (0o644 under the usual umask 0o022), not mkstemp's 0o600.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, sync it and rename it onto ``path``: a reader (or a
    run killed mid-write) sees the old file or the complete new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """``data`` as indented JSON in ``path``, atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))
