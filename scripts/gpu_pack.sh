#!/usr/bin/env bash
# Here, before a lease of a GPU machine: gather what scripts/gpu_lease.sh needs there, which has no package index, no
# MNIST and no runs/ (the device tool sends the checkout; these two ignored folders travel as its `carry`):
#   .gpu/mnist/                      the four MNIST files (from FSAE_MNIST_DIR)
#   .gpu/pretrain/digit_{sum,lock}/  fsae_round.pt and fsae_plain.pt (the grid's checkpoints, 5.3 MB each)
#   .gpu/verdict_200k.tar.gz         the grid's runs finished in earlier leases, without agent zips (they are skipped)
#   .whl/                            gymnasium, farama-notifications and stable-baselines3 wheels for Python 3.12
# About 33 MB, with the checkout's 27 MB about 60 MB of the tool's 64 MiB (printed at the end); at about 60 KB a
# carried run, a later lease that carries some 80 runs or more must leave the plain grid's runs behind.
#
#   bash scripts/gpu_pack.sh                 # then: device run, carry [".gpu", ".whl"], bash scripts/gpu_lease.sh "$OUT"
#   tar xzf <files_at>/verdict_200k.tar.gz -C runs/sweeps   # after the lease: its finished runs, for the next pack
set -euo pipefail
cd "$(dirname "$0")/.."
: "${FSAE_MNIST_DIR:?set FSAE_MNIST_DIR to the folder holding the four MNIST files}"
rm -rf .whl .gpu/mnist  # one version of each wheel (two stop the install there); fresh copies
mkdir -p .gpu/mnist .whl
cp -f "$FSAE_MNIST_DIR"/*-ubyte.gz .gpu/mnist/
for env in digit_sum digit_lock; do
    mkdir -p ".gpu/pretrain/$env"
    for variant in round plain; do
        ckpt="runs/pretrain/$env/fsae_$variant.pt"
        [ -f "$ckpt" ] || { echo "error: $ckpt is missing: make it with the commands in configs/sweeps/verdict_digit_60k.yaml's header" >&2; exit 2; }
        cp -f "$ckpt" ".gpu/pretrain/$env/"
    done
done
rm -f .gpu/verdict_200k.tar.gz
if [ -d runs/sweeps/verdict_200k ]; then
    (cd runs/sweeps && find verdict_200k -name done.json -printf '%h\n' | sort > /tmp/fsae_gpu_done.txt &&
        tar czf ../../.gpu/verdict_200k.tar.gz --exclude='*.zip' -T /tmp/fsae_gpu_done.txt)
    echo "carried: $(wc -l < /tmp/fsae_gpu_done.txt) finished run(s) of runs/sweeps/verdict_200k"
fi
for config in verdict_digit_200k verdict_digit_200k_plain; do  # a carried run of other settings would stop the grid
    plan=$(python3 scripts/sweep.py --config "configs/sweeps/$config.yaml" --dry-run --set device=cuda)
    if grep '^CHANGED' <<< "$plan"; then
        echo "error: runs/sweeps/verdict_200k holds runs of other settings than $config (above); remove them" >&2
        exit 2
    fi
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl \
    gymnasium==1.4.0 farama-notifications==0.0.6 stable-baselines3==2.9.2
du -sh .gpu .whl
echo "to carry: $(( ($(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) + $(du -sb .gpu .whl | awk '{s+=$1} END {print s}')) >> 20 )) MiB of the 64 MiB"
