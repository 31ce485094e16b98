"""Common sense for deep RL (paper Fig. 4): a frozen FSAE regenerates each observation and the agent sees both.

Modules:
    rl.common_sense -- ``union`` (the one implementation of "regenerate a uint8 batch and unite it with the raw
                       batch": stack, max or mean), ``Regenerator`` and ``make_regenerator`` (load, freeze and check a
                       checkpoint for a condition), ``CommonSense`` (``gymnasium.ObservationWrapper``, one env) and
                       ``VecCommonSense`` (SB3 ``VecEnvWrapper``: one forward pass per vector step, terminal
                       observations included).
    rl.extractor    -- ``SmallCNN``, a features extractor for SB3's ``CnnPolicy`` on 28x28 and 28x56 images with any
                       number of channels (SB3's ``NatureCNN`` needs at least 36x36).
    rl.agent        -- ``AgentConfig`` (``configs/agent/*.yaml``) and ``train_agent``: PPO, A2C or DQN under the
                       conditions none / fsae / copy / autoencoder, with test-split evaluation, checkpoints and
                       TensorBoard runs in ``logdir/<env>/<condition>/seed<N>``.

The CLI is ``scripts/train_agent.py``; the throughput benchmark is ``benchmarks/wrapper.py``.
"""

CONDITIONS = ("none", "fsae", "copy", "autoencoder")
"""The experimental conditions, in the order tables and legends show them; 'none' is the baseline."""
