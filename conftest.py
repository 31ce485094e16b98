"""Pytest set-up shared by every test (and by the doctests of fsae/, rl/ and envs/, collected with --doctest-modules).

- Point the MNIST loader at the local copy when one is beside the repo.
- One torch thread for the whole suite (and its subprocesses): the models here are tiny, and on a small CPU shared
  with other jobs torch's default thread pool makes their forward passes up to ~100x slower.
- A package module that imports an optional extra at its top (ray, minigrid, ale_py) while that extra is not installed
  is left out of doctest collection instead of failing it; the summary names such modules.
"""

import ast
import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent
PACKAGES = ("fsae", "rl", "envs")
OPTIONAL_EXTRAS = ("ray", "minigrid", "ale_py")  # pip install -e '.[ray]' and the like; a user may not have them

_shared = ROOT.parent / "shared" / "data" / "mnist"
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


@pytest.fixture(autouse=True)
def ieee_subnormals():
    """Subnormals are computed in full again after each test: an agent's training flushes them
    (``fsae.runtime.flush_denormals``) for the rest of the process."""
    yield
    torch.set_flush_denormal(False)


def _missing_extras(path: Path) -> list[str]:
    """The optional extras that ``path`` imports at module level (an import inside a function or a ``try`` block
    does not run, or fail, on import) and that are not installed."""
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    tops = {n.split(".")[0] for n in names}
    return sorted(t for t in tops if t in OPTIONAL_EXTRAS and importlib.util.find_spec(t) is None)


_left_out: dict[str, list[str]] = {}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    path = Path(collection_path)
    if path.suffix == ".py" and path.is_relative_to(ROOT) and path.relative_to(ROOT).parts[0] in PACKAGES:
        missing = _missing_extras(path)
        if missing:
            _left_out[str(path.relative_to(ROOT))] = missing
            return True
    return None  # let pytest decide


def pytest_terminal_summary(terminalreporter) -> None:
    for module, missing in _left_out.items():
        terminalreporter.write_line(f"doctests of {module} not collected: {', '.join(missing)} not installed")
