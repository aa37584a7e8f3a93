"""Fault injection for crash tests: VITSEARCH_FAULT=point[:n] SIGKILLs us at the n-th visit."""

from __future__ import annotations

import os
import signal

__all__ = ["fault_point"]

_visits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """A named instant where tests may kill the process; free when the variable is unset."""
    spec = os.environ.get("VITSEARCH_FAULT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _visits[name] = _visits.get(name, 0) + 1
    if _visits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
