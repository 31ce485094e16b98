"""An agent run's folder: where it lives, what a new run writes there first, its logger, and whether it finished.

Contents:
    condition_label -- the condition's folder name ('none', 'copy', 'fsae-round', 'fsae-round-max-fb2-lin', ...).
    env_folder      -- an env id's folder name, its id without namespace.
    run_dir_for     -- ``logdir/<env>/<condition label>/seed<N>``.
    start_run       -- a new run's files: ``config.yaml`` (resolved), ``command.txt``, ``fsae.json`` (which frozen
                       model), ``run_info.json`` (code version, machine, the checkpoint's SHA-256).
    open_logger     -- SB3's logger writing CSV and TensorBoard events straight into the folder (no ``PPO_1/``).
    write_hparams   -- the config as a TensorBoard text table.
    DONE_MARKER, run_finished -- a sweep's marker file, and the test of a finished run that sweeps, ``compare`` and
                       the shift evaluation share.
    run_folders     -- the run folders under a logdir (``<env>/<condition>/seed<N>``, none below a hidden folder).
    seed_of         -- the seed of a ``seed<N>`` folder name.
    read_record     -- one of a run's JSON records as a dict ({} when missing; a corrupt one: {}, or an error).
    recorded_sha256 -- the SHA-256 of the frozen model a run read, as its ``fsae.json`` records it.
    check_event_files -- every TensorBoard event file of a run runs whole to its end (else an error naming it).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat, configure

from fsae.config import to_dict
from fsae.provenance import write_run_info
from rl import PERCEPTIONS
from rl.config import AgentConfig

if TYPE_CHECKING:
    from rl.common_sense import Regenerator
    from rl.perception import Encoder

DONE_MARKER = "done.json"
"""Written by a sweep beside ``metrics.json`` when a run ends; either one marks the run finished."""
_RUN_FILES = {  # what a run writes into its folder (and a sweep's marker of it), beside its event files
    "config.yaml", "command.txt", "fsae.json", "run_info.json", "progress.csv", "metrics.json", "best_model.zip",
    "final_model.zip", "eval", "checkpoints", DONE_MARKER,
}  # fmt: skip


def condition_label(cfg: AgentConfig) -> str:
    """Folder name of the condition: 'none', 'copy', 'autoencoder', 'fsae-<variant>' with <variant> the checkpoint's
    file name without 'fsae_' (``fsae_round.pt`` -> 'fsae-round'), 'code', 'code-round', 'features'; '-<union>',
    '-fb<T>', '-lin' appended when not the defaults, so that variants and settings never share (and overwrite) a folder.
    ``run_name`` replaces it all."""
    if cfg.run_name:
        return cfg.run_name
    label = cfg.condition
    if cfg.condition == "fsae" and cfg.fsae_checkpoint:
        label = f"fsae-{Path(cfg.fsae_checkpoint).stem.removeprefix('fsae_')}"
    if cfg.code_round:
        label += "-round"
    if cfg.condition not in ("none", "code", "features") and cfg.union != "stack":
        label += f"-{cfg.union}"
    if cfg.condition in ("fsae", "autoencoder") and cfg.feedback_steps:
        label += f"-fb{cfg.feedback_steps}"
    if cfg.lr_schedule != "constant":
        label += "-lin"
    return label


def env_folder(env_id: str) -> str:
    """The folder of an env's runs: its id without namespace (``ALE/Breakout-v5`` -> ``Breakout-v5``), the name
    ``compare.py`` lists and takes (the full id too, through this)."""
    return env_id.split("/")[-1]


def run_dir_for(cfg: AgentConfig) -> Path:
    """``logdir/<env>/<condition label>/seed<N>``, with <env> the id without namespace, e.g. DigitBandit-v0."""
    return Path(cfg.logdir) / env_folder(cfg.env_id) / condition_label(cfg) / f"seed{cfg.seed}"


def start_run(
    run_dir: Path,
    cfg: AgentConfig,
    regen: Regenerator | Encoder | None,
    checkpoint: str | None,
    command: str | None,
    observation: str | None = None,
) -> None:
    """Create ``run_dir`` and write what a new run records before it trains. What an earlier run left there (a run
    started again with ``overwrite``) is removed first, so that no old record, checkpoint or curve is read as the new
    run's; other files (a sweep's ``train.log``) stay. ``observation``: how the env's observations were read (their
    layout), recorded in ``fsae.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in run_dir.iterdir():
        if path.name not in _RUN_FILES and not path.name.startswith("events.out.tfevents."):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    (run_dir / "command.txt").write_text((command or "(called from Python)") + "\n")
    regen_info = regen.describe() if regen else {"condition": "none", "checkpoint": None, "sha256": None}
    regen_info["union"] = cfg.union if regen and cfg.condition not in PERCEPTIONS else None  # an image's union
    regen_info["observation"] = observation
    (run_dir / "fsae.json").write_text(json.dumps(regen_info, indent=2) + "\n")
    write_run_info(run_dir, depends_on={cfg.condition: checkpoint} if checkpoint else {})


def open_logger(run_dir: Path, verbose: int = 0) -> Logger:
    """SB3's logger with the CSV (``progress.csv``, truncated when opened) and TensorBoard outputs in ``run_dir``
    itself (SB3's ``tensorboard_log`` would add ``PPO_1/``); stdout too when ``verbose``."""
    return configure(str(run_dir), (["stdout"] if verbose else []) + ["csv", "tensorboard"])


def write_hparams(logger: Logger, cfg: AgentConfig) -> None:
    """The resolved config (and hyperparameters) as a key/value table in TensorBoard's text tab."""
    rows = [("key", "value"), ("---", "---")]
    flat = {**{k: v for k, v in to_dict(cfg).items() if not isinstance(v, dict)}, **cfg.hyperparams}
    rows += [(k, str(v)) for k, v in sorted(flat.items())]
    for fmt in logger.output_formats:
        if isinstance(fmt, TensorBoardOutputFormat):
            fmt.writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in rows), 0)
            fmt.writer.flush()


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def run_finished(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a readable ``done.json`` (the sweep's marker) or ``metrics.json`` (train_agent's
    last file). A half-written file does not count."""
    run_dir = Path(run_dir)
    return _readable_json(run_dir / DONE_MARKER) or _readable_json(run_dir / "metrics.json")


_SEED = re.compile(r"seed-?\d+")


def run_folders(logdir: str | Path) -> list[Path]:
    """Folders ``<env>/<condition>/seed<N>`` under ``logdir``, relative to it, sorted; none below a hidden folder
    (a Ray sweep keeps Tune's state, whose checkpoints copy run folders, in ``<logdir>/.ray_tune``)."""
    root = Path(logdir)
    out = []
    for path in root.glob("*/*/seed*"):
        rel = path.relative_to(root)
        if path.is_dir() and _SEED.fullmatch(rel.parts[-1]) and not any(p.startswith(".") for p in rel.parts):
            out.append(rel)
    return sorted(out)


def seed_of(folder: str) -> int:
    """'seed3' -> 3, 'seed-1' -> -1 (``run_folders`` matches seed-?N)."""
    return int(folder.removeprefix("seed"))


def read_record(path: str | Path, strict: bool = False) -> dict:
    """A run's JSON record (``metrics.json``, ``done.json``, ``fsae.json``) as a dict; {} when it is missing, and
    when it is unreadable or not a JSON object, unless ``strict``: then ``ValueError`` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict):
        return data
    if strict and path.is_file():
        raise ValueError(f"{path} is unreadable or corrupt")
    return {}


def recorded_sha256(run_dir: str | Path) -> str | None:
    """The SHA-256 of the checkpoint the run's condition read, from its ``fsae.json``; None when it read none (none,
    copy) or the record is missing or unreadable."""
    sha = read_record(Path(run_dir) / "fsae.json").get("sha256")
    return sha if isinstance(sha, str) else None


def check_event_files(run_dir: str | Path) -> None:
    """``ValueError`` naming the first TensorBoard event file in ``run_dir`` whose TFRecords (8-byte length, 4-byte
    CRC, data, 4-byte CRC) do not run whole to the end of the file: TensorBoard's reader stops quietly at a record cut
    short (a partial copy, a full disk) and the run would look as if it had logged less."""
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        size, pos = path.stat().st_size, 0
        with path.open("rb") as f:
            while pos + 12 <= size:
                f.seek(pos)
                pos += 12 + struct.unpack("<Q", f.read(8))[0] + 4
        if pos != size:
            raise ValueError(f"{path} is cut short or corrupt: its records end at byte {pos}, the file at byte {size}")
