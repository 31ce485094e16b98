"""benchmarks/memory.py: its rows on a tiny budget, its units against the kernel's own report, and its growth figures
against values worked out by hand (not its speed)."""

from pathlib import Path

import memory  # benchmarks/memory.py
import pytest


def status_mb(field: str) -> float:
    """``/proc/self/status``'s ``field`` (VmRSS: current RSS, VmHWM: peak RSS; both in kB), in MiB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def test_rss_in_mib_as_the_kernel_reports_it():
    # statm counts pages and ru_maxrss KiB; /proc/self/status reports the same two quantities in kB. A unit slip (pages
    # as KiB, KiB as bytes) would be off by a factor of 4 or 1024; 2 MiB allows for allocations between the reads.
    assert memory.rss_mb() == pytest.approx(status_mb("VmRSS"), abs=2)
    assert memory.peak_rss_mb() == pytest.approx(status_mb("VmHWM"), abs=2)


def test_rows_reach_each_checkpoint_in_whole_vector_steps():
    rows = memory.measure([10, 20], n_envs=3, python_heap=True)
    # Row 0 follows the first vector step: 3 env steps. 10 is reached at 3 -> 6 -> 9 -> 12, 20 at 12 -> 15 -> 18 -> 21.
    assert [(r["target"], r["env_steps"]) for r in rows] == [(0, 3), (10, 12), (20, 21)]
    assert rows[0]["steps_per_s"] is None and all(r["steps_per_s"] > 0 for r in rows[1:])
    assert all(r["rss_mb"] > 0 and r["peak_rss_mb"] >= r["rss_mb"] - 1 and r["python_heap_mb"] > 0 for r in rows)
    assert all("cuda_mb" not in r for r in rows)


def test_growth_by_hand():
    rows = [
        {"target": 0, "env_steps": 64, "rss_mb": 390.0, "python_heap_mb": 11.0},
        {"target": 1000, "env_steps": 1024, "rss_mb": 400.25, "python_heap_mb": 12.5},
        {"target": 3000, "env_steps": 3024, "rss_mb": 401.0, "python_heap_mb": 12.75},
    ]
    # 1000 -> 3000: RSS 400.25 -> 401.0 MB = +0.75 MB = 768 KB over 3024 - 1024 = 2000 env steps = 384 KB per 1,000;
    # the traced Python heap 12.5 -> 12.75 MB = +0.25 MB. Row 0 is not used.
    assert memory.growth(rows, 1000, 3000) == {
        "from_steps": 1024,
        "to_steps": 3024,
        "rss_growth_mb": 0.75,
        "kb_per_1k_steps": 384.0,
        "python_heap_growth_mb": 0.25,
    }
    # A run without --python-heap, 0 -> 1000: RSS 390.0 -> 400.25 MB = +10.25 MB = 10,496 KB over 1024 - 64 = 960 env
    # steps = 10,496 / 0.96 = 10,933.33... KB per 1,000.
    no_heap = [{k: v for k, v in r.items() if k != "python_heap_mb"} for r in rows]
    g = memory.growth(no_heap, 0, 1000)
    assert "python_heap_growth_mb" not in g and g["rss_growth_mb"] == 10.25
    assert g["kb_per_1k_steps"] == pytest.approx(10933.333333333334, rel=1e-12)
