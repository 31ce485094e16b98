"""A fake ``time`` module for the benchmarks' timing code: ``monkeypatch.setattr(module, "time", Clock())``."""


class Clock:
    """A fake ``time.perf_counter`` and ``time.process_time``: they move only when ``advance`` is called (the CPU time
    by ``cpu`` seconds, else as much as the wall clock)."""

    def __init__(self):
        self.now = 0.0
        self.cpu = 0.0

    def perf_counter(self) -> float:
        return self.now

    def process_time(self) -> float:
        return self.cpu

    def advance(self, seconds: float, cpu: float | None = None) -> None:
        self.now += seconds
        self.cpu += seconds if cpu is None else cpu
