"""Peak memory of the current process, for benchmarks run in child processes."""

from __future__ import annotations

__all__ = ["peak_rss_mb"]


def peak_rss_mb() -> float:
    """VmHWM: unlike ru_maxrss, it starts afresh at exec, so a child does not inherit the
    high-water mark of the parent that forked it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
