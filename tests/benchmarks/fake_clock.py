"""A fake ``time`` module for the benchmarks' timing code: ``monkeypatch.setattr(module, "time", Clock())``."""


class Clock:
    """A fake ``time.perf_counter``: it moves only when ``advance`` is called."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
