"""Peak memory of the current process, for benchmarks run in child processes."""

from __future__ import annotations

__all__ = ["peak_rss_mb", "rss_anon_mb", "PeakAnon"]


def peak_rss_mb() -> float:
    """VmHWM: unlike ru_maxrss, it starts afresh at exec, so a child does not inherit the
    high-water mark of the parent that forked it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_anon_mb() -> float:
    """Anonymous resident memory now: the process's own, without mapped files' page cache."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakAnon:
    """The highest RssAnon seen by a sampling thread (every 20 ms) while the block runs. VmHWM
    also counts the pages of mapped files a process reads, which the kernel may drop at will."""

    def __enter__(self) -> PeakAnon:
        import threading

        self.peak_mb, self._stop = rss_anon_mb(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, rss_anon_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_anon_mb())
