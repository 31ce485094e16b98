"""Carrying finished runs between machines: their records, without the agents' weights.

A grid that takes more CPU-hours than one machine lives (the MiniGrid verdict: about 18 on the 2-core VM, three hours
a session, every session on a fresh machine) is finished piece by piece: each session copies the runs it finished
into the repository (``results/``), and the next one copies them back into the sweep's logdir, where the sweep skips
them as finished (``rl.sweep.split_finished``, which still refuses them if the planned settings or the frozen
checkpoint's SHA-256 differ). The same function does both directions.

Contents:
    LEFT_OUT        -- what a copy leaves out: SB3's model zips (final, best, checkpoints), megabytes a run.
    finished_runs   -- the finished run folders under a logdir (``rl.run_folder.run_folders``, ``run_finished``).
    copy_finished   -- copy them into another root, each folder written whole or not at all (a temporary folder
                       renamed into place); a run already there is skipped when it is the same run (same
                       ``metrics.json``), and refused when it is another one, or when something else sits in its place.
                       A run whose JSON records or TensorBoard files are corrupt is refused before anything is copied.

Kept: TensorBoard events, ``progress.csv``, ``train.log``, ``eval/evaluations.npz``, ``metrics.json``, ``done.json``,
the resolved ``config.yaml``, ``command.txt``, ``fsae.json`` and ``run_info.json`` (commit, machine, checkpoint
SHA-256): all that ``scripts/compare.py`` reads. Not kept: the agents, so a carried run cannot be evaluated again
(``scripts/evaluate_shift.py`` needs its ``final_model.zip``) or resumed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rl.run_folder import DONE_MARKER, check_event_files, read_record, run_finished, run_folders

LEFT_OUT = ("*.zip", "checkpoints")
"""``shutil.ignore_patterns`` of a copy: the agents' weights (``final_model.zip``, ``best_model.zip``,
``checkpoints/agent_<step>_steps.zip``)."""

_TEMPORARY = re.compile(r"\.seed-?\d+\.[A-Za-z0-9_]+")
"""A copy's temporary folder (``.seed<N>.<random>`` beside the run's place), left behind by a killed copy."""


class ArchiveError(ValueError):
    """A copy that would overwrite something, a root that is not a folder of runs, or a sweep running there."""


@dataclass
class CopyReport:
    copied: list[Path] = field(default_factory=list)
    """Run folders written, relative to the roots."""
    already: list[Path] = field(default_factory=list)
    """Runs the destination held already (the same ``metrics.json``)."""
    unfinished: list[Path] = field(default_factory=list)
    """Run folders of the source left behind because they did not finish."""


def finished_runs(root: str | Path) -> list[Path]:
    """The finished run folders under ``root`` (``rl.run_folder.run_finished``), relative to it."""
    return [rel for rel in run_folders(root) if run_finished(Path(root) / rel)]


def _record(path: Path) -> dict | None:
    """A run's JSON record, None when it is missing; ``ArchiveError`` naming a file that is there but unreadable (a
    corrupt record is never carried, nor taken for a copy of the run)."""
    if not path.is_file():
        return None
    try:
        return read_record(path, strict=True)
    except ValueError as e:
        raise _corrupt(e) from None


def _corrupt(e: ValueError) -> ArchiveError:
    """The refusal of a run with a corrupt file (``e`` names it)."""
    return ArchiveError(f"{e}; restore it or train the run again, then copy")


def _same_run(a: Path, b: Path) -> bool:
    """Whether two finished run folders hold the same run: the same ``metrics.json`` (written once, by the run, as its
    last file; the sweep's ``done.json`` may come a moment later), else (one side without it) the same ``done.json``."""
    for name in ("metrics.json", DONE_MARKER):
        x, y = _record(a / name), _record(b / name)
        if x is not None and y is not None:
            return x == y
    return False


def copy_finished(src: str | Path, dest: str | Path) -> CopyReport:
    """Copy every finished run under ``src`` into the same place under ``dest``, without ``LEFT_OUT``.

    Refused before anything is copied (``ArchiveError``): a ``src`` without run folders, a ``dest`` that is not a
    folder or that a sweep is running on (a sweep's logdir: its lock is held for the whole copy, so that no sweep
    starts there meanwhile and runs a carried run again), another finished run in a run's place (a different
    ``metrics.json``), a ``metrics.json`` or ``done.json`` on either side that is there but unreadable, or anything
    else there (an unfinished run: let it finish, or remove it). Each run folder is
    written whole or not at all; a killed copy's temporary folders beside the runs it copies are removed first (two
    copies into one destination at once are not supported).
    """
    from fsae.config import ConfigError
    from rl.sweep_lock import LOCK_FILE, sweep_lock

    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise ArchiveError(f"{src} is not a folder of runs")
    folders = run_folders(src)
    if not folders:
        raise ArchiveError(f"no run folders <env>/<condition>/seed<N> under {src}")
    if os.path.lexists(dest) and not dest.is_dir():
        raise ArchiveError(f"{dest} is not a folder")
    with contextlib.ExitStack() as held:
        if (dest / LOCK_FILE).is_file():  # a sweep's logdir (the repository's results/ has no lock file)
            try:
                held.enter_context(sweep_lock({dest}))
            except ConfigError as e:
                raise ArchiveError(f"{e}; copy into it when the sweep has stopped") from None
        return _copy(src, dest, folders)


def _copy(src: Path, dest: Path, folders: list[Path]) -> CopyReport:
    finished = [rel for rel in folders if run_finished(src / rel)]
    report = CopyReport(unfinished=[rel for rel in folders if rel not in finished])
    todo = []
    for rel in finished:
        for name in ("metrics.json", DONE_MARKER):
            _record(src / rel / name)  # refused before anything is copied
        try:
            check_event_files(src / rel)
        except ValueError as e:
            raise _corrupt(e) from None
        there = dest / rel
        if not os.path.lexists(there):
            todo.append(rel)
        elif there.is_dir() and run_finished(there):
            if not _same_run(there, src / rel):
                raise ArchiveError(f"{there} holds another finished run than {src / rel} (its metrics.json differs)")
            report.already.append(rel)
        elif there.is_dir() and not there.is_symlink():
            raise ArchiveError(f"{there} holds an unfinished run; let it finish or remove it, then copy again")
        else:
            raise ArchiveError(f"{there} is in the way (not a run folder); remove it, then copy again")
    for parent in {(dest / rel).parent for rel in todo if (dest / rel).parent.is_dir()}:
        for stale in parent.iterdir():
            if _TEMPORARY.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
    for rel in todo:
        there = dest / rel
        there.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{there.name}.", dir=there.parent))
        try:  # copytree gives the folder its source's mode at the end (mkdtemp's 0o700 is the temporary's only)
            shutil.copytree(src / rel, tmp, ignore=shutil.ignore_patterns(*LEFT_OUT), dirs_exist_ok=True)
            tmp.rename(there)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        report.copied.append(rel)
    return report
