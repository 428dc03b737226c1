"""Progress: per-operation counts (submitted / done / failed / retried / cached) shown live
with rich on a terminal, and as periodic plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

COLUMNS = ("submitted", "done", "failed", "retried", "cached")


class Progress:
    def __init__(self, *, console: Console | None = None, interval: float = 0.1,
                 plain_interval: float = 10.0) -> None:
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.interval = interval
        self.plain_interval = plain_interval
        self._started = time.time()
        self._last = 0.0 if self.console.is_terminal else self._started
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=8, transient=False)
            self.live.start()

    def table(self, report: Any) -> Table:
        elapsed = max(1e-9, time.time() - self._started)
        t = Table(title=f"specflow · {elapsed:,.1f} s", title_justify="left", expand=False)
        t.add_column("operation")
        for c in COLUMNS:
            t.add_column(c, justify="right")
        t.add_column("tasks/s", justify="right")
        for op, counts in sorted(report.counts.items()):
            t.add_row(
                op,
                *(f"{counts.get(c, 0):,}" for c in COLUMNS),
                f"{counts.get('done', 0) / elapsed:,.0f}",
            )
        return t

    def update(self, report: Any) -> None:
        now = time.time()
        if self.live is not None:
            if now - self._last >= self.interval:
                self._last = now
                self.live.update(self.table(report))
        elif now - self._last >= self.plain_interval:
            self._last = now
            parts = [
                f"{op}: {c.get('done', 0):,} done, {c.get('failed', 0):,} failed"
                for op, c in sorted(report.counts.items())
            ]
            print(f"[{now - self._started:,.0f}s] " + "; ".join(parts), file=sys.stderr, flush=True)

    def finish(self, report: Any) -> None:
        if self.live is not None:
            self.live.update(self.table(report))
            self.live.stop()
