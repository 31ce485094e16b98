"""Characteristics: ROC AUC by hand, familiarity on a constructed case, concept codes, runners on tiny budgets."""

import importlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fsae.characteristics import (
    ConceptOptions,
    FamiliarityOptions,
    LetheOptions,
    all_attribute_codes,
    familiarity,
    familiarity_by_steps,
    interpolation_codes,
    mixture,
    roc_auc,
    run_concepts,
    run_familiarity,
    run_lethe,
)
from fsae.checkpoint import load_fsae, save_fsae
from fsae.config import ConfigError, from_dict
from fsae.data import load_mnist, to_float_images
from fsae.model import FSAE, FSAEConfig, LayerSpec
from fsae.pretrain import PretrainConfig
from fsae.provenance import sha256_file
from fsae.runtime import seed_everything
from fsae.targets import load_dataset
from fsae.train import TrainConfig, train_abstract, train_concrete

fam_module = importlib.import_module("fsae.characteristics.familiarity")  # the package exports a function of that name

ROOT = Path(__file__).resolve().parents[2]


TINY_LAYERS = [LayerSpec("conv", 8, 4, 2), LayerSpec("linear", 10)]


def _tiny_cfg(**over) -> PretrainConfig:
    d = {
        "name": "tiny",
        "model": {"layers": [{"type": "conv", "out": 8, "kernel": 4, "stride": 2}, {"type": "linear", "out": 10}]},
        "data": {"train_size": 400, "test_size": 200},
        "train": {"abstract_epochs": 1, "concrete_epochs": 1, "batch_size": 64},
        "variants": [{"name": "plain"}, {"name": "round", "round": True}, {"name": "jump_all", "jumps": "all"}],
        "device": "cpu",
    }
    d.update(over)
    return from_dict(PretrainConfig, d)


# --------------------------------------------------------------------------------------------------------------------
# roc_auc


def _auc_pairwise(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """The definition, pair by pair: P(pos > neg) + 0.5 P(pos == neg)."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos.tolist(), neg.tolist()))
    return wins / (len(pos) * len(neg))


def test_roc_auc_by_hand_with_a_tie():
    # pairs: 0.9 beats all 3, 0.8 beats all 3, 0.4 loses to 0.5, ties 0.4 (half), beats 0.1 -> 7.5 / 9
    pos, neg = torch.tensor([0.9, 0.8, 0.4]), torch.tensor([0.5, 0.4, 0.1])
    assert roc_auc(pos, neg) == pytest.approx(7.5 / 9)


def test_roc_auc_extremes_and_symmetry():
    a, b = torch.tensor([3.0, 4.0, 5.0]), torch.tensor([0.0, 1.0])
    assert roc_auc(a, b) == 1.0 and roc_auc(b, a) == 0.0
    assert roc_auc(torch.ones(4), torch.ones(7)) == 0.5  # all tied
    pos, neg = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 0.0, 3.0])
    assert roc_auc(pos, neg) + roc_auc(neg, pos) == pytest.approx(1.0)


def test_roc_auc_matches_pairwise_reference_with_many_ties():
    g = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 6, (37,), generator=g).float()
    neg = torch.randint(0, 5, (23,), generator=g).float()
    assert roc_auc(pos, neg) == pytest.approx(_auc_pairwise(pos, neg), abs=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# familiarity


@pytest.fixture(scope="module")
def memorised() -> tuple[FSAE, torch.Tensor]:
    """A tiny FSAE trained a few dozen steps on 64 fixed MNIST images."""
    images, labels = load_mnist("train")
    x, y = to_float_images(images[:64]), torch.from_numpy(labels[:64].copy())
    gen = seed_everything(0)
    model = FSAE(FSAEConfig(layers=TINY_LAYERS))
    cfg = TrainConfig(abstract_epochs=10, concrete_epochs=40, batch_size=32, schedule="constant")
    train_abstract(model, x, y, cfg, gen)  # 20 steps
    train_concrete(model, x, cfg, gen)  # 80 steps
    return model.eval(), x


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_trained_inputs_are_more_familiar_than_noise(memorised, kind):
    model, x = memorised
    noise = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    seen, unseen = familiarity(model, x, kind), familiarity(model, noise, kind)
    assert seen.shape == (64,) and unseen.shape == (64,)
    # -MSE separates perfectly; cosine less so, since non-negative noise correlates with any non-negative image
    assert roc_auc(seen, unseen) >= (1.0 if kind == "mse" else 0.9), f"{kind}: {seen.mean():.3f} vs {unseen.mean():.3f}"
    assert seen.min() > unseen.max() if kind == "mse" else seen.mean() > unseen.mean() + 0.1


def test_familiarity_by_steps_equals_one_regeneration_per_step_count(memorised):
    """One traced regeneration gives every T's scores exactly as separate regenerations with T steps would; the gain
    is passed on (a smaller one changes the scores); feedback never lowers -MSE familiarity."""
    model, x = memorised
    noise = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    images = torch.cat([x, noise])
    by_steps = familiarity_by_steps(model, images, ["mse", "cosine"], [0, 1, 3], batch_size=50)
    assert sorted(by_steps) == [(t, k) for t in (0, 1, 3) for k in ("cosine", "mse")]
    for (t, kind), scores in by_steps.items():
        assert torch.equal(scores, familiarity(model, images, kind, batch_size=50, steps=t)), (t, kind)
    assert (by_steps[(3, "mse")] >= by_steps[(0, "mse")]).all()
    assert (by_steps[(3, "mse")] > by_steps[(0, "mse")]).any(), "some step must have been accepted"
    half = familiarity_by_steps(model, images, ["mse"], [3], batch_size=50, gain=0.5)[(3, "mse")]
    assert not torch.equal(half, by_steps[(3, "mse")])


def test_familiarity_is_negative_mse_or_cosine(memorised):
    model, x = memorised
    with torch.no_grad():
        xhat = model(x[:5])
    expected = -(xhat - x[:5]).pow(2).flatten(1).mean(1)
    assert torch.allclose(familiarity(model, x[:5], "mse"), expected, atol=1e-7)
    cos = torch.nn.functional.cosine_similarity(xhat.flatten(1), x[:5].flatten(1))
    assert torch.allclose(familiarity(model, x[:5], "cosine", batch_size=2), cos, atol=1e-6)
    with pytest.raises(ConfigError, match="kind must be 'mse' or 'cosine', got 'l1'"):
        familiarity(model, x[:5], "l1")


# --------------------------------------------------------------------------------------------------------------------
# concept codes


def test_mixture_codes_shape_and_sum():
    softmax = FSAE(FSAEConfig(layers=TINY_LAYERS))
    code = mixture(softmax, [3, 8], [0.5, 0.5])
    assert code.shape == (1, 10) and code.sum().item() == pytest.approx(1.0)
    assert code[0, 3] == 0.5 and code[0, 8] == 0.5 and code[0, [0, 1, 2, 4, 5, 6, 7, 9]].abs().sum() == 0
    path = interpolation_codes(softmax, 1, 7, steps=5)
    assert path.shape == (5, 10) and torch.allclose(path.sum(1), torch.ones(5))
    assert torch.equal(path[0], torch.eye(10)[1]) and torch.equal(path[-1], torch.eye(10)[7])
    assert path[2, 1] == pytest.approx(0.5)
    # log space: the concrete network's input ln(max(code, eps)) moves linearly between the two labels
    z = interpolation_codes(softmax, 1, 7, steps=5, space="log").clamp_min(1e-6).log()
    assert torch.allclose(z[0], torch.eye(10)[1].clamp_min(1e-6).log(), atol=1e-4)
    assert torch.allclose(z[1], 0.75 * z[0] + 0.25 * z[4], atol=1e-4)
    assert z[2, 1] == pytest.approx(0.5 * torch.tensor(1e-6).log().item(), abs=1e-4)  # ln of a geometric mean

    groups = FSAE(FSAEConfig(input_shape=(1, 28, 56), layers=[LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 20)],
                             head="groups", groups=[10, 10]))  # fmt: skip
    code = mixture(groups, [[3, 8], [8, 3]], [0.5, 0.5])
    assert code.shape == (1, 20) and torch.allclose(code.view(2, 10).sum(1), torch.ones(2))
    assert code[0, 3] == code[0, 8] == code[0, 13] == code[0, 18] == 0.5

    attrs = all_attribute_codes(3)
    assert attrs.shape == (8, 3) and len({tuple(r) for r in attrs.tolist()}) == 8


# --------------------------------------------------------------------------------------------------------------------
# runners on tiny budgets


def test_run_familiarity_tiny(tmp_path, monkeypatch):
    # The networks the runner trains, kept to score the test images again by hand below.
    trained: dict[str, FSAE] = {}
    train_variants, train_autoencoder = fam_module.train_variants, fam_module.T.train_autoencoder

    def keep_variants(*args, **kwargs):
        trained.update(train_variants(*args, **kwargs))
        return dict(trained)

    def keep_autoencoder(ae, *args, **kwargs):
        trained["autoencoder"] = ae
        return train_autoencoder(ae, *args, **kwargs)

    monkeypatch.setattr(fam_module, "train_variants", keep_variants)
    monkeypatch.setattr(fam_module.T, "train_autoencoder", keep_autoencoder)
    # --feedback 2 alone: T = 0 is scored too.
    m = run_familiarity(_tiny_cfg(), tmp_path, FamiliarityOptions(seen=[0, 1, 2, 3, 4], feedback_steps=[2]))
    for det in ("plain", "round", "jump_all", "autoencoder", "mean_image", "jump_all/T2", "autoencoder/T2"):
        for kind in ("mse", "cosine"):
            assert 0.0 <= m[f"familiarity/{det}/auc_{kind}"] <= 1.0
            assert f"familiarity/{det}/class9_mean_{kind}" in m
    assert "familiarity/mean_image/T2/auc_mse" not in m  # the references do not regenerate
    # The mean-image reference by hand: the config's data split, the seen classes' mean training image, -MSE to it.
    cfg = _tiny_cfg()
    x_train, y_train, x_test, y_test = load_dataset(cfg.data, cfg.seed, cfg.model)
    seen_mean = x_train[y_train < 5].mean(0)
    score, is_seen = -(x_test - seen_mean).pow(2).flatten(1).mean(1), y_test < 5
    assert m["familiarity/n_train"] == int((y_train < 5).sum()) and m["familiarity/n_seen"] == int(is_seen.sum())
    assert m["familiarity/mean_image/auc_mse"] == pytest.approx(_auc_pairwise(score[is_seen], score[~is_seen]))
    assert m["familiarity/mean_image/unseen_mean_mse"] == pytest.approx(score[~is_seen].mean().item(), rel=1e-5)
    # Every regenerating detector by hand: -MSE and cosine of x and its regeneration after T steps, pairwise AUC.
    assert sorted(trained) == ["autoencoder", "jump_all", "plain", "round"]
    with torch.no_grad():
        for name, model in trained.items():
            for t in (0, 2):
                xhat = model.eval().regenerate(x_test, steps=t, gain=cfg.feedback_gain)
                mse = -(x_test - xhat).pow(2).flatten(1).mean(1)
                cos = torch.nn.functional.cosine_similarity(xhat.flatten(1), x_test.flatten(1), dim=1)
                det = name if t == 0 else f"{name}/T{t}"
                for kind, s in (("mse", mse), ("cosine", cos)):
                    expected = _auc_pairwise(s[is_seen], s[~is_seen])
                    assert m[f"familiarity/{det}/auc_{kind}"] == pytest.approx(expected, abs=1e-12), (det, kind)
                    assert m[f"familiarity/{det}/seen_mean_{kind}"] == pytest.approx(s[is_seen].mean().item(), rel=1e-4)
        probs = trained["plain"].abstract(x_test)[0].softmax(-1).max(-1).values  # the variants share one abstract net
        expected = _auc_pairwise(probs[is_seen], probs[~is_seen])
        assert m["familiarity/abstract_msp/auc_prob"] == pytest.approx(expected, abs=1e-12)
    for det in ("plain", "round", "jump_all", "autoencoder"):
        for group in ("seen", "unseen"):  # feedback never raises a residual
            assert m[f"familiarity/{det}/T2/{group}_mean_mse"] >= m[f"familiarity/{det}/{group}_mean_mse"] - 1e-7
    assert m["familiarity/jump_all/T2/seen_mean_mse"] > m["familiarity/jump_all/seen_mean_mse"]
    assert m["familiarity/n_seen"] + m["familiarity/n_unseen"] == 200
    for name in ("metrics.json", "familiarity.png", "config.yaml", "options.yaml", "command.txt", "run_info.json"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "metrics.json").read_text())["familiarity/n_train"] == m["familiarity/n_train"]


def test_run_lethe_tiny(tmp_path):
    opts = LetheOptions(variants=["plain"], eval_every=2, eval_size=50)
    m = run_lethe(_tiny_cfg(), tmp_path, opts)
    steps = m["lethe/phase_b_steps"]
    assert steps == -(-m["lethe/n_new"] // 64) and m["lethe/n_replay"] == round(0.05 * m["lethe/n_old"])
    curves = json.loads((tmp_path / "lethe_curves.json").read_text())["plain"]
    for cond in ("no_replay", "replay"):
        c = curves[cond]
        assert c["step"][0] == 0 and c["step"][-1] == steps and len(c["old_class"]) == len(c["step"])
        assert c["old_class"][0] == m["lethe/plain/old_mse_before"]  # both conditions start from the same weights
        assert m[f"lethe/plain/{cond}/old_mse_after"] == c["old_class"][-1]
        assert m[f"lethe/plain/{cond}/old_mse_peak"] == max(c["old_class"])  # the peak is the curve's maximum
        assert m[f"lethe/plain/{cond}/new_mse_after"] == c["new_class"][-1]
        assert list((tmp_path / f"plain_{cond}").glob("events.out.tfevents.*"))
    assert "lethe/plain/replay_rise_ratio" in m and (tmp_path / "lethe.png").is_file()


def test_run_concepts_from_config_and_checkpoints(tmp_path):
    m = run_concepts(_tiny_cfg(), tmp_path / "softmax", ConceptOptions(generators=["round"], steps=3))
    for k in ("prototype_cycle_accuracy", "mix_parent_rate", "mix_top2_rate", "interp_switch_alpha_mean"):
        assert 0.0 <= m[f"concepts/round/{k}"] <= 1.0
    assert (tmp_path / "softmax" / "mixtures_round.png").is_file()
    assert (tmp_path / "softmax" / "concept_grid_round.png").is_file()
    # untrained sigmoid and groups models through --checkpoint: the drawings exist and the rates are defined
    sig = FSAE(FSAEConfig(layers=[LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 3)], head="sigmoid"))
    save_fsae(tmp_path / "sig.pt", sig, variant="round")
    m = run_concepts(_tiny_cfg(), tmp_path / "sig", ConceptOptions(checkpoint=str(tmp_path / "sig.pt")))
    info = json.loads((tmp_path / "sig" / "run_info.json").read_text())
    assert info["depends_on"]["checkpoint"]["sha256"] == sha256_file(tmp_path / "sig.pt")
    with torch.no_grad():  # by hand from the saved file: every attribute code drawn, then read back
        model = load_fsae(tmp_path / "sig.pt").eval()
        codes = all_attribute_codes(3)
        back = model.classify(model.generate(codes)).float()
    assert m["concepts/round/attribute_cycle_accuracy"] == pytest.approx((back == codes).float().mean().item())
    assert m["concepts/round/attribute_back_101"] == "".join(str(int(v)) for v in back[5].tolist())
    assert (tmp_path / "sig" / "attributes_round.png").is_file()
    grp = FSAE(FSAEConfig(input_shape=(1, 28, 56), layers=[LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 20)],
                          head="groups", groups=[10, 10]))  # fmt: skip
    save_fsae(tmp_path / "grp.pt", grp, variant="plain")
    m = run_concepts(_tiny_cfg(), tmp_path / "grp", ConceptOptions(checkpoint=str(tmp_path / "grp.pt")))
    with torch.no_grad():
        model = load_fsae(tmp_path / "grp.pt").eval()
        pairs = torch.cartesian_prod(torch.arange(10), torch.arange(10))  # all 100 (left, right) digit pairs
        right = (model.classify(model.generate_labels(pairs)) == pairs).all(-1).float().mean().item()
    assert m["concepts/plain/pair_cycle_accuracy"] == pytest.approx(right)
    assert (tmp_path / "grp" / "digit_pairs_plain.png").is_file()
    assert (tmp_path / "grp" / "digit_mixtures_plain.png").is_file()


def test_lethe_script_smoke(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps({**_tiny_dict(), "variants": [{"name": "plain"}]}))
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scripts" / "lethe.py"), "--config", str(cfg), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny model, shared cores: see the root conftest.py
    proc = subprocess.run(
        [*cmd, "--eval-every", "3", "--eval-size", "50"], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lethe/plain/no_replay/old_mse_after" in proc.stdout
    for name in ("metrics.json", "lethe.png", "command.txt"):
        assert (out / name).is_file(), name

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import lethe as script  # the CLI in-process: a bad key is refused before anything runs
    finally:
        sys.path.pop(0)
    assert script.main(["--config", str(cfg), "--set", "train.lerning_rate=1", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def _tiny_dict() -> dict:
    from fsae.config import to_dict

    return to_dict(_tiny_cfg())
