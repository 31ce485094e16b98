#!/usr/bin/env bash
# The one prepared call for a lent GPU machine (16 cores, one H200), inside its device time:
# 1. issue 18's point 4, the DigitSum/DigitLock verdict grid at 200k steps (configs/sweeps/verdict_digit_200k.yaml,
#    then _plain): WORKERS runs at a time (default 16, one torch thread each, on DEVICE, default cuda) until the time
#    for it is up. The finished runs, earlier leases' included, come back as OUT/verdict_200k.tar.gz (no agent zips);
#    runs cut by the time limit are dropped (the local backend starts them from scratch next time).
# 2. pytest -m gpu (the CUDA-graph path), in what is left, at most 120 s -> OUT/pytest_gpu.log.
# Prepare here with scripts/gpu_pack.sh and carry .gpu and .whl; the grid's log is OUT/grid.log.
#
#   bash scripts/gpu_lease.sh OUT [SECONDS]       # SECONDS: the whole call (default 540)
#   DEVICE=cpu WORKERS=2 GRID_SET="total_steps=2048 eval_freq=1024" LOGDIR=/tmp/g bash scripts/gpu_lease.sh /tmp/o 120
set -u
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash scripts/gpu_lease.sh OUT [SECONDS]}
BUDGET=${2:-540}
WORKERS=${WORKERS:-16}
DEVICE=${DEVICE:-cuda}
LOGDIR=${LOGDIR:-runs/sweeps/verdict_200k}
PY=${PYTHON:-python3}
begin=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - begin) )); }
mkdir -p "$OUT" "$LOGDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .whl ] && ! $PY -c "import stable_baselines3" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
[ -d .gpu/mnist ] && export FSAE_MNIST_DIR=$PWD/.gpu/mnist
if [ -d .gpu/pretrain ]; then mkdir -p runs/pretrain && cp -rn .gpu/pretrain/* runs/pretrain/; fi
[ -f .gpu/verdict_200k.tar.gz ] && tar xzf .gpu/verdict_200k.tar.gz -C "$(dirname "$LOGDIR")"
$PY -c "import torch, os; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), 'cpus', os.cpu_count())"
date -u

# 1. The grid, until 150 s before the end (120 for pytest -m gpu, 30 to pack).
for config in verdict_digit_200k verdict_digit_200k_plain; do
    cap=$(( $(left) - 150 ))
    (( cap < 30 )) && { echo "== $config: skipped ($(left) s left)" | tee -a "$OUT/grid.log"; continue; }
    echo "== $config (limit $cap s, $WORKERS workers, $DEVICE)" | tee -a "$OUT/grid.log"
    # shellcheck disable=SC2086
    timeout "$cap" $PY scripts/sweep.py --config "configs/sweeps/$config.yaml" --workers "$WORKERS" \
        --set device="$DEVICE" logdir="$LOGDIR" ${GRID_SET:-} >> "$OUT/grid.log" 2>&1
    echo "== $config: rc=$? at $(( $(date +%s) - begin )) s" | tee -a "$OUT/grid.log"
done
(cd "$(dirname "$LOGDIR")" && name=$(basename "$LOGDIR") &&
    find "$name" -name done.json -printf '%h\n' | sort > "$OUT/finished.txt" &&
    tar czf "$OUT/verdict_200k.tar.gz" --exclude='*.zip' -T "$OUT/finished.txt")
echo "finished runs: $(wc -l < "$OUT/finished.txt") of 120" | tee -a "$OUT/grid.log"

# 2. The GPU tests.
cap=$(( $(left) - 10 )); (( cap > 120 )) && cap=120
if (( cap >= 20 )); then
    timeout "$cap" $PY -m pytest -q -m gpu -p no:cacheprovider > "$OUT/pytest_gpu.log" 2>&1
    echo "== pytest -m gpu: rc=$? $(tail -1 "$OUT/pytest_gpu.log")"
else
    echo "== pytest -m gpu: skipped ($(left) s left)"
fi
date -u
