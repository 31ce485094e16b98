"""The phases of a pretraining run, each a function that trains (or loads, when resuming) and returns its metrics.

Contents:
    Run                -- what every phase needs: the config, device, generator, TensorBoard, the resumable state
                          and the data on the device.
    abstract_phase     -- phase 1: the abstract network, supervised; its test metrics.
    concrete_phase     -- phase 2: every variant's concrete network (and the conventional autoencoder when it trains
                          as many epochs) in one pass over the batches (``fsae.train.train_concretes``).
    baseline_phase     -- the autoencoder on its own, when its epochs differ from the concrete ones.
    variant_metrics    -- a variant's regeneration metrics and its MSE after each number of feedback steps.
    prototype_metrics  -- the concrete network's image of each label, and whether the abstract network names it.

A stage is trained by ``TrainingState.run``: saved after every epoch, loaded instead of trained when a resumed run
finished it. ``on_epoch`` hooks let the caller follow the epochs (``fsae.pretrain`` prints its time estimate there).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from fsae import train as T
from fsae.evaluate import evaluate_abstract, evaluate_regeneration, evaluate_variant
from fsae.figures import label_grid, viewable
from fsae.model import FSAE
from fsae.pretrain_config import PretrainConfig, baseline_config, variant_config
from fsae.resume import TrainingState
from fsae.runtime import place

EpochHook = Callable[[str, int, float], None]  # (stage, epochs finished, seconds since the stage started)


@dataclass
class Run:
    """A pretraining run in progress: what the phases share."""

    cfg: PretrainConfig
    device: torch.device
    generator: torch.Generator
    writer: SummaryWriter
    state: TrainingState
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    on_epoch: EpochHook | None = None
    started: dict[str, float] = field(default_factory=dict)

    def log(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def place(self, model: FSAE) -> FSAE:
        """``model`` on the run's device, in channels-last layout on a CPU (``fsae.runtime.place``)."""
        return place(model, self.device)

    def stage(self, name: str, model: torch.nn.Module, train: Callable[..., Any]) -> torch.nn.Module:
        """``TrainingState.run`` with this run's generator, calling ``on_epoch`` after each saved epoch."""
        self.started[name] = time.time()

        def train_and_report(m: torch.nn.Module, resume: Any, on_epoch: Callable[[dict], None]) -> Any:
            def saved(fit_state: dict) -> None:
                on_epoch(fit_state)
                if self.on_epoch is not None:
                    self.on_epoch(name, len(fit_state["history"]), time.time() - self.started[name])

            return train(m, resume=resume, on_epoch=saved)

        return self.state.run(name, model, train_and_report, self.generator)

    @property
    def baseline_in_one_pass(self) -> bool:
        return baseline_in_one_pass(self.cfg)


def baseline_in_one_pass(cfg: PretrainConfig) -> bool:
    """The autoencoder trains in the variants' pass when it trains for as many epochs (``baseline_epochs`` 0)."""
    t = cfg.train
    return cfg.baseline_ae and bool(cfg.variants) and t.baseline_epochs in (0, t.concrete_epochs)


def abstract_phase(run: Run) -> tuple[FSAE, dict[str, float]]:
    """Phase 1: train (or load) the abstract network; return it, frozen, and its test metrics."""
    t0, cfg = time.time(), run.cfg
    base = run.stage(
        "abstract",
        run.place(FSAE(cfg.model)),
        lambda m, **kw: T.train_abstract(m, run.x_train, run.y_train, cfg.train, run.generator, run.log, **kw),
    )
    metrics = {}
    for k, v in evaluate_abstract(base, run.x_test, run.y_test, cfg.train.eval_batch_size).items():
        metrics[f"abstract/{k}"] = v
        run.writer.add_scalar(f"eval/abstract_{k}", v, 0)
    base.freeze_abstract()
    metrics["time/abstract_seconds"] = time.time() - t0
    return base, metrics


def concrete_phase(run: Run, base: FSAE) -> tuple[dict[str, FSAE], FSAE | None, dict[str, float]]:
    """Phase 2: a concrete network per variant on ``base``'s frozen abstract network, all in one pass over the
    batches, with the autoencoder when it trains as long (``Run.baseline_in_one_pass``). Returns the variants, the
    autoencoder (None when it trains apart or not at all) and the training time."""
    t0, cfg = time.time(), run.cfg
    abstract_state = copy.deepcopy(base.abstract.state_dict())
    models = {}
    for v in cfg.variants:
        models[v.name] = run.place(FSAE(variant_config(cfg.model, v, cfg.feedback_gain)))
        models[v.name].abstract.load_state_dict(abstract_state)
    ae = run.place(FSAE(baseline_config(cfg.model))) if run.baseline_in_one_pass else None
    nets = torch.nn.ModuleDict(models | ({"baseline_ae": ae} if ae is not None else {}))

    def train(m: torch.nn.ModuleDict, **kw: Any) -> Any:
        variants = {k: n for k, n in m.items() if k != "baseline_ae"}
        autoencoder = m["baseline_ae"] if "baseline_ae" in m else None
        return T.train_concretes(variants, run.x_train, cfg.train, run.generator, run.log, autoencoder, **kw)

    if models:
        run.stage("concrete", nets, train)
    for m in models.values():
        assert all(torch.equal(a, b) for a, b in zip(m.abstract.state_dict().values(), abstract_state.values()))
        m.eval()
    return models, ae, {"time/concrete_seconds": time.time() - t0}


def baseline_phase(run: Run) -> FSAE:
    """The conventional autoencoder on its own (its ``baseline_epochs`` differ from the concrete phase's)."""
    cfg = run.cfg
    ae = run.place(FSAE(baseline_config(cfg.model)))
    train = lambda m, **kw: T.train_autoencoder(m, run.x_train, cfg.train, run.generator, run.log, **kw)  # noqa: E731
    return run.stage("baseline_ae", ae, train)


def variant_metrics(run: Run, name: str, model: FSAE) -> dict[str, float]:
    """``concrete/<name>/test_*`` (MSE, MAE, cosine, PSNR) and ``feedback/<name>/T<t>/test_mse`` for each configured
    number of feedback steps, from one traced regeneration per test batch."""
    cfg = run.cfg
    steps = max(cfg.feedback_steps, default=0)
    regen, feedback = evaluate_variant(model, run.x_test, steps, cfg.train.eval_batch_size, cfg.feedback_test_images)
    metrics = {f"concrete/{name}/{k}": v for k, v in regen.items()}
    for t in cfg.feedback_steps:
        metrics[f"feedback/{name}/T{t}/test_mse"] = feedback[t]
        run.writer.add_scalar(f"eval/feedback_mse/{name}", feedback[t], t)
    run.writer.add_scalar(f"eval/concrete_mse/{name}", metrics[f"concrete/{name}/test_mse"], 0)
    return metrics


def autoencoder_metrics(run: Run, ae: FSAE) -> dict[str, float]:
    """``baseline_ae/test_*``: the conventional autoencoder's regeneration metrics."""
    regen = evaluate_regeneration(ae.eval(), run.x_test, run.cfg.train.eval_batch_size)
    return {f"baseline_ae/{k}": v for k, v in regen.items()}


@torch.no_grad()
def prototype_metrics(run: Run, base: FSAE, models: dict[str, FSAE]) -> tuple[dict[str, Any], torch.Tensor | None]:
    """The concrete network's image of every label (of the first round variant, else the first variant) and the
    "cycle accuracy": the fraction the abstract network classifies back as their label. Returns the metrics and the
    prototypes (None for heads without a finite label set)."""
    labels = label_grid(base)
    if labels is None or not models:
        return {}, None
    name = next((v.name for v in run.cfg.variants if v.round), run.cfg.variants[0].name)
    protos = models[name].eval().generate_labels(labels.to(run.device))
    again = models[name].classify(protos).view(len(labels), -1).cpu()
    run.writer.add_images("images/prototypes", viewable(protos[:100]), 0)
    cycle = (again == labels.view(len(labels), -1)).all(1).float().mean().item()
    return {"prototype/cycle_accuracy": cycle, "prototype/generator": name}, protos
