#!/usr/bin/env bash
# The GPU checks of the performance issue in one call, each under its own time limit (about 9 minutes in all), for a
# session that is lent a GPU machine for a short while. Run from the repository root with the project installed:
#
#   bash benchmarks/gpu_checks.sh OUT_DIR
#
# 1. benchmarks/run.py --quick --device cuda: pretraining and inference throughput (float32 and bf16 autocast, batch up
#    to 4096, FLOP/s against the GPU's peak), env steps/s, wrapper ratios, PPO raw vs augmented -> OUT_DIR/bench_gpu.json
# 2. the default pretraining run (configs/pretrain/mnist.yaml, the paper's architecture) on the GPU, timed
#    -> OUT_DIR/pretrain_gpu/metrics.json (checkpoints removed to keep the output small)
# Each step prints its exit status; a step that runs out of time does not stop the next.
set -u
OUT=${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'cpus', __import__('os').cpu_count())"
date -u

timeout 300 python benchmarks/run.py --quick --device cuda --out "$OUT/bench_gpu.json"
echo "benchmarks/run.py rc=$?"

start=$(date +%s)
timeout 240 python scripts/pretrain.py --device cuda --out "$OUT/pretrain_gpu" > "$OUT/pretrain_gpu.log" 2>&1
echo "scripts/pretrain.py rc=$? wall=$(( $(date +%s) - start )) s"
tr '\r' '\n' < "$OUT/pretrain_gpu.log" | grep -v 'it/s' | grep -v '^ *$' | tail -45
rm -f "$OUT"/pretrain_gpu/*.pt "$OUT"/pretrain_gpu/train_state.pt
date -u
