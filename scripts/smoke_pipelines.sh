#!/usr/bin/env bash
# The README's two pipelines on any Gymnasium image environment ("Any Gymnasium image environment: MiniGrid and
# Atari"), each in miniature: the same scripts and configs, with small budgets. CI runs it after the test suite
# (.ci/run); it needs the extras: pip install -e ".[dev,atari,minigrid,ray]".
#
#   bash scripts/smoke_pipelines.sh [OUT]      # OUT: a scratch folder (default: a new temp folder)
#
# MiniGrid-DoorKey-5x5-v0: collect 512 steps with concept labels -> pretrain one epoch per phase, the round variant ->
# train_agent 256 steps with --augment and raw -> compare. ALE/Pong-v5: collect 256 frames with RAM labels -> pretrain
# a linear head one epoch per phase -> train_agent 256 steps with --augment. The evaluation episodes are cut at 100
# environment steps (gym.make's max_episode_steps), or a Pong episode would outlast the rest. Each step fails the
# script (set -e); the last line names the folder.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-$(mktemp -d)}"
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PRE=(--set "train.abstract_epochs=1" "train.concrete_epochs=1" "variants=[{name: round, round: true}]"
     "feedback_steps=[0]" "baseline_ae=false" "data.test_fraction=0.25" "device=cpu")
AGENT=(--total-steps 256 --n-envs 2 --device cpu --logdir "$out/agents")
AGENT_SET=(torch_threads=1 progress_bar=false eval_freq=0 eval_episodes=1 checkpoint_freq=0
           eval_env_kwargs.max_episode_steps=100)

step() { echo "== $*"; }

step "MiniGrid: collect, pretrain, train_agent --augment and raw, compare"
python scripts/collect.py --config configs/collect/minigrid_doorkey5.yaml --steps 512 \
    --out "$out/minigrid_doorkey5.npz" --no-progress --overwrite
python scripts/pretrain.py --config configs/pretrain/minigrid_doorkey5.yaml --out "$out/pretrain/minigrid_doorkey5" \
    "${PRE[@]}" "data.source=$out/minigrid_doorkey5.npz"
python scripts/train_agent.py --config configs/agent/minigrid_doorkey5.yaml --augment \
    --fsae "$out/pretrain/minigrid_doorkey5/fsae_round.pt" "${AGENT[@]}" --set "${AGENT_SET[@]}"
python scripts/train_agent.py --config configs/agent/minigrid_doorkey5.yaml "${AGENT[@]}" --set "${AGENT_SET[@]}"
python scripts/compare.py "$out/agents" --out "$out/compare" --n-resamples 100

step "Pong: collect with RAM labels, pretrain a linear head, train_agent --augment"
python scripts/collect.py --config configs/collect/pong_ram.yaml --steps 256 --out "$out/pong_ram.npz" \
    --no-progress --overwrite
python scripts/pretrain.py --config configs/pretrain/pong_ram.yaml --out "$out/pretrain/pong_ram" \
    "${PRE[@]}" "data.source=$out/pong_ram.npz"
python scripts/train_agent.py --config configs/agent/pong.yaml --augment --fsae "$out/pretrain/pong_ram/fsae_round.pt" \
    "${AGENT[@]}" --set "${AGENT_SET[@]}" hyperparams.batch_size=64

echo "pipelines passed: $out"
