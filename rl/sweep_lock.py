"""One sweep at a time per logdir: an ``flock`` on ``<logdir>/.sweep.lock``, held for the whole sweep and released
when the process ends, however it ends (the kernel drops the lock with the last open handle).

The file names its holder (host and pid) for the refusal's one line. A logdir that the lock created and that holds
nothing else when the sweep ends is removed again, so a sweep refused before its first run (an unreachable cluster,
say) leaves nothing behind; any other logdir keeps its lock file (``rl.archive`` reads it as the sign of a sweep's
logdir).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fsae.config import ConfigError
from fsae.run_folder import check_no_file_in_way

LOCK_FILE = ".sweep.lock"


@contextlib.contextmanager
def sweep_lock(logdirs: set[Path]) -> Iterator[None]:
    """Hold ``<logdir>/.sweep.lock`` for each logdir; a second sweep on the same logdir is refused.

    A logdir that the lock itself created and that holds nothing else when the sweep ends (a sweep refused before any
    run began, e.g. by an unreachable cluster) is removed again, lock file and folders, so nothing is left behind."""
    held: list[tuple[Path, Any, list[Path]]] = []  # (logdir, open lock file, the folders this call created)
    try:
        for logdir in sorted(logdirs):
            check_no_file_in_way(logdir, "logdir")
            created = [d for d in (logdir, *logdir.parents) if not d.exists()]
            try:
                logdir.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # a read-only or virtual file system (/sys, /proc), no permission
                raise ConfigError(f"logdir {logdir} cannot be created: {e.strerror or e}") from None
            f = _lock(logdir / LOCK_FILE)
            held.append((logdir, f, created))
            f.seek(0)
            f.truncate()
            f.write(f"{socket.gethostname()} pid {os.getpid()}\n")
            f.flush()
        yield
    finally:
        for logdir, f, created in held:
            if created and [p.name for p in logdir.iterdir()] == [LOCK_FILE]:
                (logdir / LOCK_FILE).unlink()  # still locked: a sweep waiting on this file sees it go (_lock)
                for d in created:  # innermost first
                    with contextlib.suppress(OSError):  # another process's file in it: it stays
                        d.rmdir()
            f.close()  # also releases the lock


def _lock(path: Path) -> Any:
    """``path`` opened and ``flock``ed, or ``ConfigError`` naming the holder. If the file was removed or replaced
    while this process waited for it (its last holder cleaned up), the new file at ``path`` is locked instead."""
    while True:
        f = open(path, "a+")  # noqa: SIM115  (held open for the whole sweep; not truncated yet)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise ConfigError(f"another sweep is running on {path.parent} ({holder} holds {path})") from None
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                return f
        except FileNotFoundError:
            pass
        f.close()
