"""The console command's progress bars on stderr: one per phase of a run (see indexer.report)."""

from __future__ import annotations

import sys

__all__ = ["ProgressBar"]

# How a phase is named on the bar; the first, "index", takes the description the command gives.
PHASE_NAMES = {"videos": "videos", "records": "records", "signatures": "signatures", "labels": "labels"}


class ProgressBar:
    """A tqdm bar on stderr (files/s, ETA) for the phase in progress: progress(phase, done, total)
    draws it, and a new phase closes the last bar and starts its own."""

    def __init__(self, description: str, unit: str):
        self.description, self.unit = description, unit
        self.phase, self.bar = None, None

    def update(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            self.close()
            from tqdm import tqdm

            self.phase = phase
            self.bar = tqdm(total=total, desc=PHASE_NAMES.get(phase, self.description), unit=self.unit,
                            file=sys.stderr, dynamic_ncols=True, disable=None)
        if total != self.bar.total:  # the work ahead grew (a watcher's next sync)
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
