"""benchmarks/memory.py on a tiny budget: one row per checkpoint, growth computed from the rows (not its speed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import memory  # noqa: E402  (benchmarks/memory.py)


def test_rows_and_growth():
    rows = memory.measure([64, 256], n_envs=4, python_heap=True)
    assert [r["target"] for r in rows] == [0, 64, 256]
    assert [r["env_steps"] for r in rows] == [4, 64, 256]  # whole vector steps of 4 envs
    assert all(r["rss_mb"] > 0 and r["peak_rss_mb"] >= r["rss_mb"] - 1 and "python_heap_mb" in r for r in rows)
    g = memory.growth(rows, 64, 256)
    assert g["rss_growth_mb"] == rows[2]["rss_mb"] - rows[1]["rss_mb"]
    assert g["kb_per_1k_steps"] == g["rss_growth_mb"] * 1024 / ((256 - 64) / 1000)
    assert g["python_heap_growth_mb"] == rows[2]["python_heap_mb"] - rows[1]["python_heap_mb"]
