"""fsae.report: the Markdown table of docs/results/*.md, rows by hand."""

from fsae.report import pretrain_table


def test_table_rows_per_group_and_per_target():
    groups = {
        "abstract/test_accuracy": 0.5,
        "abstract/test_accuracy_group1": 0.25,
        "abstract/test_accuracy_group0": 1.0,
        "abstract/test_exact_match": 0.125,
        "concrete/round/test_mse": 0.001,
        "time/total_seconds": 10.0,
    }
    linear = {"abstract/test_r2": 0.75, "abstract/test_r2_10": 0.5, "abstract/test_r2_2": 1.0}
    assert pretrain_table({"A": groups, "B": linear}).splitlines() == [
        "| metric | A | B |",
        "|---|---|---|",
        "| abstract: test R^2, mean over targets (`abstract/test_r2`) |  | 0.75 |",
        "| abstract: test R^2, target 2 (`abstract/test_r2_2`) |  | 1 |",
        "| abstract: test R^2, target 10 (`abstract/test_r2_10`) |  | 0.5 |",
        "| abstract: test accuracy (`abstract/test_accuracy`) | 0.5 |  |",
        "| abstract: test accuracy, group 0 (`abstract/test_accuracy_group0`) | 1 |  |",
        "| abstract: test accuracy, group 1 (`abstract/test_accuracy_group1`) | 0.25 |  |",
        "| abstract: every group right (`abstract/test_exact_match`) | 0.125 |  |",
        "| round: MSE (`concrete/round/test_mse`) | 0.001 |  |",
        "| wall time of the run (s) (`time/total_seconds`) | 10 |  |",
    ]


def test_feedback_rows_from_a_real_runs_keys():
    """Pretraining also writes ``feedback/test_images`` (how many images the curve used): not a step of the curve."""
    m = {
        "concrete/round/test_mse": 0.001,
        "feedback/test_images": 2000,
        "feedback/round/T0/test_mse": 0.004,
        "feedback/round/T2/test_mse": 0.003,
    }
    assert pretrain_table({"A": m}).splitlines()[2:] == [
        "| round: MSE (`concrete/round/test_mse`) | 0.001 |",
        "| round: MSE with feedback T=2 (`feedback/round/T2/test_mse`) | 0.003 |",
    ]
