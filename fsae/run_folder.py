"""Run folders: which folder a run may write to, what it writes before training, and what a failed run leaves.

Contents:
    check_folder     -- refuse a folder that holds a run (unless resuming it), or resuming one that holds none.
    check_no_file_in_way -- refuse an output folder that is, or lies below, an existing file.
    start_run        -- write config.yaml (and options.yaml) and command.txt, pick the device and torch's threads,
                        seed, open TensorBoard; print the device and threads. Shared by ``pretrain`` and the
                        experiments of ``fsae.characteristics``.
    removed_on_failure -- a context: a run that fails before it saved anything to resume from leaves no folder behind
                        (TensorBoard would list it); a folder that held anything before the run is never touched.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError, to_dict
from fsae.memory import retain_freed_memory
from fsae.pretrain_config import PretrainConfig
from fsae.resume import STATE_FILE
from fsae.runtime import resolve_device, seed_everything
from fsae.threads import set_threads


def check_no_file_in_way(path: str | Path, option: str = "--out") -> None:
    """``ConfigError`` when ``path``, or the nearest existing folder above it, is a file: making the folder would
    fail half-way with an OS error."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{option} {path}: {p} is a file, not a folder; choose another")
            return


def check_folder(run_dir: Path, resume: bool) -> None:
    """A new run needs a folder without a run in it; ``resume`` needs one with an unfinished run (``CheckpointError``,
    one line, otherwise). The state file itself is checked by ``fsae.resume.TrainingState``."""
    check_no_file_in_way(run_dir)
    if resume and (run_dir / "metrics.json").is_file():
        raise CheckpointError(f"{run_dir} holds a finished run (metrics.json); nothing to resume")
    held = [f for f in ("metrics.json", STATE_FILE) if (run_dir / f).is_file()]
    if held and not resume:
        raise CheckpointError(
            f"{run_dir} already holds a run ({', '.join(held)}); add --resume to continue an unfinished one, "
            "or choose another --out"
        )


def start_run(
    cfg: PretrainConfig, run_dir: Path, command: str | None, options: dict[str, Any] | None = None
) -> tuple[torch.device, torch.Generator, SummaryWriter]:
    """Open a run folder: write config.yaml (and options.yaml), command.txt; pick the device and the threads
    (``fsae.threads``); seed; open TensorBoard with the hyperparameters as text. Returns (device, generator, writer)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"config": to_dict(cfg)} | ({"options": options} if options is not None else {})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved["config"], sort_keys=False))
    if options is not None:
        (run_dir / "options.yaml").write_text(yaml.safe_dump(options, sort_keys=False))
    (run_dir / "command.txt").write_text((command or " ".join(sys.argv)) + "\n")
    device = resolve_device(cfg.device)
    threads = set_threads("pretrain", cfg.torch_threads)
    retain_freed_memory()  # no page faults for every batch's activations (fsae.memory)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{threads} torch thread(s)"
    print(f"device: {device} ({name})", flush=True)
    gen = seed_everything(cfg.seed, cfg.deterministic)
    writer = SummaryWriter(str(run_dir))
    text = yaml.safe_dump(resolved if options is not None else resolved["config"], sort_keys=False)
    writer.add_text("hyperparameters", "```yaml\n" + text + "\n```")
    return device, gen, writer


@contextlib.contextmanager
def removed_on_failure(run_dir: Path) -> Iterator[None]:
    """Run the body; if it raises (missing data, a bad config found late, Ctrl-C) before anything resumable was saved
    (``train_state.pt``), remove what it wrote: the folder, if the run created it, or its contents, if it was empty.
    A folder that held anything before is left as it is, and so is one with a state that ``--resume`` continues.
    Close the run's files (TensorBoard) inside the body."""
    existed = run_dir.exists()
    fresh = not existed or (run_dir.is_dir() and not any(run_dir.iterdir()))
    try:
        yield
    except BaseException:
        if fresh and run_dir.is_dir() and not (run_dir / STATE_FILE).exists():
            if existed:
                for child in run_dir.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
