"""Every YAML the project ships under configs/ loads into its typed config and builds what it describes.

A typo in a shipped config (a renamed key, a sweep pointing at a missing agent config, two sweep runs sharing a folder)
should fail here, not an hour into a run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fsae.config import load_config
from fsae.model import FSAE
from fsae.pretrain import PretrainConfig, variant_config
from rl.agent import AgentConfig, check_hyperparams, policy_kwargs
from rl.sweep import load_sweep, plan

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _yamls(folder: str) -> list[Path]:
    paths = sorted((CONFIGS / folder).glob("*.yaml"))
    assert paths, f"no configs under configs/{folder}"
    return paths


def _id(path: Path) -> str:
    return path.stem


def test_every_config_folder_is_covered():
    """A new folder of configs needs its own test below."""
    assert sorted(p.name for p in CONFIGS.iterdir() if p.is_dir()) == ["agent", "pretrain", "sweeps"]


@pytest.mark.parametrize("path", _yamls("pretrain"), ids=_id)
def test_pretrain_config_builds_every_variant(path: Path):
    cfg = load_config(PretrainConfig, path)
    x = torch.zeros(2, *cfg.model.input_shape)
    _, hs = FSAE(cfg.model).abstract(x)
    assert hs[-1].shape == (2, cfg.model.code_size)
    for v in cfg.variants:
        model = FSAE(variant_config(cfg.model, v, cfg.feedback_gain))
        with torch.no_grad():
            assert model.regenerate(x).shape == x.shape, f"variant '{v.name}'"


@pytest.mark.parametrize("path", _yamls("agent"), ids=_id)
def test_agent_config_loads(path: Path):
    cfg = load_config(AgentConfig, path)
    check_hyperparams(cfg)
    assert policy_kwargs(cfg)["features_extractor_kwargs"]["features_dim"] == cfg.policy.features_dim
    assert cfg.condition == "none", "shipped agent configs train the raw agent; conditions come from --augment"


@pytest.mark.parametrize("path", _yamls("sweeps"), ids=_id)
def test_sweep_config_plans(path: Path):
    cfg = load_sweep(path)
    runs = plan(cfg, check_files=False)  # the checkpoints are made by pretraining runs, not shipped
    assert len(runs) == len(cfg.envs) * len(cfg.conditions) * len(cfg.seeds)
    assert len({r.run_dir for r in runs}) == len(runs)
    for env in cfg.envs:
        assert (ROOT / env.config).is_file(), f"{env.config} does not exist"
