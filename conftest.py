"""Pytest set-up shared by every test.

- Point the MNIST loader at the local copy when one is beside the repo.
- One torch thread for the whole suite (and its subprocesses): the models here are tiny, and on a small CPU shared
  with other jobs torch's default thread pool makes their forward passes up to ~100x slower.
"""

import os
from pathlib import Path

import pytest
import torch

_shared = Path(__file__).resolve().parent.parent / "shared" / "data" / "mnist"
if "FSAE_MNIST_DIR" not in os.environ and _shared.is_dir():
    os.environ["FSAE_MNIST_DIR"] = str(_shared)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the scripts the tests run as subprocesses
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Each test runs torch on one thread; the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
