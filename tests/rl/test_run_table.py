"""rl.run_table and scripts/run_table.py: each finished run's evaluations, final reward and seconds as one markdown
row, in compare's condition order; filters; unfinished runs named, not tabled; a missing folder refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rl.run_table import markdown, run_rows
from scripts.run_table import main


def _run(run_dir: Path, means: list[float], final: float | None = 0.95, seconds: float | None = 1234.4) -> None:
    """A run folder with evaluations every 25k steps over 4 episodes whose mean is ``means[i]``."""
    (run_dir / "eval").mkdir(parents=True)
    steps = np.arange(1, len(means) + 1) * 25_000
    results = np.array(means)[:, None] + np.array([-0.01, 0.01, -0.02, 0.02])  # each row's mean is means[i]
    np.savez(run_dir / "eval" / "evaluations.npz", timesteps=steps, results=results)
    if final is not None:
        (run_dir / "metrics.json").write_text(json.dumps({"final_eval/mean_reward": final, "seconds": 9.0}))
    if seconds is not None:
        (run_dir / "done.json").write_text(json.dumps({"seconds": seconds}))


@pytest.fixture
def logdir(tmp_path) -> Path:
    env = tmp_path / "Grid-v0"
    _run(env / "fsae-round" / "seed1", [0.0, 0.5, 0.96123])
    _run(env / "none" / "seed1", [0.0, 1.0, 0.96], final=0.91234, seconds=None)  # seconds from metrics.json
    _run(env / "none" / "seed0", [0.1, 0.2])  # one evaluation fewer: its 75k cell is blank
    _run(env / "copy" / "seed0", [0.3, 0.3, 0.3], final=None, seconds=None)  # not finished
    _run(tmp_path / "Pong-v5" / "none" / "seed0", [-20.5, 1234.5], final=-19.25)  # rewards of another scale
    return tmp_path


def test_rows_sorted_by_condition_then_seed_with_their_figures(logdir):
    rows, unfinished = run_rows(logdir, envs=["Grid-v0"])
    assert [(r.condition, r.seed) for r in rows] == [("none", 0), ("none", 1), ("fsae-round", 1)]
    assert unfinished == [Path("Grid-v0/copy/seed0")]
    none1 = rows[1]
    assert none1.eval_steps == [25_000, 50_000, 75_000]
    assert none1.eval_means == pytest.approx([0.0, 1.0, 0.96])
    assert (none1.final, none1.seconds) == (0.91234, 9.0)
    assert rows[2].seconds == 1234.4


def test_markdown_cells(logdir):
    table = markdown(run_rows(logdir)[0])
    lines = table.splitlines()
    assert lines[0] == "Grid-v0:"
    assert lines[2] == "| condition | seed | 25k | 50k | 75k | after training | seconds |"
    assert lines[4] == "| raw (`none`) | 0 | 0.1 | 0.2 |  | 0.95 | 1,234 |"
    assert lines[5] == "| raw (`none`) | 1 | 0 | 1 | 0.96 | 0.9123 | 9 |"
    assert lines[6] == "| `fsae-round` | 1 | 0 | 0.5 | 0.961 | 0.95 | 1,234 |"
    assert lines[7:10] == ["", "Pong-v5:", ""]
    assert lines[12] == "| raw (`none`) | 0 | -20.5 | 1234 | -19.25 | 1,234 |"  # no exponents
    assert len(lines) == 13


def test_every_keeps_the_columns_of_its_multiples(logdir, capsys):
    lines = markdown(run_rows(logdir, envs=["Grid-v0"])[0], every=50_000).splitlines()
    assert lines[2] == "| condition | seed | 50k | after training | seconds |"
    assert lines[4:7] == [
        "| raw (`none`) | 0 | 0.2 | 0.95 | 1,234 |",
        "| raw (`none`) | 1 | 1 | 0.9123 | 9 |",
        "| `fsae-round` | 1 | 0.5 | 0.95 | 1,234 |",
    ]
    assert markdown(run_rows(logdir)[0], every=0) == markdown(run_rows(logdir)[0])  # 0: every column
    assert main([str(logdir), "--envs", "Grid-v0", "--every", "50000"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == lines[2]


def test_filters(logdir):
    rows, _ = run_rows(logdir, seeds=[1])
    assert [(r.condition, r.seed) for r in rows] == [("none", 1), ("fsae-round", 1)]
    rows, _ = run_rows(logdir, envs=["Pong-v5"])
    assert [(r.env, r.condition, r.seed) for r in rows] == [("Pong-v5", "none", 0)]
    assert run_rows(logdir, envs=["ALE/Pong-v5"]) == (rows, [])  # the full id names the same folder
    rows, unfinished = run_rows(logdir, conditions=["fsae-round"])
    assert [(r.condition, r.seed) for r in rows] == [("fsae-round", 1)] and unfinished == []
    assert run_rows(logdir, envs=["Other-v0"]) == ([], [])


def test_cli_prints_the_table_and_names_unfinished_runs(logdir, capsys):
    assert main([str(logdir), "--seeds", "0"]) == 0
    out, err = capsys.readouterr()
    assert out == markdown(run_rows(logdir, seeds=[0])[0])
    assert err.strip() == "not finished (left out): Grid-v0/copy/seed0"


def test_cli_refuses_a_missing_folder_and_an_empty_match(tmp_path, logdir, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such folder of runs" in err[0]
    assert main([str(logdir), "--seeds", "7"]) == 1
    assert capsys.readouterr().err.strip().endswith("no finished run matches")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("metrics.json", '{"final_eval/mean_rew'),  # cut short
        ("metrics.json", '{"final_eval/mean_reward": "abc"}'),  # not a number
        ("eval/evaluations.npz", "not an npz"),
    ],
)
def test_a_corrupt_record_is_one_line_naming_it_never_a_blank_cell(logdir, capsys, name, content):
    bad = logdir / "Grid-v0" / "none" / "seed0" / name
    bad.write_text(content)
    with pytest.raises(ValueError, match=f"{bad} is unreadable or corrupt"):
        run_rows(logdir)
    assert main([str(logdir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad} is unreadable or corrupt; restore it from where the run was archived, or leave the "
                   "run out (--seeds, --conditions, --envs)"]  # fmt: skip
    assert len(run_rows(logdir, seeds=[1])[0]) == 2  # the runs left out by a filter are not read
