"""The paper's experiment end to end: train the abstract half, freeze it, train a concrete half per variant, measure.

Contents:
    pretrain -- the whole run into a folder: checkpoints, TensorBoard, ``fig2.png``, ``metrics.json``, ``run_info.json``
                (provenance and the checkpoints' SHA-256); returns the metrics. Resumable after a kill
                (``resume=True``): ``train_state.pt`` is saved after every epoch (``fsae.resume``).

The pieces: the config (``fsae.pretrain_config``), the data and targets (``fsae.targets``), the run folder
(``fsae.run_folder``), the phases (``fsae.phases``: abstract, then every variant and the conventional autoencoder in
one pass over the batches), the measurements (``fsae.evaluate``) and the figure (``fsae.figures``). Their public names
that the tests use are importable from here too (``__all__``).

Metric keys (``metrics.json``): ``abstract/test_accuracy`` (and ``_group<i>`` per group) or ``abstract/test_r2`` (and
``_<i>`` per target), ``concrete/<variant>/test_mse`` (``_mae``, ``_cosine``, ``_psnr``),
``feedback/<variant>/T<t>/test_mse``, ``prototype/cycle_accuracy``, ``reference/class_mean_mse`` (class heads, and a
linear head rounded to ``model.round_grid``: the cells of the grid are its classes), ``baseline_ae/test_mse``,
``data/target_offset_<i>`` and ``data/target_scale_<i>`` (``data.target_scale``); ``time/abstract_seconds``
(training and evaluating the abstract network), ``time/concrete_seconds`` (training every variant, and the autoencoder
when it trains in the same pass), ``time/baseline_ae_seconds`` (training it apart), ``time/evaluation_seconds`` (the
variants' and the autoencoder's metrics, the references, the figure), ``time/total_seconds``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from fsae.checkpoint import atomic_write_json, save_fsae
from fsae.config import ConfigError, to_dict
from fsae.evaluate import class_mean_reference, predict
from fsae.figures import fig2_columns, prediction_titles, save_fig2, viewable
from fsae.phases import (
    Run,
    abstract_phase,
    autoencoder_metrics,
    baseline_in_one_pass,
    baseline_phase,
    concrete_phase,
    prototype_metrics,
    variant_metrics,
)
from fsae.pretrain_config import PretrainConfig, VariantConfig, baseline_config, default_variants, variant_config
from fsae.provenance import write_run_info
from fsae.resume import TrainingState
from fsae.run_folder import check_folder, removed_on_failure, start_run
from fsae.targets import DataConfig, check_targets, load_dataset, mnist_targets, scale_targets
from fsae.task_data import task_data_origin

__all__ = [
    "DataConfig",
    "PretrainConfig",
    "VariantConfig",
    "baseline_config",
    "check_targets",
    "class_mean_reference",
    "default_variants",
    "load_dataset",
    "mnist_targets",
    "pretrain",
    "scale_targets",
    "start_run",
    "variant_config",
]

FAST_CONFIG = "configs/pretrain/mnist_fast.yaml"
# A one-pass concrete epoch costs about this many abstract epochs on the CPU: the shared abstract pass, and per network
# trained in it (a variant, one whose output depends on its rounded code alone, the autoencoder); the ratios of their
# training steps to an abstract one, fast config (its 32/64 network before 3120cb9; the narrower one's concrete
# epoch costs relatively more, so the first estimate runs low for it), batch 128, channels-last, one thread
# (docs/PERFORMANCE.md). The basis of the estimate printed after the first abstract epoch; the one after the first
# concrete epoch measures it.
CONCRETE_EPOCH_COST = {"shared": 0.3, "variant": 2.3, "rounded": 0.35, "autoencoder": 3.4}


def pretrain(
    cfg: PretrainConfig, run_dir: str | Path, command: str | None = None, resume: bool = False
) -> dict[str, Any]:
    """Run the whole experiment into ``run_dir``; return (and write) ``metrics.json``'s dict.

    With ``resume``, continue the run that ``run_dir`` holds from its ``train_state.pt``: the same config is required,
    but for the settings that do not change training (``fsae.resume.MAY_DIFFER``: device, threads, where MNIST is,
    the evaluation's batch size and feedback steps). A run that fails before its first epoch is saved leaves no
    folder behind (``fsae.run_folder.removed_on_failure``).
    """
    t_start = time.time()
    run_dir = Path(run_dir)
    check_folder(run_dir, resume)
    state = TrainingState(run_dir, to_dict(cfg), resume)  # refuses a folder that holds another run's state
    if resume:  # keep the first command, add this one
        previous = (run_dir / "command.txt").read_text() if (run_dir / "command.txt").is_file() else ""
        command = previous + "# resumed:\n" + (command or " ".join(sys.argv))
    with removed_on_failure(run_dir):
        device, gen, writer = start_run(cfg, run_dir, command)
        try:  # the TensorBoard writer is closed however the run ends (a non-finite loss, missing data, Ctrl-C)
            data = [t.to(device) for t in load_dataset(cfg.data, cfg.seed, cfg.model)]
            if tuple(data[0].shape[1:]) != tuple(cfg.model.input_shape):
                raise ConfigError(
                    f"data images are {tuple(data[0].shape[1:])} but model.input_shape is "
                    f"{tuple(cfg.model.input_shape)}; set model.input_shape to match (and the layers to fit it)"
                )
            data[1], data[3], scaling = scale_targets(data[1], data[3], cfg.data.target_scale)
            run = Run(cfg, device, gen, writer, state, *data, on_epoch=_estimate(cfg, device, t_start))
            metrics = scaling | _phases(run, run_dir)
            metrics["time/total_seconds"] = time.time() - t_start
            metrics["device"] = str(device)
            for k, val in metrics.items():
                if isinstance(val, float):
                    writer.add_scalar(f"final/{k}", val, 0)
            writer.close()  # events on disk before metrics.json marks the run finished (closing twice is harmless)
            atomic_write_json(run_dir / "metrics.json", metrics)  # a run with metrics.json is finished
            state.remove()  # the run is complete: everything it would resume is on disk
            return metrics
        finally:
            writer.close()


def _phases(run: Run, run_dir: Path) -> dict[str, Any]:
    """Train, measure and save: the body of ``pretrain``."""
    cfg, x_test = run.cfg, run.x_test
    base, metrics = abstract_phase(run)
    models, ae, timing = concrete_phase(run, base)
    metrics |= timing
    if cfg.baseline_ae and ae is None:
        t0 = time.time()
        ae = baseline_phase(run)
        metrics["time/baseline_ae_seconds"] = time.time() - t0

    t0, bs = time.time(), cfg.train.eval_batch_size
    if cfg.model.head in ("softmax", "groups", "sigmoid"):
        pred_train, pred_test = predict(base, run.x_train, bs), predict(base, x_test, bs)
        metrics["reference/class_mean_mse"] = class_mean_reference(pred_train, run.x_train, pred_test, x_test)
    elif cfg.model.round_grid > 0:  # a linear code rounded to a grid: each grid cell is a "class"
        cells = [torch.round(predict(base, x, bs) / cfg.model.round_grid).long() for x in (run.x_train, x_test)]
        metrics["reference/class_mean_mse"] = class_mean_reference(cells[0], run.x_train, cells[1], x_test)
    show, classes = fig2_columns(run.y_test, cfg.model.head, cfg.model.code_size)
    fig_rows = {"input": x_test[show]}
    run.writer.add_images("images/input", viewable(x_test[show]), 0)
    steps = max(cfg.feedback_steps, default=0)
    if models:
        metrics["feedback/test_images"] = min(cfg.feedback_test_images or len(x_test), len(x_test))
    data = {"source": cfg.data.source, **(task_data_origin(cfg.data.source) if cfg.data.source != "mnist" else {})}
    for name, model in models.items():
        metrics |= variant_metrics(run, name, model)
        # Saved before any figure is drawn: a figure that fails loses nothing.
        save_fsae(run_dir / f"fsae_{name}.pt", model.cpu(), variant=name, name=cfg.name, seed=cfg.seed, data=data,
                  test_mse=metrics[f"concrete/{name}/test_mse"])  # fmt: skip
        models[name] = model = run.place(model)
        with torch.no_grad():
            fig_rows[name] = model(x_test[show])
            if steps:
                fig_rows[f"{name}+fb{steps}"] = model.regenerate(x_test[show], steps=steps)
        run.writer.add_images(f"images/{name}", viewable(fig_rows[name]), 0)
    protos_metrics, protos = prototype_metrics(run, base, models)
    metrics |= protos_metrics
    if protos is not None and cfg.model.head == "softmax":  # label_grid is 0..K-1: protos[c] is class c's prototype
        fig_rows["prototype"] = protos[torch.tensor(classes, device=protos.device)]
    if ae is not None:
        metrics |= autoencoder_metrics(run, ae)
        save_fsae(run_dir / "autoencoder.pt", ae.cpu(), variant="autoencoder", name=cfg.name, seed=cfg.seed,
                  data=data, test_mse=metrics["baseline_ae/test_mse"])  # fmt: skip
        ae = run.place(ae)
        with torch.no_grad():
            fig_rows["autoencoder"] = ae(x_test[show])
    with torch.no_grad():
        titles = prediction_titles(base.eval().classify(x_test[show]))
    save_fig2(run_dir / "fig2.png", {k: v[: len(show)] for k, v in fig_rows.items()}, titles)
    names = [f"fsae_{v.name}.pt" for v in cfg.variants] + ["autoencoder.pt"] * cfg.baseline_ae
    write_run_info(run_dir, produced={n: run_dir / n for n in names})  # after writing them: it records SHA-256s
    metrics["time/evaluation_seconds"] = time.time() - t0
    return metrics


def _estimate(cfg: PretrainConfig, device: torch.device, t_start: float):
    """The hook that prints, after the first epoch of the abstract and of the concrete phase, how long the whole run
    should take (from the epoch's time and ``CONCRETE_EPOCH_COST``), with the hint to use the fast config on a CPU."""
    t = cfg.train
    rounded = sum(1 for v in cfg.variants if v.round and v.jumps in ([], "none"))
    in_pass = baseline_in_one_pass(cfg)
    cost = CONCRETE_EPOCH_COST
    per_concrete = cost["shared"] * bool(cfg.variants) + cost["variant"] * (len(cfg.variants) - rounded)
    per_concrete += cost["rounded"] * rounded
    per_concrete += cost["autoencoder"] * in_pass
    apart = cost["autoencoder"] * (t.baseline_epochs or t.concrete_epochs) * (cfg.baseline_ae and not in_pass)

    def hook(stage: str, epochs_done: int, seconds: float) -> None:
        if epochs_done != 1 or stage not in ("abstract", "concrete"):
            return
        if stage == "abstract":
            unit = seconds  # one abstract epoch
            left = unit * (t.abstract_epochs - 1 + per_concrete * t.concrete_epochs + apart)
        else:
            unit = seconds / max(per_concrete, 1e-9)
            left = seconds * (t.concrete_epochs - 1) + unit * apart
        total = time.time() - t_start + 1.1 * left  # and about a tenth more for the evaluation
        hint = ""
        if device.type == "cpu" and total > 600 and cfg.name != "mnist_fast":
            hint = f"; on a CPU, {FAST_CONFIG} trains the same variants on a cheaper architecture in about a minute"
        print(f"\n{stage} epoch 1 took {seconds:.1f} s: the whole run should take about {_minutes(total)}{hint}",
              flush=True)  # fmt: skip

    return hook


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
