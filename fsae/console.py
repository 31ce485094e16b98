"""What every script prints: one ``error:`` line for bad input, and metrics as aligned ``key  value`` lines.

``first_line`` and ``kind_and_reason`` turn any exception into the one line those errors quote.

Kept apart from ``fsae.cli`` (the pretraining scripts' options), so that the agent scripts import nothing of
pretraining.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


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
