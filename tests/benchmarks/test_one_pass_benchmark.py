"""benchmarks/one_pass.py's summary: the methods' difference against the seeds', worked out by hand."""

import one_pass  # benchmarks/one_pass.py
import pytest


def test_summary_by_hand():
    results = {
        0: {"one_pass": {"concrete/round": 0.0530, "seconds": 9.0}, "separate": {"concrete/round": 0.0528}},
        1: {"one_pass": {"concrete/round": 0.0525}, "separate": {"concrete/round": 0.0531}},
    }
    row = one_pass.summary(results)["concrete/round"]
    # methods differ by |0.0530 - 0.0528| = 0.0002 on seed 0 and |0.0525 - 0.0531| = 0.0006 on seed 1: max 0.0006;
    # the seeds differ by |0.0530 - 0.0525| = 0.0005 in one pass and |0.0528 - 0.0531| = 0.0003 one after another.
    assert row == pytest.approx(
        {
            "max_method_difference": 6e-4,
            "seed_difference_one_pass": 5e-4,
            "seed_difference_separate": 3e-4,
            "within_seed_noise": False,
        }  # fmt: skip
    )
    results[1]["one_pass"]["concrete/round"] = 0.0533  # methods: 0.0002 both seeds; seeds: 0.0003 and 0.0003
    assert one_pass.summary(results)["concrete/round"]["within_seed_noise"] is True
