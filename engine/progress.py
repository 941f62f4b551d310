"""Progress on stderr: a rich bar with accepted records, rejections per stage, tokens/s and ETA,
or nothing (--quiet). Messages also go to the log (so --log-file keeps them)."""

from __future__ import annotations

import logging
import sys
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn
from rich.progress import TimeElapsedColumn, TimeRemainingColumn

from engine.pipeline import RunStats


log = logging.getLogger("engine")


def stage_counts(stats: RunStats) -> str:
    """'validate 5 · instruct 3 · dedup 1': rejections per stage, largest first."""
    stages: Counter = Counter()
    for reason, n in stats.reasons.items():
        stages[reason.split(":", 1)[0]] += n
    return " · ".join(f"{stage} {n}" for stage, n in stages.most_common(4)) or "-"


class Progress:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self._bar: RichProgress | None = None
        self._task = None
        self._base = 0

    def say(self, message: str) -> None:
        log.info("%s", message)
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False)

    def start(self, total: int, done: int) -> None:
        if self.quiet or not sys.stderr.isatty():
            return
        self._base = done
        self._bar = RichProgress(
            TextColumn("[bold]accepted"), BarColumn(), MofNCompleteColumn(),
            TextColumn("rejected {task.fields[rejected]} ({task.fields[stages]})"),
            TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=self.console, transient=False)
        self._task = self._bar.add_task("generate", total=total, completed=done, rejected=0,
                                        stages="-", tps="-")
        self._bar.start()

    def update(self, stats: RunStats) -> None:
        if self._bar is None:
            return
        tps = stats.usage.completion_tokens / max(stats.elapsed, 1e-9)
        self._bar.update(self._task, completed=self._base + stats.accepted,
                         rejected=stats.rejected, stages=stage_counts(stats), tps=f"{tps:.0f}")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
