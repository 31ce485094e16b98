"""What every script prints: one ``error:`` line for bad input, and metrics as aligned ``key  value`` lines.

``first_line`` and ``kind_and_reason`` turn any exception into the one line those errors quote;
``one_line_warnings`` prints the project's own warnings as one ``warning:`` line (without Python's source line).

Kept apart from ``fsae.cli`` (the pretraining scripts' options), so that the agent scripts import nothing of
pretraining.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("fsae", "envs", "rl", "scripts", "benchmarks")  # not a virtual environment kept in the checkout
_PYTHON_FORMAT = warnings.formatwarning


def print_metrics(metrics: dict[str, Any], fmt: str = ".6g", keep: Callable[[str], bool] = lambda k: True) -> None:
    """``metrics`` (those ``keep`` selects) as aligned ``key  value`` lines, floats in ``fmt``."""
    shown = {k: v for k, v in metrics.items() if keep(k)}
    width = max((len(k) for k in shown), default=0)
    for k, v in shown.items():
        print(f"{k:<{width}}  {v:{fmt}}" if isinstance(v, float) else f"{k:<{width}}  {v}")


def first_line(e: BaseException) -> str:
    """The first line of an exception's message ('' for none): what a one-line error quotes of a library's."""
    return (str(e).strip().splitlines() or [""])[0]


def kind_and_reason(e: BaseException) -> str:
    """'Type: first line of the message', e.g. "AttributeError: 'Bars' object has no attribute 'get_frame'"."""
    return f"{type(e).__name__}: {first_line(e)}"


def error(e: BaseException | str, code: int) -> int:
    """Print one ``error:`` line to stderr; return ``code``."""
    print(f"error: {e}", file=sys.stderr)
    return code


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    try:  # never raise from here: it would turn a warning into a crash
        inside = Path(filename).resolve().relative_to(_ROOT).parts[:1] if os.path.isabs(filename) else ()
    except (OSError, ValueError):  # not under the checkout, or not a path at all
        inside = ()
    if inside and inside[0] in _PACKAGES:  # raised by the project: its message says all
        return f"warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)  # a library's, or code without a file


def one_line_warnings() -> None:
    """Show the warnings the project raises as one ``warning: ...`` line each, as its errors are; other libraries'
    keep Python's format. For the scripts' ``main``."""
    warnings.formatwarning = _format_warning
