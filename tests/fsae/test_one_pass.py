"""The concrete phase in one pass (``fsae.train.train_concretes``): each variant gets the abstract inputs, and with
them the updates, that training it alone on the same batches gives, bit for bit; the round variant's shortcut (its
concrete half run once per distinct code) gives the same loss and gradients to float precision."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fsae import train as T
from fsae.model import FSAE, ConcreteNet, FSAEConfig, LayerSpec
from fsae.pretrain_config import baseline_config

LAYERS = [LayerSpec("conv", 4, 4, 2), LayerSpec("conv", 6, 3, 2), LayerSpec("linear", 12), LayerSpec("linear", 10)]
VARIANTS = {"plain": {}, "round": {"round": True}, "jump": {"jumps": "last"}, "jump_all": {"jumps": "all"}}


def _setup(seed: int = 0) -> tuple[dict[str, FSAE], FSAE, torch.Tensor]:
    """Four variants on one (random, frozen) abstract network, an autoencoder, and 300 images."""
    torch.manual_seed(seed)
    base = FSAEConfig(layers=LAYERS)
    abstract = FSAE(base).abstract.state_dict()
    models = {}
    for name, kw in VARIANTS.items():
        models[name] = FSAE(FSAEConfig(layers=LAYERS, **kw))
        models[name].abstract.load_state_dict(abstract)
    x = torch.rand(300, 1, 28, 28)
    return models, FSAE(baseline_config(base)), x


def _record_concrete_inputs(monkeypatch) -> dict[int, list[tuple[torch.Tensor, list[torch.Tensor] | None]]]:
    """Every (code, abstract activations) a concrete network is run on, keyed by the network's id."""
    seen: dict[int, list] = {}
    forward = ConcreteNet.forward

    def recording(self, code, hs=None, jumps=()):
        if self.training:  # the training steps, not the initialisation
            seen.setdefault(id(self), []).append((code.clone(), None if hs is None else [h.clone() for h in hs]))
        return forward(self, code, hs, jumps)

    monkeypatch.setattr(ConcreteNet, "forward", recording)
    return seen


def test_one_pass_gives_each_variant_the_inputs_and_updates_of_separate_training(monkeypatch):
    """The one pass against each variant (and the autoencoder) trained alone from the same generator state, so on the
    same batches: the same abstract activations and codes at every step, and the same weights at the end."""
    cfg = T.TrainConfig(concrete_epochs=2, batch_size=64, concrete_lr=3e-3, baseline_lr=1e-3)
    models, ae, x = _setup()
    alone, ae_alone = copy.deepcopy(models), copy.deepcopy(ae)
    seen = _record_concrete_inputs(monkeypatch)

    history = T.train_concretes(models, x, cfg, torch.Generator().manual_seed(5), autoencoder=ae, dedupe=False)
    for m in alone.values():
        T.train_concrete(m, x, cfg, torch.Generator().manual_seed(5))
    T.train_autoencoder(ae_alone, x, cfg, torch.Generator().manual_seed(5))

    assert list(history) == [*VARIANTS, "baseline_ae"] and all(len(h) == 2 for h in history.values())
    for name in VARIANTS:
        one, two = seen[id(models[name].concrete)], seen[id(alone[name].concrete)]
        assert len(one) == len(two) == 2 * 5  # 2 epochs of 5 batches
        for (code_1, hs_1), (code_2, hs_2) in zip(one, two):
            assert torch.equal(code_1, code_2)
            assert len(hs_1) == len(hs_2) == len(LAYERS) + 1 and all(map(torch.equal, hs_1, hs_2))
        for (k, a), b in zip(models[name].state_dict().items(), alone[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}: {k}"
    assert all(torch.equal(a, b) for a, b in zip(ae.state_dict().values(), ae_alone.state_dict().values()))
    assert not any(torch.equal(a, b) for a, b in zip(ae.abstract.state_dict().values(),
                                                     models["plain"].abstract.state_dict().values()))  # fmt: skip


def test_rounded_variant_runs_its_concrete_half_once_per_code():
    """With ``dedupe`` the round variant regenerates the batch's distinct codes only: the loss and the gradients are
    those of the whole batch, to float precision."""
    models, _, x = _setup()
    model = models["round"]
    with torch.no_grad():  # larger weights: random images fall into several classes
        for p in model.abstract.parameters():
            p.mul_(4.0)
    model.freeze_abstract()
    model.train()
    with torch.no_grad():
        _, hs = model.abstract(x[:64])
    code = model.round_code(hs[-1])
    codes, rows = torch.unique(code, dim=0, return_inverse=True)
    assert 1 < len(codes) < 64
    losses, grads = [], []
    for out in (lambda: model.concrete(code), lambda: model.concrete(codes)[rows]):
        model.zero_grad()
        loss = F.mse_loss(out(), x[:64])
        loss.backward()
        losses.append(loss.item())
        grads.append([p.grad.clone() for p in model.concrete.parameters()])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for g_all, g_codes in zip(*grads):
        torch.testing.assert_close(g_codes, g_all, rtol=1e-4, atol=1e-7)


def test_train_concretes_with_dedupe_trains_as_without_it():
    """The library's shortcut itself (``train_concretes(dedupe=True)``, the default) against the plain pass from the
    same generator: the same losses and weights to float precision for the round variant, bit for bit for the others
    (the shortcut is taken only by a network whose output depends on the rounded code alone)."""
    models, _, x = _setup()
    for m in models.values():  # larger abstract weights: random images fall into several classes
        with torch.no_grad():
            for p in m.abstract.parameters():
                p.mul_(4.0)
    cfg = T.TrainConfig(concrete_epochs=1, batch_size=64, concrete_lr=3e-3)
    twin = copy.deepcopy(models)
    with_dedupe = T.train_concretes(models, x, cfg, torch.Generator().manual_seed(5), dedupe=True)
    without = T.train_concretes(twin, x, cfg, torch.Generator().manual_seed(5), dedupe=False)
    for name in VARIANTS:
        exact = name != "round"
        assert (with_dedupe[name] == without[name]) if exact else with_dedupe[name] == pytest.approx(without[name])
        for a, b in zip(models[name].concrete.parameters(), twin[name].concrete.parameters()):
            if exact:
                assert torch.equal(a, b), name
            else:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_one_pass_refuses_variants_on_different_abstract_networks():
    models, _, x = _setup()
    with torch.no_grad():
        models["jump"].abstract.layers[0].weight.add_(1e-3)
    with pytest.raises(ValueError, match="variant 'jump' has another abstract network"):
        T.train_concretes(models, x, T.TrainConfig(concrete_epochs=1), torch.Generator())
