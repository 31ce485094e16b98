"""A ``torch.profiler`` table of the regenerator (fast config, round, lookup) on a batch of 8, one thread, 500 calls
after 200 untimed.

Run from the repository root: ``python docs/bench_cpu_1202b/profile_regen.py``.
"""

import sys

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, "benchmarks")
from wrapper import fast_fsae  # noqa: E402  (benchmarks/wrapper.py)

from fsae.runtime import flush_denormals  # noqa: E402
from rl.common_sense import Regenerator  # noqa: E402

flush_denormals()
torch.set_num_threads(1)
regen = Regenerator(fast_fsae(None, "round"))
obs = np.random.default_rng(0).integers(0, 256, (8, 1, 28, 28), dtype=np.uint8)
for _ in range(200):
    regen(obs)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(500):
        regen(obs)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
