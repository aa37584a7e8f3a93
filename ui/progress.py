"""The console command's progress bar on stderr."""

from __future__ import annotations

import sys

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm bar on stderr (files/s, ETA), created once the total is known."""

    def __init__(self, description: str, unit: str):
        self.description, self.unit, self.bar = description, unit, None

    def update(self, done: int, total: int) -> None:
        if self.bar is not None and total != self.bar.total:  # a second pass (signatures) starts
            self.bar.close()
            self.bar, self.description = None, "signatures"
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, disable=None)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
