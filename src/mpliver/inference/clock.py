"""The stages of a prediction and their wall times (`PredictionResult.timings`, seconds)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

STAGES = ("io", "liver", "registration", "preprocess", "network", "postprocess")


class StageClock:
    """Per-stage wall times: `mark(name)` ends the running stage (if any) and starts `name`, calling
    `on_stage(name)`; `stop()` ends the running stage. Times of a stage marked twice add up."""

    def __init__(self, on_stage: Callable[[str], None] | None = None,
                 timings: Mapping[str, float] | None = None):
        self.on_stage = on_stage
        self.timings: dict[str, float] = dict(timings or {})
        self._running: tuple[str, float] | None = None

    def mark(self, name: str) -> None:
        self.stop()
        self._running = (name, time.perf_counter())
        if self.on_stage is not None:
            self.on_stage(name)

    def stop(self) -> None:
        if self._running is not None:
            name, start = self._running
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
            self._running = None
