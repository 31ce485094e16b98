"""Train an SB3 agent on a Gymnasium image environment, with or without the FSAE's "common sense" (paper Fig. 4).

CFG=configs/agent/digit_bandit.yaml; CKPT=runs/pretrain/fast/fsae_round.pt
python scripts/train_agent.py --config $CFG                                   # raw observations ('none')
python scripts/train_agent.py --config $CFG --augment --fsae $CKPT            # the FSAE's common sense ('fsae')
python scripts/train_agent.py --config $CFG --augment copy --seed 1           # raw + raw ('copy')
python scripts/train_agent.py --config $CFG --augment autoencoder --fsae $CKPT   # raw + conventional AE
python scripts/train_agent.py --config $CFG --augment code --fsae $CKPT       # raw + the classifier's code (Dict obs)
python scripts/train_agent.py --config $CFG --augment features --fsae $CKPT   # raw + its last hidden layer
tensorboard --logdir runs/agents                  # runs overlay as <env>/<condition>/seed<N>

--augment alone means 'fsae'; without it the config's condition holds ('none', raw observations, in every shipped
config). 'copy' stacks the raw image with itself (controls for the extra channels); 'autoencoder' uses autoencoder.pt
beside the --fsae checkpoint (or the config's autoencoder_checkpoint). Any config key can be set with --set key=value
(e.g. hyperparams.learning_rate=1e-3, union=max, feedback_steps=2, torch_threads=1).

Quick path from nothing to a first augmented run on a CPU (measured on a busy 2-core machine: pretraining 4.5
minutes, then 1 minute of agent training, which reaches a test reward of about 12 of 16):
    export FSAE_MNIST_DIR=/path/to/mnist        # or let fsae.data download MNIST
    python scripts/pretrain.py --config configs/pretrain/mnist_fast.yaml --out runs/pretrain/fast \\
        --set data.train_size=10000 train.abstract_epochs=2 train.concrete_epochs=2 'feedback_steps=[0]'
    python scripts/train_agent.py --config configs/agent/digit_bandit.yaml --augment \\
        --fsae runs/pretrain/fast/fsae_round.pt --total-steps 20000
After a crash or kill, the same command with --resume continues the run from the newest agent_<step>_steps.zip in its
checkpoints/ folder (written every checkpoint_freq steps), keeping its curves up to that step.
Other environments: a config names the packages that register their ids and the wrappers that make their images
(env_packages, env_wrappers; configs/agent/minigrid_doorkey5.yaml, configs/agent/pong.yaml, with pip install -e
".[minigrid]" or ".[atari]"); any image layout is read as SB3 reads it, and a one-frame FSAE regenerates each frame of
a frame stack:
  python scripts/train_agent.py --config configs/agent/minigrid_doorkey5.yaml --total-steps 2048
  python scripts/train_agent.py --config configs/agent/pong.yaml --augment copy --total-steps 512
The two-digit environments (28 x 56) need an FSAE with input_shape [1, 28, 56], pretrained on task data collected with
scripts/collect.py (data.source: <file>.npz); the 28 x 28 MNIST checkpoints are refused there.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fsae.checkpoint import CheckpointError
from fsae.config import ConfigError, apply_overrides, from_dict, load_yaml
from fsae.console import error, one_line_warnings, print_metrics
from fsae.data import DatasetError
from rl import CONDITIONS
from rl.agent import train_agent
from rl.config import AgentConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "agent" / "digit_bandit.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="agent YAML config (default: %(default)s)")
    p.add_argument(
        "--augment",
        nargs="?",
        const="fsae",
        default=None,
        choices=list(CONDITIONS),
        help="condition: the flag alone means fsae; without the flag, the config's (none: raw observations only); "
        "code / features hand over the FSAE's code / last hidden layer (--set code_round=true: the rounded code)",
    )
    p.add_argument("--fsae", default=None, metavar="CHECKPOINT", help="FSAE checkpoint (fsae_<variant>.pt)")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--total-steps", type=int, default=None, help="overrides the config's total_steps")
    p.add_argument("--n-envs", type=int, default=None, help="overrides the config's n_envs")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.add_argument("--logdir", default=None, help="root of the run folders (default: the config's, runs/agents)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. union=max")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run of these same arguments from the newest checkpoint in its checkpoints/",
    )
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> AgentConfig:
    """The run's config: the YAML, then the flags, then ``--set`` (last, it wins); raises ``ConfigError``."""
    flags = {
        "condition": args.augment,
        "fsae_checkpoint": args.fsae,
        "seed": args.seed,
        "total_steps": args.total_steps,
        "n_envs": args.n_envs,
        "device": args.device,
        "logdir": args.logdir,
    }
    d = load_yaml(args.config)
    d.update({k: v for k, v in flags.items() if v is not None})  # typed values, not re-parsed as YAML
    return from_dict(AgentConfig, apply_overrides(d, args.set))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])])
    try:
        cfg = build_config(args)
        if args.fsae and cfg.condition in ("none", "copy"):
            hint = "add --augment (alone: fsae) or drop --fsae"
            takes = "--augment fsae, autoencoder, code or features"
            return error(f"--fsae is used only by {takes}, not '{cfg.condition}'; {hint}", 2)
        metrics = train_agent(cfg, command=command, resume=args.resume)
    except (ConfigError, CheckpointError) as e:
        return error(e, 2)
    except DatasetError as e:  # MNIST missing or corrupt: the environments draw their digits from it
        return error(e, 1)
    print_metrics(metrics)
    return 0


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
