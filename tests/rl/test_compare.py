"""rl.compare on synthetic TensorBoard runs with known curves: every reported number against one computed by hand."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from torch.utils.tensorboard import SummaryWriter

from rl.compare import compare, load_runs
from rl.run_folder import check_event_files
from rl.stats import (
    _RNG_KW,
    auc,
    bootstrap_ci,
    improvement_ci,
    iqm,
    iqm_ci,
    mean_curve,
    probability_of_improvement,
    steps_to_threshold,
)

ROOT = Path(__file__).resolve().parents[2]
STEPS = list(range(0, 1001, 100))  # the training curve is logged every 100 steps
# Final evaluation rewards of 8 seeds. Sorted: none 0..7, fsae 0 3 4 5 6 7 10 100.
FINAL_NONE = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
FINAL_FSAE = [10.0, 0.0, 3.0, 5.0, 7.0, 100.0, 4.0, 6.0]
THRESHOLD = 5.0


def _write(run_dir: Path, scalars: dict[str, list[tuple[int, float]]]) -> None:
    w = SummaryWriter(log_dir=str(run_dir))
    for tag, points in scalars.items():
        for step, value in points:
            w.add_scalar(tag, value, step)
    w.close()


def _train(offset: float) -> list[tuple[int, float]]:
    """A linear ramp: step / 100 + offset."""
    return [(s, s / 100 + offset) for s in STEPS]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for s in range(8):
        # 'none': eval/mean_reward ends at the final reward.
        _write(
            root / "EnvA" / "none" / f"seed{s}",
            {"rollout/ep_rew_mean": _train(0.5 * s), "eval/mean_reward": [(500, -1.0), (1000, FINAL_NONE[s])]},
        )
        # 'fsae-round': the after-training evaluation (a later step) is the final reward, not the last periodic one.
        _write(
            root / "EnvA" / "fsae-round" / f"seed{s}",
            {
                "rollout/ep_rew_mean": _train(2.0 + s),
                "eval/mean_reward": [(500, -1.0), (1000, -2.0)],
                "eval/final_mean_reward": [(1100, FINAL_FSAE[s])],
            },
        )
    # One seed per condition: no confidence interval can be computed.
    _write(root / "EnvB" / "none" / "seed0", {"rollout/ep_rew_mean": _train(0.0), "eval/mean_reward": [(1000, 1.0)]})
    _write(root / "EnvB" / "copy" / "seed3", {"rollout/ep_rew_mean": _train(1.0), "eval/mean_reward": [(1000, 2.0)]})
    # A train_agent run that did not finish (config.yaml, no metrics.json): left out; one that did: kept.
    unfinished = root / "EnvB" / "copy" / "seed4"
    _write(unfinished, {"eval/mean_reward": [(1000, 1000.0)]})
    (unfinished / "config.yaml").write_text("seed: 4\n")
    finished = root / "EnvB" / "copy" / "seed5"
    _write(finished, {"rollout/ep_rew_mean": _train(1.0), "eval/mean_reward": [(1000, 4.0)]})
    (finished / "config.yaml").write_text("seed: 5\n")
    (finished / "done.json").write_text(json.dumps({"returncode": 0}))
    _write(root / "stray", {"eval/mean_reward": [(1, 1.0)]})  # not <env>/<condition>/seed<N>
    # Below a hidden folder (a Ray sweep's Tune state, whose checkpoints copy run folders): not a 9th seed of EnvA/none.
    _write(root / ".ray_tune" / "EnvA" / "none" / "seed9", {"rollout/ep_rew_mean": _train(50.0)})
    return root


@pytest.fixture(scope="module")
def report(logdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    warnings: list[str] = []
    rows = compare(logdir, out, threshold=THRESHOLD, n_resamples=999, warn=warnings.append)
    return out, {(r["env"], r["condition"]): r for r in rows}, warnings


# --------------------------------------------------------------------------------------------------------------------
# The statistics


def test_iqm_is_mean_of_middle_half():
    assert iqm(FINAL_FSAE) == pytest.approx((4 + 5 + 6 + 7) / 4)  # 8 seeds: the middle 4 of 0 3 4 5 6 7 10 100
    assert iqm([5.0, 1.0, 3.0, 100.0, 2.0]) == pytest.approx((2 + 3 + 5) / 3)  # 5 seeds: one cut from each end
    assert iqm([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 8.0, 8.0]]) == pytest.approx([2.5, 4.0])  # along the last axis


def test_bootstrap_ci_contains_iqm_within_data_range():
    low, high = bootstrap_ci(FINAL_FSAE, iqm, n_resamples=999, seed=0)
    assert min(FINAL_FSAE) <= low <= iqm(FINAL_FSAE) <= high <= max(FINAL_FSAE)
    assert low < high
    assert bootstrap_ci(FINAL_FSAE, iqm, n_resamples=999, seed=0) == (low, high)  # seeded: reproducible


def test_bootstrap_ci_guards():
    assert all(math.isnan(v) for v in bootstrap_ci([3.0], iqm))  # one seed: no interval
    assert all(math.isnan(v) for v in bootstrap_ci([], iqm))
    assert bootstrap_ci([2.0, 2.0, 2.0], iqm, n_resamples=99) == (2.0, 2.0)  # no spread: zero width


def test_bootstrap_ci_coverage():
    """The 95% CI of the mean of 10 draws from N(0, 1) contains 0 about 95% of the time (the percentile bootstrap
    undercovers a little at n = 10)."""
    rng = np.random.default_rng(0)
    reps = 200
    hits = 0
    for i in range(reps):
        low, high = bootstrap_ci(rng.standard_normal(10), np.mean, n_resamples=999, seed=i)
        hits += low <= 0.0 <= high
    assert 0.88 * reps <= hits <= 0.99 * reps, hits


def test_auc_by_hand():
    # Trapezoids: (1 - 0) * (0 + 2) / 2 + (3 - 1) * (2 + 2) / 2 = 5, over a step range of 3.
    assert auc([0, 1, 3], [0.0, 2.0, 2.0]) == pytest.approx(5 / 3)
    assert auc(STEPS, [v for _, v in _train(1.5)]) == pytest.approx(5 + 1.5)  # a ramp 1.5 -> 11.5: its midpoint
    assert auc([7], [4.0]) == 4.0
    assert math.isnan(auc([], []))


def test_steps_to_threshold_by_hand():
    steps, values = [0, 100, 200, 300], [0.0, 4.9, 5.0, 9.0]
    assert steps_to_threshold(steps, values, 5.0) == 200  # the first logged step at >= 5, no interpolation
    assert steps_to_threshold(steps, values, 0.0) == 0
    assert steps_to_threshold(steps, values, 9.5) == math.inf
    assert steps_to_threshold([0, 100, 200], [6.0, 1.0, 7.0], 5.0) == 0  # the first, not the last, crossing


def test_probability_of_improvement_by_hand():
    # Pairs (x, y): 1 beats 0 (1), loses to 2, 2 (0); 2 beats 0 (1), ties 2, 2 (0.5 + 0.5); 3 beats all (3): 6 / 9.
    assert probability_of_improvement([1, 2, 3], [0, 2, 2]) == pytest.approx(6 / 9)
    assert probability_of_improvement([0, 2, 2], [1, 2, 3]) == pytest.approx(3 / 9)  # P(X>Y) + P(Y>X) + P(=) = 1
    assert probability_of_improvement([5, 6], [1, 2, 3]) == 1.0
    assert probability_of_improvement([2, 2], [2]) == 0.5
    # A nan seed is neither a win nor a tie: the probability is nan, as the IQM of a nan is (it counted as a loss).
    assert math.isnan(probability_of_improvement([np.nan, 5], [1, 2]))
    assert math.isnan(probability_of_improvement([1, 2], [np.nan, 5]))
    assert all(math.isnan(v) for v in improvement_ci([np.nan, 5, 6], [1, 2]))
    assert np.array_equal(probability_of_improvement([[1, np.nan], [3, 4]], [[2, 2], [2, 2]]), [np.nan, 1.0], True)


def test_intervals_are_95_percent_of_2000_resamples():
    """iqm_ci and improvement_ci: the 2.5th and 97.5th percentiles of 2,000 bootstrap resamples drawn with seed 0
    (the level and count results.md states), not only some interval around the estimate."""
    x, y = np.array(FINAL_FSAE), np.array([1.0, 2.0, 4.0, 4.0, 6.0, 9.0])
    for samples, stat, got in (
        ((x,), iqm, iqm_ci(x)),
        ((x, y), probability_of_improvement, improvement_ci(x, y)),
    ):
        dist = stats.bootstrap(
            samples, stat, n_resamples=2000, method="percentile", **{_RNG_KW: np.random.default_rng(0)}
        ).bootstrap_distribution
        assert dist.shape == (2000,)
        assert got[1:] == pytest.approx(tuple(np.percentile(dist, [2.5, 97.5])), rel=1e-12)
        assert got[0] == pytest.approx(stat(*samples))


def test_mean_curve_band():
    curves = [(np.array(STEPS), np.array([v for _, v in _train(o)])) for o in (0.0, 1.0, 2.0, 3.0)]
    grid, mean, low, high = mean_curve(curves, n_resamples=499)
    assert np.array_equal(grid, STEPS)
    assert np.allclose(mean, np.array(STEPS) / 100 + 1.5)
    assert np.all(low <= mean) and np.all(mean <= high) and np.all(low >= mean - 1.5) and np.all(high <= mean + 1.5)
    # Different step grids are interpolated onto the steps that every seed covers.
    grid, mean, _, _ = mean_curve([(np.array([0, 100]), np.array([0.0, 10.0])), (np.array([50, 150]), np.ones(2))])
    assert np.array_equal(grid, [50, 100]) and np.allclose(mean, [3.0, 5.5])


# --------------------------------------------------------------------------------------------------------------------
# Loading and the report


def test_load_runs_layout_and_skips(logdir):
    warnings: list[str] = []
    runs = load_runs(logdir, warnings.append)
    keys = sorted((r.env, r.condition, r.seed) for r in runs)
    assert len(keys) == 19 and ("EnvB", "copy", 5) in keys and ("EnvB", "copy", 4) not in keys
    assert any("seed4" in w and "did not finish" in w for w in warnings)
    assert any("stray" in w for w in warnings)
    assert not any(".ray_tune" in w for w in warnings) and ("EnvA", "none", 9) not in keys
    run = next(r for r in runs if (r.env, r.condition, r.seed) == ("EnvA", "none", 3))
    steps, values = run.scalars["rollout/ep_rew_mean"]
    assert np.array_equal(steps, STEPS) and np.allclose(values, np.array(STEPS) / 100 + 1.5)
    fsae = next(r for r in runs if (r.env, r.condition, r.seed) == ("EnvA", "fsae-round", 0))
    assert np.array_equal(fsae.eval_curve()[0], [500, 1000, 1100]) and fsae.eval_curve()[1][-1] == FINAL_FSAE[0]


def test_report_numbers_match_hand_computation(report):
    _, rows, _ = report
    none, fsae = rows[("EnvA", "none")], rows[("EnvA", "fsae-round")]
    assert none["seeds"] == fsae["seeds"] == 8
    assert none["final_iqm"] == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert fsae["final_iqm"] == pytest.approx((4 + 5 + 6 + 7) / 4)  # from eval/final_mean_reward, not the -2
    for r in (none, fsae):
        assert r["final_ci_low"] <= r["final_iqm"] <= r["final_ci_high"]
    assert 0.0 <= none["final_ci_low"] and none["final_ci_high"] <= 7.0
    # AUC of a ramp offset + 0..10 is offset + 5: none's offsets 0.5 s -> the middle 4 (s = 2..5) are 6, 6.5, 7, 7.5.
    assert none["auc_iqm"] == pytest.approx((6 + 6.5 + 7 + 7.5) / 4)
    assert fsae["auc_iqm"] == pytest.approx(5 + 2 + (2 + 3 + 4 + 5) / 4)
    # Steps to 5: the first multiple of 100 with step / 100 + 0.5 s >= 5, for s = 0..7.
    none_hits = [500, 500, 400, 400, 300, 300, 200, 200]
    assert none["steps_to_threshold_median"] == pytest.approx(np.median(none_hits)) == 350
    assert none["reached"] == 8
    fsae_hits = [max(0, 100 * math.ceil(5 - 2 - s)) for s in range(8)]  # 300, 200, 100, 0, 0, ...
    assert fsae["steps_to_threshold_median"] == np.median(fsae_hits) == 0
    # P(fsae > none): all 64 pairs of seeds, counted here one by one.
    pairs = [(x > y) + 0.5 * (x == y) for x in FINAL_FSAE for y in FINAL_NONE]
    assert fsae["p_improve"] == pytest.approx(sum(pairs) / 64)
    assert fsae["p_improve_ci_low"] <= fsae["p_improve"] <= fsae["p_improve_ci_high"]
    assert math.isnan(none["p_improve"])  # the baseline is not compared with itself


def test_report_single_seed_and_never_reached(report):
    _, rows, _ = report
    b_none, b_copy = rows[("EnvB", "none")], rows[("EnvB", "copy")]
    assert b_none["seeds"] == 1 and b_none["final_iqm"] == 1.0 and math.isnan(b_none["final_ci_low"])
    assert b_copy["seeds"] == 2 and b_copy["final_iqm"] == pytest.approx(3.0)  # seeds 3 and 5; seed 4 left out
    assert b_copy["p_improve"] == 1.0
    assert b_none["steps_to_threshold_median"] == 500 and b_copy["steps_to_threshold_median"] == 400


def test_missing_baseline_is_named(logdir, tmp_path):
    warnings: list[str] = []
    rows = compare(logdir, tmp_path, baseline="none-lin", n_resamples=99, warn=warnings.append, envs=["EnvA"])
    assert all(math.isnan(r["p_improve"]) for r in rows)
    message = "EnvA: no runs of the baseline 'none-lin' (there are ['fsae-round', 'none']); P(improve) is left out"
    assert message in warnings and not any("EnvB" in w and "baseline" in w for w in warnings)


def test_a_seed_without_evaluation_is_named_and_counted_apart(tmp_path):
    root = tmp_path / "runs"
    for s, final in ((0, 2.0), (1, 4.0)):
        _write(
            root / "EnvC" / "none" / f"seed{s}",
            {"rollout/ep_rew_mean": _train(0.0), "eval/mean_reward": [(1000, final)]},
        )
    _write(root / "EnvC" / "none" / "seed2", {"rollout/ep_rew_mean": _train(0.0)})  # trained, never evaluated
    warnings: list[str] = []
    (row,) = compare(root, tmp_path / "out", n_resamples=99, warn=warnings.append)
    why = "no eval/mean_reward or eval/final_mean_reward; left out of the final reward and P(improve)"
    assert warnings == [f"{root / 'EnvC' / 'none' / 'seed2'}: {why}"]
    assert (row["seeds"], row["evaluated"], row["final_iqm"]) == (3, 2, 3.0)  # the AUC still counts all three
    assert "| EnvC | none | 3 (2 evaluated) |" in (tmp_path / "out" / "results.md").read_text()


def test_report_files(report):
    out, rows, _ = report
    assert {p.name for p in out.iterdir()} == {"results.md", "results.csv", "EnvA.png", "EnvB.png"}
    for png in ("EnvA.png", "EnvB.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text().splitlines()
    table = [line for line in md if line.startswith("| Env")]
    assert [tuple(c.strip() for c in line.split("|")[1:3]) for line in table] == [
        ("EnvA", "none"),
        ("EnvA", "fsae-round"),
        ("EnvB", "none"),
        ("EnvB", "copy"),
    ]
    assert "| 3.5 [" in table[0] and "| 5.5 [" in table[1]  # final IQM with its CI
    assert "350 (8/8 reached 5)" in table[0]
    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows) == 4
    assert float(csv_rows[1]["final_iqm"]) == pytest.approx(5.5)


def test_best_score_counts_each_seeds_best_evaluation(tmp_path):
    """--score best: a seed that reached 9 and fell back to 1 counts 9; the final score counts 1."""
    peaks, ends = [9.0, 8.0, 7.0, 6.0], [1.0, 8.0, 2.0, 6.0]
    for s in range(4):
        flat = {"eval/mean_reward": [(500, 5.0)], "eval/final_mean_reward": [(1000, 5.0)]}
        fell = {"eval/mean_reward": [(500, peaks[s]), (1000, ends[s] - 1)], "eval/final_mean_reward": [(1100, ends[s])]}
        _write(tmp_path / "runs" / "E" / "none" / f"seed{s}", {"rollout/ep_rew_mean": _train(0.0), **flat})
        _write(tmp_path / "runs" / "E" / "fsae-round" / f"seed{s}", {"rollout/ep_rew_mean": _train(0.0), **fell})
    final = {r["condition"]: r for r in compare(tmp_path / "runs", tmp_path / "final", n_resamples=99)}
    best = {r["condition"]: r for r in compare(tmp_path / "runs", tmp_path / "best", n_resamples=99, score="best")}
    assert final["fsae-round"]["final_iqm"] == pytest.approx((2 + 6) / 2)  # the middle two of 1, 2, 6, 8
    assert best["fsae-round"]["final_iqm"] == pytest.approx((7 + 8) / 2)  # the middle two of 6, 7, 8, 9
    assert final["fsae-round"]["p_improve"] == pytest.approx(0.5) and best["fsae-round"]["p_improve"] == 1.0
    assert best["none"]["final_iqm"] == 5.0 and {r["score"] for r in best.values()} == {"best"}
    md = (tmp_path / "best" / "results.md").read_text()
    assert "| best eval reward, IQM [95% CI] |" in md and "each seed's best evaluation during training" in md
    with pytest.raises(ValueError, match="score must be one of"):
        compare(tmp_path / "runs", tmp_path / "x", score="mean")


def test_cli(logdir, tmp_path, capsys, load_script):
    script = load_script("compare")
    out = tmp_path / "out"
    rc = script.main([str(logdir), "--out", str(out), "--threshold", "EnvA=5", "EnvB=2", "--n-resamples", "99"])
    assert rc == 0 and (out / "results.md").is_file()
    assert "| EnvA | none |" in capsys.readouterr().out
    assert script.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert script.main([str(logdir), "--threshold", "EnvA"]) == 2  # neither a number nor ENV=R
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert script.main([str(tmp_path)]) == 2  # no runs
    assert "no finished runs" in capsys.readouterr().err
    # --envs: only those environments' rows (and plots); an unknown one is one error line.
    only = tmp_path / "only"
    assert script.main([str(logdir), "--out", str(only), "--envs", "EnvB", "--n-resamples", "99"]) == 0
    printed = capsys.readouterr().out
    assert "| EnvB |" in printed and "| EnvA |" not in printed
    assert sorted(p.name for p in only.glob("*.png")) == ["EnvB.png"]
    assert script.main([str(logdir), "--envs", "EnvC"]) == 2
    assert "no finished runs of ['EnvC']" in capsys.readouterr().err
    # --seeds: a grid as it stood at fewer seeds; none of them found is the no-runs error.
    assert script.main([str(logdir), "--out", str(tmp_path / "s"), "--envs", "EnvA", "--seeds", "0", "1", "2"]) == 0
    assert "| EnvA | none | 3 |" in capsys.readouterr().out
    assert script.main([str(logdir), "--seeds", "42"]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_seeds_filter_equals_a_grid_of_those_seeds_alone(logdir, tmp_path):
    """compare(seeds=...) gives the rows of a logdir that holds only those seeds' runs."""
    some = tmp_path / "some"
    for s in (1, 4, 6):
        for cond in ("none", "fsae-round"):
            shutil.copytree(logdir / "EnvA" / cond / f"seed{s}", some / "EnvA" / cond / f"seed{s}")
    kw = {"threshold": THRESHOLD, "n_resamples": 199, "warn": lambda m: None}
    filtered = compare(logdir, tmp_path / "a", envs=["EnvA"], seeds=[1, 4, 6], **kw)
    alone = compare(some, tmp_path / "b", **kw)
    assert filtered == alone and {r["seeds"] for r in filtered} == {3}
    # An env's full id names its folder too (runs of ALE/Breakout-v5 lie in Breakout-v5/), in envs and thresholds.
    full = compare(logdir, tmp_path / "c", envs=["ns/EnvA"], seeds=[1, 4, 6], **{**kw, "threshold": {"ns/EnvA": 5.0}})
    assert full == filtered


def test_an_event_file_cut_short_is_one_error_naming_it(tmp_path, capsys, load_script):
    """TensorBoard's reader stops quietly at a record cut short; the comparison would show a run with fewer points,
    or none ('no eval/mean_reward'). A whole file passes; the same file less its last bytes is refused, in one line."""
    run = tmp_path / "runs" / "EnvA" / "none" / "seed0"
    _write(run, {"eval/mean_reward": [(500, 1.0), (1000, 2.0)]})
    (events,) = run.glob("events.out.tfevents.*")
    check_event_files(run)  # whole: no error
    assert len(load_runs(tmp_path / "runs")[0].eval_curve()[0]) == 2
    whole = events.read_bytes()
    for cut in (3, 13):  # inside the last record's CRC; inside its data
        events.write_bytes(whole[:-cut])
        with pytest.raises(ValueError, match=f"{events} is cut short or corrupt: its records end at byte "):
            load_runs(tmp_path / "runs")
    events.write_bytes(whole + b"\0" * 5)  # trailing bytes that are no record
    with pytest.raises(ValueError, match=f"records end at byte {len(whole)}, the file at byte {len(whole) + 5}"):
        check_event_files(run)
    events.write_bytes(whole[:-3])
    assert load_script("compare").main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    ends = f"its records end at byte {len(whole)}, the file at byte {len(whole) - 3}"
    assert err.splitlines() == [f"error: {events} is cut short or corrupt: {ends}"]
