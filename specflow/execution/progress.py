"""Progress: per-operation counts shown live with rich on a terminal, and as periodic plain
lines elsewhere; what tasks print is shown above the live table, never over it.

Where the flows declared how many tasks of an operation they will yield (``Flow.expected``),
a row shows done/total, the percentage and an ETA at the rate seen so far. The live table is
transient: when the run ends it is erased, and the caller prints the final summary once
(``final_table=True`` prints it here instead).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def rows(report: Any, elapsed: float) -> list[dict[str, Any]]:
    """One dict per operation: counts, total where known, percent, rate and ETA."""
    out = []
    expected: dict[str, int] = getattr(report, "expected", {}) or {}
    for op in sorted(set(report.counts) | set(expected)):
        c = report.counts.get(op, {})
        done, failed, cached = c.get("done", 0), c.get("failed", 0), c.get("cached", 0)
        finished = done + failed + cached
        running = max(0, c.get("submitted", 0) - done - failed - c.get("retried", 0))
        total = expected.get(op)
        if total is not None:
            total = max(total, finished + running)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = None
        if total is not None and rate > 0:
            eta = max(0, total - finished) / rate
        elif total is not None and finished >= total:
            eta = 0.0
        out.append({
            "operation": op, "done": done, "failed": failed, "cached": cached,
            "retried": c.get("retried", 0), "running": running, "total": total,
            "percent": (100.0 * finished / total) if total else None, "rate": rate, "eta": eta,
        })
    return out


class Progress:
    """The live display of one run.

    ``show_table=False`` shows only what tasks print (``--no-progress``).
    """

    def __init__(self, *, console: Console | None = None, show_table: bool = True,
                 final_table: bool = False, interval: float = 0.1,
                 plain_interval: float = 10.0) -> None:
        self._console = console
        self.live: Live | None = None
        self.show_table = show_table
        self.final_table = final_table
        self.interval = interval
        self.plain_interval = plain_interval
        self._started = time.time()
        self._last: float | None = None

    def use_stream(self, stream: TextIO | None) -> None:
        """Write to ``stream`` (a backend that redirects the driver's own stdout and stderr
        around tasks gives the terminal as it was); call before the first update."""
        if stream is not None and self._console is None:
            self._console = Console(file=stream)

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(stderr=True)
        return self._console

    def _begin(self) -> None:
        console = self.console
        self._last = 0.0 if console.is_terminal else self._started
        if console.is_terminal and self.show_table:
            self.live = Live(console=console, refresh_per_second=8, transient=True,
                             redirect_stdout=True, redirect_stderr=True)
            self.live.start()

    def table(self, report: Any) -> Table:
        elapsed = max(1e-9, time.time() - self._started)
        t = Table(title=f"specflow · {elapsed:,.1f} s", title_justify="left", expand=False)
        t.add_column("operation")
        for c in ("done", "total", "%", "running", "failed", "retried", "cached", "tasks/s",
                  "ETA"):
            t.add_column(c, justify="right")
        for r in rows(report, elapsed):
            t.add_row(
                r["operation"], f"{r['done']:,}",
                f"{r['total']:,}" if r["total"] is not None else "–",
                f"{r['percent']:.0f}%" if r["percent"] is not None else "–",
                f"{r['running']:,}", f"{r['failed']:,}", f"{r['retried']:,}",
                f"{r['cached']:,}", f"{r['rate']:,.0f}", _eta(r["eta"]),
            )
        return t

    def _print_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.console.print(Text(line.rstrip("\n")), soft_wrap=True, highlight=False)

    def update(self, report: Any, lines: Iterable[str] = ()) -> None:
        """Show new task output (above the table) and, at most every ``interval`` seconds,
        the table."""
        if self._last is None:
            self._begin()
        assert self._last is not None
        self._print_lines(lines)
        now = time.time()
        if self.live is not None:
            if now - self._last >= self.interval:
                self._last = now
                self.live.update(self.table(report))
        elif self.show_table and now - self._last >= self.plain_interval:
            self._last = now
            parts = []
            for r in rows(report, now - self._started):
                text = f"{r['operation']}: {r['done']:,}"
                if r["total"] is not None:
                    text += f"/{r['total']:,} ({r['percent']:.0f}%, ETA {_eta(r['eta'])})"
                parts.append(f"{text} done, {r['failed']:,} failed")
            print(f"[{now - self._started:,.0f}s] " + "; ".join(parts), file=sys.stderr,
                  flush=True)

    def finish(self, report: Any, lines: Iterable[str] = ()) -> None:
        """Erase the live table, show the last task output, and (``final_table``) the table
        once."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        self._print_lines(lines)
        if self.final_table:
            self.console.print(self.table(report))
