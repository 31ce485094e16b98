"""Common sense for deep RL (paper Fig. 4): a frozen FSAE regenerates each observation and the agent sees both.

Modules:
    rl.common_sense -- ``union`` (the one implementation of "regenerate a uint8 batch and unite it with the raw batch":
                       stack, max or mean), ``Regenerator`` (``make_regenerator`` loads, freezes and checks a
                       checkpoint for a condition), ``CommonSense`` (``gymnasium.ObservationWrapper``, one env)
                       and ``VecCommonSense`` (SB3 ``VecEnvWrapper``: one forward pass per vector step, terminal
                       observations included).
    rl.lookup       -- ``Lookup``: a round FSAE's regeneration as a table of its prototype images, a row picked by the
                       abstract pass (on a CPU ``fsae.gemm``'s, checked by a margin); ``rounded_codes``.
    rl.perception   -- ``Encoder``, ``Perception``, ``VecPerception``: the conditions 'code' and 'features', the
                       frozen abstract network's code or last hidden layer beside the raw image, as a ``Dict``.
    rl.images       -- image observations of any layout (channels-first or -last, grey (H, W), frame stacks): checked
                       once, read as SB3 reads them, handed on channels-first; ``VecChannelsFirst`` for 'none'.
    rl.extractor    -- ``SmallCNN``, a features extractor for SB3's ``CnnPolicy`` on 28x28 and 28x56 images with any
                       number of channels, and ``extractor_class``: SB3's ``NatureCNN`` from 36x36 up (84x84 Atari).
    rl.config       -- ``AgentConfig`` (``configs/agent/*.yaml``), ``PolicyConfig``, ``ALGOS``, hyperparameter checks.
    rl.env_factory  -- the environments of a run (any registered id: ``env_packages``, ``env_wrappers``, ``envs.spec``):
                       probed once, then vector envs with the condition's wrappers.
    rl.callbacks    -- evaluation on the test split and atomic checkpoints (SB3 callbacks).
    rl.run_folder   -- ``logdir/<env>/<condition>/seed<N>``: what a new run writes first, its logger, finished or not.
    rl.resume       -- continue an interrupted run from its newest checkpoint, without unpickling.
    rl.agent        -- ``train_agent``: PPO, A2C or DQN under the conditions none / fsae / copy / autoencoder / code /
                       features, with test-split evaluation, checkpoints and TensorBoard runs.
    rl.sweep        -- many runs (environments x conditions x seeds): config, plan (one resolved ``AgentConfig`` per
                       run), finished runs.
    rl.sweep_lock   -- one sweep at a time per logdir (an ``flock``); a logdir no run used is left as it was found.
    rl.sweep_local  -- the local backend: the runs as parallel ``train_agent.py`` subprocesses.
    rl.sweep_ray    -- the ray backend: the runs as trials of Ray Tune (restarts after a lost machine, restore).
    rl.ray_cluster  -- connecting to a Ray cluster and checking its nodes before the first run.
    rl.sweep_trial  -- what runs on the nodes: one run as a Tune trial, the preflight check of a node.
    rl.compare      -- IQM, bootstrap confidence intervals and P(improve) over a sweep's runs (reads run folders only).
    rl.archive      -- finished runs copied between a logdir and the repository without the agents' weights, so that
                       a grid longer than one machine's life is carried on elsewhere (``scripts/archive_runs.py``).
    rl.stats        -- IQM, bootstrap CIs, AUC, steps to threshold, P(improve): the statistics over seeds.
    rl.shift        -- re-evaluate finished agents under stronger corruption.
    rl.run_table    -- one table of finished runs' evaluations, step by step (``scripts/run_table.py``).

Imports run one way, from the wrappers up: ``rl.lookup`` <- ``rl.common_sense``, ``rl.perception``, ``rl.images``,
``rl.extractor`` <- ``rl.config`` <- ``rl.env_factory``, ``rl.run_folder`` <- ``rl.resume`` <- ``rl.agent`` <-
``rl.sweep``, ``rl.shift``; ``rl.sweep``, ``rl.sweep_lock`` <- ``rl.sweep_local``; ``rl.sweep``, ``rl.sweep_lock``,
``rl.sweep_trial`` <- ``rl.ray_cluster`` <- ``rl.sweep_ray``; ``rl.compare`` reads run folders (``rl.run_folder``) and
computes with ``rl.stats``; ``rl.callbacks`` imports nothing of ``rl``.

The CLI is ``scripts/train_agent.py``; the throughput benchmark is ``benchmarks/wrapper.py``.
"""

from typing import Literal, get_args

Condition = Literal["none", "fsae", "copy", "autoencoder", "code", "features"]
"""One experimental condition, as configs type it (``rl.config.AgentConfig.condition``, ``rl.sweep.SweepConfig``)."""

CONDITIONS: tuple[str, ...] = get_args(Condition)
"""The experimental conditions, in the order tables and legends show them; 'none' is the baseline."""

PERCEPTIONS = ("code", "features")
"""The conditions that hand the agent the frozen abstract network's vector beside the image (``rl.perception``); the
others hand it an image: the raw one ('none') or its union with a regeneration (``rl.common_sense``)."""
