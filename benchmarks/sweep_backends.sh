#!/usr/bin/env bash
# The cost of the ray backend against the local one (docs/PERFORMANCE.md, "Sweep backends"): the 20 runs of
# configs/sweeps/backends_bench.yaml through each backend in turn, each from an empty logdir, with the wall time, the
# load before and after, and the runs' mean seconds (done.json: the whole run; metrics.json: training) and steps/s.
#   bash benchmarks/sweep_backends.sh OUT local ray local      # the order of the backends, as many as wanted
set -uo pipefail
cd "$(dirname "$0")/.."
out=$1; shift
mkdir -p "$out"
for backend in "$@"; do
  case $backend in
    local) args=(--workers 2) ;;
    ray) args=(--backend ray) ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
  n=$(find "$out" -maxdepth 1 -name "$backend*" -type d | wc -l)
  dir="$out/$backend$((n + 1))"
  echo "=== $(basename "$dir") $(date +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  t0=$(date +%s.%N)
  python scripts/sweep.py --config configs/sweeps/backends_bench.yaml "${args[@]}" --set "logdir=$dir" > "$dir.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  echo "rc $rc wall $(python -c "print(round($t1 - $t0, 1))") s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  python - "$dir" <<'PY'
import json, pathlib, statistics, sys
d = pathlib.Path(sys.argv[1])
s = [json.loads(p.read_text())["seconds"] for p in d.glob("DigitBandit-v0/*/seed*/done.json")]
m = [json.loads(p.read_text()) for p in d.glob("DigitBandit-v0/*/seed*/metrics.json")]
print(f"runs {len(s)}, per-run seconds (done.json) mean {statistics.mean(s):.1f} median {statistics.median(s):.1f}; "
      f"training seconds (metrics.json) mean {statistics.mean(x['seconds'] for x in m):.1f}; "
      f"steps/s mean {statistics.mean(x['steps_per_second'] for x in m):.0f}")
PY
done
