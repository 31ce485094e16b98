"""The functionally separate autoencoder: the model, its pretraining, and what both read and write.

Modules, in the order a newcomer reads them:
    fsae.model            -- the FSAE (abstract network, its layer-by-layer inverse, round, jumps, feedback), read top
                             to bottom beside docs/DESIGN.md section 1.
    fsae.model_config     -- its architecture as typed config, and the shapes that follow from it.
    fsae.layers           -- invertible activations and the concrete network's transposed convolution.
    fsae.train            -- the training loops of the two halves (phase 1, phase 2, the conventional autoencoder).
    fsae.pretrain         -- the paper's experiment end to end (``scripts/pretrain.py``), with its pieces:
        fsae.pretrain_config  -- the run's config: data, architecture, optimiser, variants, measurements.
        fsae.targets          -- the images and each head's targets (MNIST or task data), checked before training.
        fsae.phases           -- the phases: abstract, then every variant (and the autoencoder) in one pass.
        fsae.evaluate         -- the measurements: accuracy or R^2, regeneration metrics, references.
        fsae.figures          -- Fig. 2, and images of any channel count made drawable.
        fsae.resume           -- ``train_state.pt``: a killed run continues from its last finished epoch.
    fsae.gemm             -- the abstract network's logits as gathers and GEMMs: the lookup's fast pass on a CPU.
    fsae.characteristics  -- the paper's other experiments: familiarity (memory), lethe (forgetting), concepts.
Files and settings:
    fsae.data             -- MNIST, checked and cached; uint8 images to float tensors.
    fsae.task_data        -- task data collected from an environment (``.npz``), and where it came from.
    fsae.checkpoint       -- checkpoints written atomically and loaded without unpickling.
    fsae.atomic           -- atomic file writes (dependency-free).
    fsae.provenance       -- ``run_info.json``: code version, machine, the SHA-256 of what a run read and wrote.
    fsae.run_folder       -- which folder a run may write to, and what a failed run leaves.
    fsae.config           -- typed dataclasses from YAML that reject unknown keys; ``ConfigError``.
    fsae.layout           -- image layouts (which axis holds the channels), shared by ``envs`` and ``rl``.
    fsae.runtime, fsae.threads, fsae.memory -- seeds, device and float mode; torch's thread count; the allocator.
    fsae.cli, fsae.console, fsae.report -- the scripts' shared plumbing, their output, Markdown tables of metrics.

``fsae`` imports nothing from ``envs`` or ``rl``.
"""
