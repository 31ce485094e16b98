"""The regenerator (fast config, round, lookup) on a batch of 8 with oneDNN convolutions (PyTorch's default) and
without (``torch.backends.mkldnn.flags(enabled=False)``: PyTorch's native kernels); outputs asserted equal.

Run from the repository root: ``python docs/bench_cpu_1202b/conv_backend.py THREADS``.
"""

import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from wrapper import fast_fsae  # noqa: E402  (benchmarks/wrapper.py)

from fsae.runtime import flush_denormals  # noqa: E402
from rl.common_sense import Regenerator  # noqa: E402

flush_denormals()
torch.set_num_threads(int(sys.argv[1]))
regen = Regenerator(fast_fsae(None, "round"))
obs = np.random.default_rng(0).integers(0, 256, (8, 1, 28, 28), dtype=np.uint8)
ref = regen(obs)


def timed(n: int, onednn: bool) -> tuple[float, np.ndarray]:
    with torch.backends.mkldnn.flags(enabled=onednn):
        out = regen(obs)
        t0 = time.perf_counter()
        for _ in range(n):
            regen(obs)
        return (time.perf_counter() - t0) / n * 1e6, out


res: dict[bool, list[float]] = {True: [], False: []}
for _ in range(7):
    for onednn in (True, False):
        dt, out = timed(1000, onednn)
        res[onednn].append(dt)
        assert np.array_equal(out, ref), "the outputs differ"
medians = {("mkldnn" if k else "native"): round(statistics.median(v), 1) for k, v in res.items()}
print(medians, "us per call, threads", sys.argv[1])
