"""Carrying finished runs between machines: their records, without the agents' weights.

A grid that takes more CPU-hours than one machine lives (the MiniGrid verdict: about 40 on the 2-core VM, three hours
a session, every session on a fresh machine) is finished piece by piece: each session copies the runs it finished
into the repository (``results/``), and the next one copies them back into the sweep's logdir, where the sweep skips
them as finished (``rl.sweep.split_finished``, which still refuses them if the planned settings or the frozen
checkpoint's SHA-256 differ). The same function does both directions.

Contents:
    LEFT_OUT        -- what a copy leaves out: SB3's model zips (final, best, checkpoints), megabytes a run.
    finished_runs   -- the finished run folders under a logdir (``<env>/<condition>/seed<N>``).
    copy_finished   -- copy them into another root, each folder written whole or not at all (a temporary folder
                       renamed into place); a run already there is skipped when its ``done.json`` is the same, and
                       refused when it is not, or when an unfinished run sits in its place (nothing is overwritten).

What is kept is everything ``scripts/compare.py`` and ``scripts/evaluate_shift.py``'s reports read except the agents
themselves: TensorBoard events, ``progress.csv``, ``eval/evaluations.npz``, ``metrics.json``, ``done.json``, the
resolved ``config.yaml``, ``command.txt``, ``fsae.json`` and ``run_info.json`` (commit, machine, checkpoint SHA-256).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rl.run_folder import DONE_MARKER, run_finished

LEFT_OUT = ("*.zip", "checkpoints")
"""``shutil.ignore_patterns`` of a copy: the agents' weights (``final_model.zip``, ``best_model.zip``,
``checkpoints/agent_<step>_steps.zip``)."""

_SEED = re.compile(r"seed-?\d+")


class ArchiveError(ValueError):
    """A copy that would overwrite a different run, or a root that is not a folder."""


@dataclass
class CopyReport:
    copied: list[Path] = field(default_factory=list)
    """Run folders written, relative to the roots."""
    already: list[Path] = field(default_factory=list)
    """Runs the destination held already, with the same ``done.json``."""
    unfinished: list[Path] = field(default_factory=list)
    """Run folders of the source left behind because they did not finish."""


def _run_folders(root: Path) -> list[Path]:
    """Folders ``<env>/<condition>/seed<N>`` under ``root``, relative to it, none below a hidden folder."""
    out = []
    for path in root.glob("*/*/seed*"):
        rel = path.relative_to(root)
        if path.is_dir() and _SEED.fullmatch(rel.parts[-1]) and not any(p.startswith(".") for p in rel.parts):
            out.append(rel)
    return sorted(out)


def finished_runs(root: str | Path) -> list[Path]:
    """The finished run folders under ``root`` (``rl.run_folder.run_finished``), relative to it."""
    root = Path(root)
    return [rel for rel in _run_folders(root) if run_finished(root / rel)]


def _marker(run_dir: Path) -> dict | None:
    """The run's ``done.json`` (else ``metrics.json``), as read; None when neither is readable."""
    for name in (DONE_MARKER, "metrics.json"):
        try:
            return json.loads((run_dir / name).read_text())
        except (OSError, ValueError):
            continue
    return None


def copy_finished(src: str | Path, dest: str | Path) -> CopyReport:
    """Copy every finished run under ``src`` into the same place under ``dest``, without ``LEFT_OUT``.

    Each refusal is checked before anything is copied, so a refused call writes nothing: a finished run in ``dest``
    whose ``done.json`` differs from the source's (another run of the same seed), or an unfinished one in its place
    (a run in progress: let it finish, or remove it by hand).
    """
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise ArchiveError(f"{src} is not a folder of runs")
    report = CopyReport(unfinished=[rel for rel in _run_folders(src) if not run_finished(src / rel)])
    todo = []
    for rel in finished_runs(src):
        there = dest / rel
        if not there.exists():
            todo.append(rel)
        elif run_finished(there) and _marker(there) == _marker(src / rel):
            report.already.append(rel)
        elif run_finished(there):
            raise ArchiveError(f"{there} holds another finished run than {src / rel} (its done.json differs)")
        else:
            raise ArchiveError(f"{there} holds an unfinished run; let it finish or remove it, then copy again")
    for rel in todo:
        there = dest / rel
        there.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{there.name}.", dir=there.parent))
        try:
            shutil.copytree(src / rel, tmp, ignore=shutil.ignore_patterns(*LEFT_OUT), dirs_exist_ok=True)
            tmp.chmod(0o755)  # mkdtemp's 0o700 is for the temporary name only
            tmp.rename(there)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        report.copied.append(rel)
    return report
