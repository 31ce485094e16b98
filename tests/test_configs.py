"""Every YAML the project ships under configs/ loads into its typed config and builds what it describes.

A typo in a shipped config (a renamed key, a sweep pointing at a missing agent config, two sweep runs sharing a folder)
should fail here, not an hour into a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from envs.collect import CollectConfig, collect
from envs.spec import install_hint
from fsae.config import load_config, load_yaml
from fsae.model import FSAE
from fsae.pretrain import PretrainConfig, check_targets, variant_config
from rl.agent import policy_kwargs
from rl.common_sense import union_space
from rl.config import AgentConfig, check_hyperparams
from rl.env_factory import make_env
from rl.images import frames_of, image_layout
from rl.sweep import load_sweep, plan

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _yamls(folder: str) -> list[Path]:
    paths = sorted((CONFIGS / folder).glob("*.yaml"))
    assert paths, f"no configs under configs/{folder}"
    return paths


def test_every_config_folder_is_covered():
    """A new folder of configs needs its own test below."""
    assert sorted(p.name for p in CONFIGS.iterdir() if p.is_dir()) == ["agent", "collect", "pretrain", "sweeps"]


@pytest.mark.parametrize("path", _yamls("pretrain"), ids=lambda p: p.stem)
@pytest.mark.filterwarnings("error::fsae.model.StrideWarning")  # every conv of a shipped config reads all its input
def test_pretrain_config_builds_every_variant(path: Path):
    cfg = load_config(PretrainConfig, path)
    x = torch.zeros(2, *cfg.model.input_shape)
    _, hs = FSAE(cfg.model).abstract(x)
    assert hs[-1].shape == (2, cfg.model.code_size)
    for v in cfg.variants:
        model = FSAE(variant_config(cfg.model, v, cfg.feedback_gain))
        with torch.no_grad():
            assert model.regenerate(x).shape == x.shape, f"variant '{v.name}'"


@pytest.mark.parametrize("path", _yamls("agent"), ids=lambda p: p.stem)
def test_agent_config_builds_its_policy_features(path: Path):
    """The config's env exists with its packages, wrappers and kwargs, and its CNN features fit the env's raw
    observations (as the policy sees them: channels-first) and their union."""
    for package in load_yaml(path).get("env_packages", []):  # an optional extra: pip install -e ".[atari,minigrid]"
        pytest.importorskip(package, reason=f"{path.name} needs {package}: {install_hint(package)}")
    cfg = load_config(AgentConfig, path)
    check_hyperparams(cfg)
    assert cfg.condition == "none", "shipped agent configs train the raw agent; conditions come from --augment"
    env = make_env(cfg.env_id, cfg.env_packages, cfg.env_wrappers, **cfg.env_kwargs)
    raw = env.observation_space
    env.close()
    chw = spaces.Box(0, 255, image_layout(raw, cfg.image_layout).chw, np.uint8)
    for space in (chw, union_space(raw, cfg.union, cfg.image_layout)):
        kw = policy_kwargs(cfg, space)
        extractor = kw["features_extractor_class"](space, **kw["features_extractor_kwargs"])
        with torch.no_grad():
            features = extractor(torch.zeros(2, *space.shape))
        assert features.shape == (2, cfg.policy.features_dim), space


@pytest.mark.parametrize("path", _yamls("sweeps"), ids=lambda p: p.stem)
def test_sweep_config_plans(path: Path):
    cfg = load_sweep(path)
    runs = plan(cfg, check_files=False)  # the checkpoints are made by pretraining runs, not shipped
    assert len(runs) == len(cfg.envs) * len(cfg.conditions) * len(cfg.seeds)
    assert len({r.run_dir for r in runs}) == len(runs)
    for env in cfg.envs:
        assert (ROOT / env.config).is_file(), f"{env.config} does not exist"


# Each collect config, the pretraining config that reads its data, and the agent config whose observations the FSAE
# regenerates: the README's pipelines.
PIPELINES = {
    "minigrid_doorkey5": "minigrid_doorkey5",
    "minigrid_doorkey5_noise": "minigrid_doorkey5_noise",
    "pong_ram": "pong",
}


@pytest.mark.parametrize("path", _yamls("collect"), ids=lambda p: p.stem)
def test_collect_config_gives_what_its_pretraining_and_agent_configs_take(path: Path):
    """16 steps of the collect config: images of the pretraining config's input shape, labels its head trains on,
    and a model of that shape fits the agent's observations (one frame, or each frame of a stack)."""
    for package in load_yaml(path).get("env_packages", []):
        pytest.importorskip(package, reason=f"{path.name} needs {package}: {install_hint(package)}")
    cfg = load_config(CollectConfig, path)
    data = collect(cfg.env_id, 16, cfg.seed, cfg.env_kwargs, cfg.labels, cfg.image_layout, cfg.make_env, progress=0)
    pre = load_config(PretrainConfig, CONFIGS / "pretrain" / path.name)
    assert data.obs.shape[1:] == tuple(pre.model.input_shape) and data.obs.dtype == np.uint8
    check_targets(torch.from_numpy(data.labels), pre.model)
    assert data.label_names is not None and len(data.label_names) == data.labels.shape[1]
    agent = load_config(AgentConfig, CONFIGS / "agent" / f"{PIPELINES[path.stem]}.yaml")
    env = make_env(agent.env_id, agent.env_packages, agent.env_wrappers, **agent.env_kwargs)
    layout = image_layout(env.observation_space, agent.image_layout)
    env.close()
    frames = {"pong": 4}.get(PIPELINES[path.stem], 1)  # Pong's agent stacks 4 frames; the FSAE takes one
    assert frames_of(tuple(pre.model.input_shape), layout, "the FSAE", agent.env_id) == frames
