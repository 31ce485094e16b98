#!/usr/bin/env bash
# The one prepared call for a lent GPU machine (16 cores, one H200), inside its device time:
# 1. issue 18's point 4, the DigitSum/DigitLock verdict grid at 200k steps (configs/sweeps/verdict_digit_200k.yaml,
#    then _plain, into runs/sweeps/verdict_200k): WORKERS runs at a time (default 8, one torch thread each, on DEVICE,
#    default cuda) until its time is up. After each config the finished runs, earlier leases' included, are packed
#    into OUT/verdict_200k.tar.gz (no agent zips, about 60 KB a run); runs cut by the time limit are dropped (the
#    grid writes no agent checkpoints, and eight of 7 MB would not fit the 16 MiB a returned file may hold), so a run
#    must fit in one lease: 200k steps in the about 370 s left to the grid of a 540 s call, 540 steps/s, while
#    WORKERS runs share the GPU. One PPO process ran 3,134 steps/s alone on an H200 (DigitBandit,
#    docs/bench_gpu/h200_ppo.json); how that holds with 8 sharing is what OUT/grid.log's per-run seconds will say,
#    and the next lease sets WORKERS by them (fewer runs at a time finish more when the GPU is the limit); the runs the
#    time limit cut come back as OUT/unfinished_progress.tar.gz (their progress.csv: steps/s even when none finished).
# 2. pytest -m gpu (the CUDA-graph path), in what is left, at most 120 s -> OUT/pytest_gpu.log.
# Prepare here with scripts/gpu_pack.sh and carry .gpu and .whl; give SECONDS at least 30 s under the call's limit.
#
#   bash scripts/gpu_lease.sh OUT [SECONDS]       # SECONDS: the whole call (default 540)
#   # a rehearsal on a CPU, in a scratch clone with .gpu and .whl copied in (it writes runs/ there):
#   DEVICE=cpu WORKERS=2 GRID_SET="total_steps=1024 seeds=[0]" bash scripts/gpu_lease.sh /tmp/lease 240
set -u
OUT=$(realpath -m -- "${1:?usage: bash scripts/gpu_lease.sh OUT [SECONDS]}") || exit 2
cd "$(dirname "$0")/.."
BUDGET=${2:-540}
WORKERS=${WORKERS:-8}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
begin=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - begin) )); }
pack() {  # the finished runs (done.json) of runs/sweeps/verdict_200k -> OUT/verdict_200k.tar.gz
    (cd runs/sweeps && find verdict_200k -name done.json -printf '%h\n' | sort > "$OUT/finished.txt" &&
        tar czf "$OUT/verdict_200k.tar.gz.part" --exclude='*.zip' -T "$OUT/finished.txt" &&
        mv "$OUT/verdict_200k.tar.gz.part" "$OUT/verdict_200k.tar.gz")
    echo "finished runs: $(wc -l < "$OUT/finished.txt") of 120" | tee -a "$OUT/grid.log"
    # The runs the time limit cut: their progress.csv (time/fps, total_timesteps) says how fast runs went when shared,
    # even when none finished (the next lease sets WORKERS by it).
    (cd runs/sweeps && find verdict_200k -name progress.csv -printf '%h\n' | while read -r d; do
        [ -f "$d/done.json" ] || echo "$d/progress.csv"; done | tar czf "$OUT/unfinished_progress.tar.gz" -T -)
}
mkdir -p "$OUT" runs/sweeps/verdict_200k
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .whl ] && ! $PY -c "import stable_baselines3" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
[ -d .gpu/mnist ] && export FSAE_MNIST_DIR=$PWD/.gpu/mnist
if [ -d .gpu/pretrain ]; then mkdir -p runs/pretrain && cp -r .gpu/pretrain/. runs/pretrain/; fi
[ -f .gpu/verdict_200k.tar.gz ] && tar xzf .gpu/verdict_200k.tar.gz -C runs/sweeps
$PY -c "import torch, os; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), 'cpus', os.cpu_count())"
date -u

# 1. The grid, until 150 s before the end (120 for pytest -m gpu, 30 to pack); packed after each config.
for config in verdict_digit_200k verdict_digit_200k_plain; do
    cap=$(( $(left) - 150 ))
    (( cap < 30 )) && { echo "== $config: skipped ($(left) s left)" | tee -a "$OUT/grid.log"; continue; }
    echo "== $config (limit $cap s, $WORKERS workers, $DEVICE)" | tee -a "$OUT/grid.log"
    # shellcheck disable=SC2086  # GRID_SET: more KEY=VALUE overrides of the sweep, split on spaces
    timeout -k 20 "$cap" $PY scripts/sweep.py --config "configs/sweeps/$config.yaml" --workers "$WORKERS" \
        --set device="$DEVICE" ${GRID_SET:-} >> "$OUT/grid.log" 2>&1
    echo "== $config: rc=$? at $(( $(date +%s) - begin )) s" | tee -a "$OUT/grid.log"
    pack
done

# 2. The GPU tests.
cap=$(( $(left) - 10 )); (( cap > 120 )) && cap=120
if (( cap >= 20 )); then
    timeout -k 10 "$cap" $PY -m pytest -q -m gpu -p no:cacheprovider > "$OUT/pytest_gpu.log" 2>&1
    echo "== pytest -m gpu: rc=$? $(tail -1 "$OUT/pytest_gpu.log")"
else
    echo "== pytest -m gpu: skipped ($(left) s left)"
fi
date -u
