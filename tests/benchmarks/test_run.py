"""The benchmark command works end to end (its smallest case; speed is measured by benchmarks/run.py, not tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_smoke_writes_every_section(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert {"machine", "pretrain", "inference", "env", "wrapper", "ppo"} <= set(r)
    assert r["pretrain"]["mnist_fast"]["abstract"]["images_per_s"] > 0
    assert [row["batch"] for row in r["inference"]["mnist_fast"]["rows"]] == [1, 8]
    assert set(r["env"]) == {"fsae/DigitBandit-v0", "fsae/DigitSum-v0", "fsae/DigitLock-v0"}
    assert r["wrapper"]["float32"]["n2/batched_over_per_env"] > 0
    cost = r["wrapper"]["cost_per_vector_step"]
    assert cost["n_envs"] == 2 and cost["policy_fwd_bwd_ms"] > 0
    assert cost["wrapper_over_policy"] == cost["wrapper_ms"] / cost["policy_fwd_bwd_ms"]
    assert r["ppo"]["ppo/augmented_over_raw"] > 0
    assert "inference" in proc.stdout and "ppo" in proc.stdout
