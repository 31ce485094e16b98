"""The time an agent's batched wrapper spends regenerating, read inside the agent's own learn calls.

Contents:
    WrapperClock      -- set between an agent's ``VecCommonSense`` and its regenerator: the regenerator's seconds per
                         ``learn`` call, whose share of the call is what the wrapper costs the agent (in situ, within
                         one agent's run: no noise between two agents' timings enters it).
    vec_common_sense  -- the ``VecCommonSense`` in a stack of vector-env wrappers, or None.
"""

from __future__ import annotations

import time

import numpy as np
from stable_baselines3 import PPO

from rl.common_sense import VecCommonSense


class WrapperClock:
    """The seconds an agent's batched wrapper spends in its regenerator, per ``learn`` call: set between the agent's
    ``VecCommonSense`` and its regenerator, and around the agent's ``learn``. ``per_learn[i]`` is the regenerator's
    time within the i-th ``learn`` call: its share of that call's time is what the wrapper costs the agent, read in
    situ (caches shared with the policy) and within one call, free of the noise between two agents' timings."""

    def __init__(self, model: PPO):
        venv = vec_common_sense(model.get_env())
        assert venv is not None, "the agent's environment has no VecCommonSense"
        self.regenerator, venv.regenerator = venv.regenerator, self
        self.seconds = 0.0
        self.per_learn: list[float] = []
        learn = model.learn

        def timed_learn(*args, **kwargs):
            start = self.seconds
            out = learn(*args, **kwargs)
            self.per_learn.append(self.seconds - start)
            return out

        model.learn = timed_learn

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.regenerator(obs)
        self.seconds += time.perf_counter() - start
        return out


def vec_common_sense(venv: object) -> VecCommonSense | None:
    """The ``VecCommonSense`` in a stack of vector-env wrappers, or None."""
    while venv is not None and not isinstance(venv, VecCommonSense):
        venv = getattr(venv, "venv", None)
    return venv
