"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.1,
    ):
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self.started = time.monotonic()
        self.min_interval = min_interval
        self.drawn_at = 0.0
        self.visible = False

    def update(self, count: int = 1, total: int | None = None) -> None:
        self.done += count
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self.enabled and now - self.drawn_at >= self.min_interval:
            self.drawn_at = now
            self._draw(now)

    def render(self, now: float | None = None, width: int = 30) -> str:
        """The bar as text, e.g. `submit [#######-------] 1000/2000  50%  8,000/s`."""
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = f"{self.done / elapsed:,.0f}/s"
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = int(fraction * width)
            bar = "#" * filled + "-" * (width - filled)
            return f"{self.label} [{bar}] {self.done:,}/{self.total:,} {fraction * 100:3.0f}% {rate}"
        return f"{self.label} {self.done:,} {rate}"

    def _draw(self, now: float) -> None:
        self.stream.write("\r\x1b[2K" + self.render(now))
        self.stream.flush()
        self.visible = True

    def clear(self) -> None:
        """Remove the bar for a moment (before other output on the same terminal)."""
        if self.visible:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.visible = False
            self.drawn_at = 0.0

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
