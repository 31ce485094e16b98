"""The characteristics the paper discusses, as measurable experiments: memory (familiarity), lethe, concepts.

Modules: ``familiarity``, ``lethe``, ``concepts`` (the experiments) and ``common`` (what they share).

Contents:
    familiarity        -- similarity(x, F(x)) per image, negative MSE or cosine: higher means more familiar.
    familiarity_by_steps -- the same after each of several numbers of negative-feedback steps, in one pass.
    roc_auc            -- ROC AUC of two score sets from the Mann-Whitney U statistic (ties count half).
    select_classes     -- the images and targets of some classes.
    train_variants     -- one abstract network and a concrete network per variant, with ``fsae.train``'s loops.
    save_image_grid    -- a PNG of an (R, C) grid of images with row and column labels, tiled into one picture.
    FamiliarityOptions, run_familiarity -- train on seen classes only; how well familiarity separates seen from unseen
                          test classes (AUC) per variant, against the conventional autoencoder's reconstruction error.
    LetheOptions, run_lethe -- the concrete network trained on old classes, then on new ones only (or with a replay of
                          a little old data); the old classes' regeneration MSE as a curve over the second phase.
    continue_concrete  -- keep training a trained concrete network, measuring probe sets every N steps (lethe's loop).
    mixture, interpolation_codes, all_attribute_codes -- code vectors built from labels (generation from a concept);
                          interpolation in code space (the paper's mixture) or log space (linear in f^{-1}(code)).
    ConceptOptions, run_concepts -- prototypes, mixtures of two labels, interpolation between every pair of classes,
                          attribute combinations (sigmoid head) and two-digit codes (groups head), each classified back.

The paper: "the concrete network is the memory stored by the parameters"; a scene was seen before when "the
intersection of the old scene and the new scene" is large, i.e. when the regeneration F(x) resembles x. "Lethe is
that when new knowledge input, the training process makes the parameters change."

Each ``run_*`` writes into its run folder ``config.yaml`` (the ``PretrainConfig``, loadable again), ``options.yaml``,
``command.txt``, ``run_info.json`` (provenance), TensorBoard events, PNGs and ``metrics.json``, and returns the
metrics.
"""

from fsae.characteristics.common import save_image_grid, select_classes, train_variants
from fsae.characteristics.concepts import (
    ConceptOptions,
    all_attribute_codes,
    interpolation_codes,
    mixture,
    run_concepts,
)
from fsae.characteristics.familiarity import (
    FamiliarityOptions,
    familiarity,
    familiarity_by_steps,
    roc_auc,
    run_familiarity,
)
from fsae.characteristics.lethe import LetheOptions, continue_concrete, run_lethe

__all__ = [
    "ConceptOptions",
    "FamiliarityOptions",
    "LetheOptions",
    "all_attribute_codes",
    "continue_concrete",
    "familiarity",
    "familiarity_by_steps",
    "interpolation_codes",
    "mixture",
    "roc_auc",
    "run_concepts",
    "run_familiarity",
    "run_lethe",
    "save_image_grid",
    "select_classes",
    "train_variants",
]
