"""The scripts in ``benchmarks/`` are modules of their own, not a package (``benchmarks/run.py`` imports its
neighbours by name): their folder goes on ``sys.path`` here, once, so that the tests in this folder import them the
same way (``import wrapper`` is ``benchmarks/wrapper.py``; ``fake_clock`` is this folder's own)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
