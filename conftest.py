"""Pytest set-up shared by every test: point the MNIST loader at the local copy when one is beside the repo."""

import os
from pathlib import Path

_shared = Path(__file__).resolve().parent.parent / "shared" / "data" / "mnist"
if "FSAE_MNIST_DIR" not in os.environ and _shared.is_dir():
    os.environ["FSAE_MNIST_DIR"] = str(_shared)
