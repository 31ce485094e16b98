"""The MNIST digits the digit environments draw from: one split's images grouped by class, loaded once per process.

Contents:
    SPLITS     -- the splits an environment may draw from: "train" and "test" (disjoint sets of writers).
    DigitPool  -- a split's images, labels, and the indices of each class's images.
    digit_pool -- the pool of a split, computed on first use and cached (``_pools``) for the life of the process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fsae.data import load_mnist

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DigitPool:
    """One MNIST split, ready for sampling: images, labels, and the image indices of each class."""

    images: np.ndarray
    """(N, 28, 28) uint8, read-only (shared with ``fsae.data.load_mnist``)."""
    labels: np.ndarray
    """(N,) int64 classes 0..9."""
    by_class: tuple[np.ndarray, ...]
    """Ten int64 arrays: ``by_class[c]`` holds the indices of the images of digit ``c``."""


_pools: dict[str, DigitPool] = {}


def digit_pool(split: str = "train") -> DigitPool:
    """The images of an MNIST split grouped by class, computed on first use and cached for the life of the process.

    Args:
        split: "train" (60,000 images) or "test" (10,000 images), disjoint sets of writers.

    Returns:
        The split's :class:`DigitPool`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    pool = _pools.get(split)
    if pool is None:
        images, labels = load_mnist(split)
        by_class = tuple(np.flatnonzero(labels == c) for c in range(10))
        pool = _pools[split] = DigitPool(images, labels, by_class)
    return pool
