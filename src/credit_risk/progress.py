"""Progress lines for long work, on stderr so that stdout stays parseable."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports ``done/total`` at most every ``interval`` seconds, then a final line."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, interval: float = 1.0
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.done = 0
        self._started = time.perf_counter()
        self._last = 0.0
        self._tty = self.stream.isatty()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._write(end="\r" if self._tty else "\n")

    def finish(self) -> float:
        """Writes the closing line and returns the elapsed seconds."""
        self._write(end="\n")
        return time.perf_counter() - self._started

    def _write(self, *, end: str) -> None:
        elapsed = time.perf_counter() - self._started
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"{self.label}: {self.done:,}/{self.total:,} ({pct:5.1f}%) "
            f"{elapsed:6.1f}s {rate:,.0f}/s{end}"
        )
        self.stream.flush()
