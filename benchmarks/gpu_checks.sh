#!/usr/bin/env bash
# The GPU checks of the performance issue in one call, for a session that is lent a GPU machine for a short while.
# Run from the repository root (the project installed, or its dependencies importable):
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [SECONDS]
#
# Steps, most wanted first, each under its own time limit and all inside SECONDS (default 540); a step that fails or
# runs out of time does not stop the next, and a step with under 20 s left is skipped:
# 1. benchmarks/run.py --quick --only inference: images/s, float32 and bf16 autocast, batch 1-4096, fraction of peak
# 2. benchmarks/run.py --quick --only ppo: PPO steps/s raw vs augmented (ratio from one run)
# 3. benchmarks/cuda_graph.py --quick: the regenerator as a CUDA graph (exactness, then the PPO ratio with it)
# 4. benchmarks/run.py --quick --only pretrain env wrapper: the rest of the table
# 5. the default pretraining run (configs/pretrain/mnist.yaml), timed -> OUT_DIR/pretrain_gpu.log + metrics.json
# On the lent machine (no package index) wheels carried in .whl/ are installed to /tmp/site, and MNIST is read from
# .gpu/mnist when that folder is there (FSAE_MNIST_DIR).
set -u
OUT=${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR [SECONDS]}
BUDGET=${2:-540}
begin=$(date +%s)  # the setup below (wheels, torch's import) counts against the budget too
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
[ -d .gpu/mnist ] && export FSAE_MNIST_DIR=$PWD/.gpu/mnist
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'cpus', __import__('os').cpu_count())"
date -u

step() {  # step NAME CAP_SECONDS COMMAND...: run COMMAND under min(CAP, what is left of BUDGET)
    local name=$1 cap=$2; shift 2
    local left=$(( BUDGET - ($(date +%s) - begin) ))
    (( left < cap )) && cap=$left
    if (( cap < 20 )); then echo "== $name: skipped ($left s left)"; return; fi
    echo "== $name (limit $cap s)"
    local t0=$(date +%s)
    timeout "$cap" "$@"
    echo "== $name: rc=$? wall=$(( $(date +%s) - t0 )) s"
}

step inference 120 $PY benchmarks/run.py --quick --device cuda --only inference --out "$OUT/bench_gpu_inference.json"
step ppo 120 $PY benchmarks/run.py --quick --device cuda --only ppo --out "$OUT/bench_gpu_ppo.json"
step cuda_graph 120 $PY benchmarks/cuda_graph.py --quick --out "$OUT/cuda_graph.json"
step rest 150 $PY benchmarks/run.py --quick --device cuda --only pretrain env wrapper --out "$OUT/bench_gpu_rest.json"
step pretrain 200 $PY scripts/pretrain.py --device cuda --out "$OUT/pretrain_gpu" > "$OUT/pretrain_gpu.log" 2>&1
tr '\r' '\n' < "$OUT/pretrain_gpu.log" 2>/dev/null | grep -v 'it/s' | grep -v '^ *$' | tail -30
find "$OUT/pretrain_gpu" -type f ! -name metrics.json -delete 2>/dev/null
date -u
