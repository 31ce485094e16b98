"""Pretraining: the script end to end on an MNIST slice, determinism, and the reference computations by hand."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fsae import pretrain as P
from fsae.checkpoint import load_fsae, sha256_file
from fsae.config import ConfigError, from_dict, load_config
from fsae.evaluate import evaluate_abstract, evaluate_variant, image_metrics, predict
from fsae.figures import viewable
from fsae.model import FSAE, FSAEConfig, LayerSpec
from fsae.pretrain import (
    DataConfig,
    PretrainConfig,
    check_targets,
    class_mean_reference,
    load_dataset,
    mnist_targets,
    pretrain,
)

ROOT = Path(__file__).resolve().parents[2]
FAST = ROOT / "configs" / "pretrain" / "mnist_fast.yaml"
# One epoch in batches of 64 (32 steps; the config's 256 would give 8, too few for the fast network to leave chance far
# behind: 0.63 accuracy measured).
TINY = ["data.train_size=2000", "data.test_size=500", "train.abstract_epochs=1", "train.concrete_epochs=1"]
TINY += ["train.abstract_batch_size=64"]
VARIANTS = ("plain", "round", "jump", "jump_all")
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    cmd = [sys.executable, str(ROOT / "scripts" / "pretrain.py"), "--config", str(FAST), "--out", str(out)]
    args = [*cmd, "--device", "cpu", "--set", *TINY]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_script_writes_every_artefact(run_dir):
    for name in ["config.yaml", "command.txt", "metrics.json", "fig2.png", "autoencoder.pt"]:
        assert (run_dir / name).is_file(), name
    for v in VARIANTS:
        assert (run_dir / f"fsae_{v}.pt").is_file()
    assert list(run_dir.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert "pretrain.py" in (run_dir / "command.txt").read_text()
    info = json.loads((run_dir / "run_info.json").read_text())  # provenance: every checkpoint written, by SHA-256
    names = [f"fsae_{v}.pt" for v in VARIANTS] + ["autoencoder.pt"]
    assert info["produced"] == {n: {"path": n, "sha256": sha256_file(run_dir / n)} for n in names}
    assert info["depends_on"] == {} and info["version"] and info["torch"] == torch.__version__
    # the resolved config round-trips through the typed loader
    cfg = load_config(PretrainConfig, run_dir / "config.yaml")
    assert cfg.data.train_size == 2000 and cfg.train.abstract_epochs == 1


def test_metrics_keys_and_values(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    keys = ["abstract/test_accuracy", "prototype/cycle_accuracy", "reference/class_mean_mse", "baseline_ae/test_mse"]
    keys += ["time/total_seconds"]
    for v in VARIANTS:
        keys += [f"concrete/{v}/test_{k}" for k in ("mse", "mae", "cosine")]
        keys += [f"feedback/{v}/T{t}/test_mse" for t in range(6)]
    missing = [k for k in keys if k not in m]
    assert not missing, missing
    assert m["abstract/test_accuracy"] > 0.7  # chance is 0.1; one epoch on 2,000 images gave 0.83
    for v in VARIANTS:
        assert 0 < m[f"concrete/{v}/test_mse"] < 0.2
        assert m[f"feedback/{v}/T0/test_mse"] == pytest.approx(m[f"concrete/{v}/test_mse"], rel=1e-4)
        fb = [m[f"feedback/{v}/T{t}/test_mse"] for t in range(6)]
        assert all(b <= a for a, b in zip(fb, fb[1:])), f"{v}: feedback is not monotone: {fb}"
    # round without jumps: feedback cannot change anything
    assert len({m[f"feedback/round/T{t}/test_mse"] for t in range(6)}) == 1
    # jump connections carry detail: even after 16 steps jump_all regenerates better than plain
    assert m["concrete/jump_all/test_mse"] < m["concrete/plain/test_mse"]


def test_checkpoints_load_and_regenerate_as_measured(run_dir):
    model = load_fsae(run_dir / "fsae_round.pt")
    assert model.config.round and model.checkpoint_meta["variant"] == "round"
    protos = model.generate_labels(torch.arange(10))
    assert protos.shape == (10, 1, 28, 28) and protos.min() >= 0 and protos.max() <= 1
    # The loaded checkpoint regenerates the run's own test split with the MSE its metrics.json records.
    cfg = load_config(PretrainConfig, run_dir / "config.yaml")
    _, _, x_test, _ = load_dataset(cfg.data, cfg.seed, cfg.model)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with torch.no_grad():
        mse = evaluate_variant(model, x_test, 0)[0]["test_mse"]
    assert mse == pytest.approx(metrics["concrete/round/test_mse"], rel=1e-5)
    ae = load_fsae(run_dir / "autoencoder.pt")
    assert ae.config.head == "linear" and ae.config.code_size == 10


def _tiny_cfg(**over) -> PretrainConfig:
    d = {
        "model": {"layers": [{"type": "conv", "out": 8, "kernel": 4, "stride": 2}, {"type": "linear", "out": 10}]},
        "data": {"train_size": 400, "test_size": 100},
        "train": {"abstract_epochs": 1, "concrete_epochs": 1, "batch_size": 64},
        "variants": [{"name": "plain"}, {"name": "jump_all", "jumps": "all"}],
        "feedback_steps": [0, 2],
        "baseline_ae": False,
        "device": "cpu",
    }
    d.update(over)
    return from_dict(PretrainConfig, d)


def test_same_seed_same_metrics(tmp_path):
    def run(name, seed):
        m = pretrain(_tiny_cfg(seed=seed), tmp_path / name)
        return {k: v for k, v in m.items() if not k.startswith("time/")}

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert a == b
    assert a != c


def test_bfloat16_training_is_mixed_precision_and_reproducible(tmp_path):
    """``train.precision: bfloat16`` runs the steps under autocast: other weights than float32's (it took effect), the
    same again for the same seed, the checkpoints float32, the metrics finite; an unknown precision is refused."""
    train = {"abstract_epochs": 1, "concrete_epochs": 1, "batch_size": 64}
    f32 = pretrain(_tiny_cfg(train=train), tmp_path / "f32")
    bf = [pretrain(_tiny_cfg(train=train | {"precision": "bfloat16"}), tmp_path / f"bf{i}") for i in range(2)]
    same = lambda m: {k: v for k, v in m.items() if not k.startswith("time/")}  # noqa: E731
    assert same(bf[0]) == same(bf[1]) != same(f32)
    assert all(math.isfinite(v) for v in same(bf[0]).values() if isinstance(v, float))
    weights = load_fsae(tmp_path / "bf0" / "fsae_plain.pt").state_dict()
    assert all(t.dtype == torch.float32 for t in weights.values())
    assert not torch.equal(
        weights["concrete.layers.0.weight"],
        load_fsae(tmp_path / "f32" / "fsae_plain.pt").state_dict()["concrete.layers.0.weight"],
    )
    with pytest.raises(ConfigError, match="precision must be one of"):
        _tiny_cfg(train=train | {"precision": "float16"})


@pytest.mark.parametrize("variant", [{"jumps": "all"}, {"round": True}])
def test_feedback_curve_on_the_first_test_images(variant):
    """``feedback_images``: the feedback curve is the whole evaluation's curve of those images (computed by hand
    from ``FSAE.regenerate``), the regeneration metrics still those of every image; an inert model (round, no jumps)
    gets F(x)'s MSE at every T."""
    torch.manual_seed(0)
    layers = [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)]
    model = FSAE(FSAEConfig(layers=layers, **variant)).double().eval()
    x = torch.rand(30, 1, 28, 28, dtype=torch.float64)
    full, curve_all = evaluate_variant(model, x, 3, batch_size=8)
    part, curve = evaluate_variant(model, x, 3, batch_size=8, feedback_images=13)
    for k in full:
        assert part[k] == pytest.approx(full[k], rel=1e-12)
    with torch.no_grad():  # real feedback passes, also for the inert model (whose evaluation skips them)
        outs = model.regenerate(x[:13], steps=3, trace=True)
    by_hand = [(outs[t] - x[:13]).pow(2).mean().item() for t in range(4)]
    assert curve == pytest.approx(by_hand, rel=1e-12)
    assert curve_all[0] == pytest.approx(full["test_mse"], rel=1e-12)
    assert (len(set(curve)) == 1) == model.feedback_is_inert
    assert evaluate_variant(model, x, 3, 8, feedback_images=1000)[1] == pytest.approx(curve_all, rel=1e-12)


def test_abstract_batch_size_sets_phase_one_batches_only(tmp_path, monkeypatch):
    """``train.abstract_batch_size`` is the abstract phase's batch size; the concrete phase keeps ``batch_size``."""
    from fsae import train as T

    sizes: dict[int, int] = {}
    batches = T._batches

    def recording(n, batch_size, generator):
        sizes[batch_size] = sizes.get(batch_size, 0) + 1
        return batches(n, batch_size, generator)

    monkeypatch.setattr(T, "_batches", recording)
    train = {"abstract_epochs": 2, "concrete_epochs": 1, "batch_size": 64, "abstract_batch_size": 100}
    pretrain(_tiny_cfg(train=train), tmp_path / "run")
    assert sizes == {100: 2, 64: 1}  # one call per epoch: two abstract epochs, one concrete
    with pytest.raises(ConfigError, match="abstract_batch_size must be >= 0"):
        _tiny_cfg(train={"abstract_batch_size": -1})


def test_class_mean_reference_by_hand():
    x_train = torch.tensor([[0.0, 0.0], [2.0, 2.0], [4.0, 6.0]]).view(3, 1, 1, 2)
    pred_train = torch.tensor([0, 0, 1])  # class 0 mean = (1, 1); class 1 mean = (4, 6)
    x_test = torch.tensor([[1.0, 2.0], [4.0, 4.0]]).view(2, 1, 1, 2)
    pred_test = torch.tensor([0, 1])
    # errors: (0, 1) and (0, -2) -> MSE = (0 + 1 + 0 + 4) / 4
    assert class_mean_reference(pred_train, x_train, pred_test, x_test) == pytest.approx(1.25)
    # an unseen class falls back to the overall mean image (2, 8/3)
    got = class_mean_reference(pred_train, x_train, torch.tensor([7]), x_test[:1])
    assert got == pytest.approx(((1 - 2) ** 2 + (2 - 8 / 3) ** 2) / 2)


def test_mnist_targets_by_hand():
    labels = np.array([0, 5, 7, 8])
    attrs = mnist_targets(np.zeros((4, 28, 28), np.uint8), labels, "attributes")
    assert attrs.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 0], [1, 1, 1]]
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 27, 0] = 255  # all ink in the bottom-left corner
    assert mnist_targets(img, np.array([1]), "center_of_mass").tolist() == [[1.0, 0.0]]


def test_image_metrics_by_hand():
    """Cosine over all pixels of an image (docs/DESIGN.md section 3.7), not per row: xhat = 2 x has cosine 1 even
    where a row is 0."""
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 1.0]]]])
    xhat = torch.stack([2 * x[0], torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])])
    m = image_metrics(x, xhat)
    torch.testing.assert_close(m["mse"], torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(m["mae"], torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(m["cosine"], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(m["psnr"], torch.tensor([10 * math.log10(4.0), 0.0]))


def _softmax(k: int = 10, head: str = "softmax", **kw) -> FSAEConfig:
    return FSAEConfig(layers=[LayerSpec("conv", 4, 4, 2), LayerSpec("linear", k)], head=head, **kw)


@pytest.mark.parametrize(
    ("model", "y", "expected"),
    [
        (_softmax(), torch.zeros(5, 3, dtype=torch.long),  # MNIST attributes with a softmax head
         "model.head softmax needs (N,) class indices, but the training labels are (5, 3) int64; set model.head"),
        (_softmax(), torch.tensor([0, 12, 3]),
         "the training labels go up to 12 but the model has 10 classes (the last layer's out); make it 13"),
        (_softmax(), torch.tensor([0, -1]), "the training labels include -1; class indices start at 0"),
        (_softmax(20, "groups", groups=[10, 10]), torch.tensor([[1, 2], [3, 10]]),
         "the training labels of group 1 go up to 10 but model.groups[1] is 10; make it 11 (and the last layer's"),
        (_softmax(3, "sigmoid"), torch.tensor([[0, 1, 2]]),
         "model.head sigmoid needs attributes in [0, 1], but the training labels range over 0..2; set model.head"),
        (_softmax(3, "linear"), torch.rand(5, 2),  # MNIST centre of mass (2 targets) with 3 outputs
         "model.head linear needs (N, 3) targets, but the training labels are (5, 2) float32; set the last layer's"),
    ],
)  # fmt: skip
def test_targets_that_do_not_fit_the_head_are_refused_in_one_line(model, y, expected):
    with pytest.raises(ConfigError) as err:
        check_targets(y, model)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    for fits, y_ok in [(_softmax(), torch.tensor([0, 9])), (_softmax(1, "linear"), torch.rand(4)),
                       (_softmax(3, "sigmoid"), torch.tensor([[0.0, 1.0, 0.5]]))]:  # fmt: skip
        check_targets(y_ok, fits)


def test_sigmoid_accuracy_reads_soft_attributes_as_the_prediction_does():
    """check_targets lets soft attributes train (0.9, 0.2): accuracy counts one as present above 0.5, as the sigmoid
    head predicts, not by truncating it to an integer."""
    model = FSAE(FSAEConfig((1, 4, 4), [LayerSpec("linear", 2)], head="sigmoid"))
    with torch.no_grad():
        model.abstract.layers[0].weight.zero_()
        model.abstract.layers[0].bias.copy_(torch.tensor([5.0, -5.0]))  # predicts attribute 0 present, 1 absent
    x = torch.rand(3, 1, 4, 4)
    m = evaluate_abstract(model, x, torch.tensor([[0.9, 0.2], [0.99, 0.7], [0.4, 0.0]]))
    assert m["test_accuracy_attr0"] == pytest.approx(2 / 3) and m["test_accuracy_attr1"] == pytest.approx(2 / 3)
    assert m["test_accuracy"] == pytest.approx(4 / 6) and m["test_exact_match"] == pytest.approx(1 / 3)


def test_int32_task_labels_and_a_test_set_with_some_classes(tmp_path, monkeypatch):
    """int32 labels train (cross-entropy takes int64 only), and with only classes 3 and 7 in the test set Fig. 2's
    prototype row shows the prototypes of 3 and 7 under their test images, not those of 0 and 1."""
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)  # noqa: E731
    np.savez(tmp_path / "train.npz", obs=images(200), labels=(np.arange(200) % 10).astype(np.int32))
    np.savez(tmp_path / "test.npz", obs=images(6), labels=np.array([7, 3, 7, 3, 3, 7], np.int32))
    data = {"source": str(tmp_path / "train.npz"), "test_source": str(tmp_path / "test.npz")}
    x_train, y_train, x_test, y_test = load_dataset(from_dict(DataConfig, data), 0, _softmax())
    assert y_train.dtype == y_test.dtype == torch.int64 and y_test.tolist() == [7, 3, 7, 3, 3, 7]

    drawn = {}
    monkeypatch.setattr(P, "save_fig2", lambda path, rows, titles: drawn.update(rows=rows, titles=titles))
    cfg = _tiny_cfg(data=data, variants=[{"name": "plain"}], feedback_steps=[0])
    pretrain(cfg, tmp_path / "run")
    rows = drawn["rows"]
    assert torch.equal(rows["input"], x_test[[1, 0]])  # columns in class order: the first 3, then the first 7
    with torch.no_grad():
        expected = load_fsae(tmp_path / "run" / "fsae_plain.pt").generate_labels(torch.tensor([3, 7]))
    torch.testing.assert_close(rows["prototype"], expected)


def test_task_data_of_four_channels_pretrains_to_the_end(tmp_path):
    """Images of a channel count TensorBoard cannot draw (RGBA, a frame stack, feature planes) train, save every
    checkpoint and draw the figure: each image's channels side by side as one grey image (``viewable``), exactly."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgba.npz", obs=rng.integers(0, 256, (60, 4, 12, 12), dtype=np.uint8), labels=np.arange(60) % 3)
    model = {"input_shape": [4, 12, 12], "layers": [{"type": "conv", "out": 6, "kernel": 4, "stride": 2},
                                                    {"type": "linear", "out": 3}]}  # fmt: skip
    cfg = _tiny_cfg(model=model, data={"source": str(tmp_path / "rgba.npz"), "test_fraction": 0.25}, baseline_ae=True)
    pretrain(cfg, tmp_path / "run")
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"fsae_plain.pt", "fsae_jump_all.pt", "autoencoder.pt", "fig2.png", "metrics.json"} <= names
    x = torch.arange(2 * 4 * 2 * 3.0).view(2, 4, 2, 3)
    side = viewable(x)
    assert side.shape == (2, 1, 2, 12) and torch.equal(side[1, 0, :, 6:9], x[1, 2])  # channel 2 in columns 6-8
    assert torch.equal(viewable(x[:, :3]), x[:, :3]) and torch.equal(
        viewable(x[:, :1]), x[:, :1]
    )  # RGB, grey as they are


def test_the_head_decides_how_task_labels_are_read(tmp_path):
    """Float labels keep their dtype in the file; a class head reads whole-number floats as class indices and refuses
    fractional ones in one line, a linear head reads integer labels as values."""
    obs = np.zeros((40, 1, 28, 28), np.uint8)
    np.savez(tmp_path / "whole.npz", obs=obs, labels=np.stack([np.arange(40) % 3, np.arange(40) % 2], 1) * 1.0)
    np.savez(tmp_path / "frac.npz", obs=obs, labels=np.full((40, 2), 0.25, np.float32))
    groups = _softmax(5, "groups", groups=[3, 2])
    data = {"source": str(tmp_path / "whole.npz"), "test_fraction": 0.25}
    y_train, y_test = load_dataset(from_dict(DataConfig, data), 0, groups)[1::2]
    assert y_train.dtype == y_test.dtype == torch.int64 and sorted(set(y_train[:, 0].tolist())) == [0, 1, 2]
    y_linear = load_dataset(from_dict(DataConfig, data), 0, _softmax(2, "linear"))[1]
    assert y_linear.dtype == torch.float64 and torch.equal(y_linear, y_train.double())  # the file's float64, as is
    with pytest.raises(ConfigError) as err:
        load_dataset(from_dict(DataConfig, {**data, "source": str(tmp_path / "frac.npz")}), 0, groups)
    assert str(err.value) == (
        "model.head groups needs class indices, but the training labels are float32 with fractional values "
        "(e.g. 0.25); use head linear for regression targets, or collect integer labels"
    )


def test_scale_targets_by_hand():
    y_train = torch.tensor([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]])
    y_test = torch.tensor([[1.0, 12.0]])
    tr, te, rec = P.scale_targets(y_train, y_test, "minmax")
    assert tr.tolist() == [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]] and te.tolist() == [[0.25, 2.0]]  # constant: scale 1
    assert rec == {"data/target_offset_0": 0.0, "data/target_offset_1": 10.0, "data/target_scale_0": 4.0,
                   "data/target_scale_1": 1.0}  # fmt: skip
    tr, te, rec = P.scale_targets(y_train, y_test, "standard")
    std = math.sqrt(8 / 3)  # population std of 0, 2, 4
    torch.testing.assert_close(tr[:, 0], torch.tensor([-2 / std, 0.0, 2 / std]))
    torch.testing.assert_close(te, torch.tensor([[-1 / std, 2.0]]))
    assert P.scale_targets(y_train, y_test, "none") == (y_train, y_test, {})
    with pytest.raises(ConfigError, match="target_scale 'minmax' rescales regression targets: it needs model.head"):
        _tiny_cfg(data={"target_scale": "minmax"})


def test_linear_head_regression_metrics_per_target_and_the_grid_reference(tmp_path):
    """A linear head on float task data: R^2 per target, the scaling recorded, and for a code rounded to a grid the
    class-mean reference over the grid's cells."""
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (300, 1, 28, 28), dtype=np.uint8)
    labels = np.stack([obs[:, 0, :14].mean((1, 2)), obs[:, 0, 14:].mean((1, 2))], 1).astype(np.float32)
    np.savez(tmp_path / "reg.npz", obs=obs, labels=labels)
    model = {"layers": [{"type": "conv", "out": 8, "kernel": 4, "stride": 2}, {"type": "linear", "out": 2}],
             "head": "linear", "round_grid": 0.5}  # fmt: skip
    cfg = _tiny_cfg(model=model, data={"source": str(tmp_path / "reg.npz"), "target_scale": "standard"},
                    variants=[{"name": "round", "round": True}], feedback_steps=[0])  # fmt: skip
    m = pretrain(cfg, tmp_path / "run")
    assert {"abstract/test_r2_0", "abstract/test_r2_1", "abstract/test_r2", "reference/class_mean_mse"} <= set(m)
    assert m["abstract/test_r2"] == pytest.approx((m["abstract/test_r2_0"] + m["abstract/test_r2_1"]) / 2)
    perm = np.random.default_rng(0).permutation(300)[30:]  # the training samples (test_fraction 0.1, seed 0)
    assert m["data/target_offset_1"] == pytest.approx(labels[perm, 1].mean(), rel=1e-5)
    assert m["data/target_scale_0"] == pytest.approx(labels[perm, 0].std(), rel=1e-4)
    # the reference by hand: mean training image per grid cell of the predicted (scaled) code
    base = load_fsae(tmp_path / "run" / "fsae_round.pt")
    x_train, _, x_test, _ = load_dataset(cfg.data, 0, base.config)
    cells = [torch.round(predict(base, x, 1000) / 0.5).long() for x in (x_train, x_test)]
    assert m["reference/class_mean_mse"] == pytest.approx(class_mean_reference(cells[0], x_train, cells[1], x_test))
