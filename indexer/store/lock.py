"""The single-writer lock: an flock the kernel drops when the holder dies, naming its holder."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from ..errors import StoreInUseError

__all__ = ["WriterLock"]


class WriterLock:
    """`wait`: seconds to wait for a holder to finish before saying the store is in use."""

    def __init__(self, path: Path, *, wait: float = 0.0):
        self.path = Path(path)
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                holder = _read_holder(fd)
                os.close(fd)
                pid = holder.get("pid")
                raise StoreInUseError(
                    f"store {self.path.parent} is busy: in use by process {pid} "
                    f"({holder.get('command', '?')}, since {holder.get('since', '?')}); "
                    "wait for it to finish or stop it, then retry",
                    pid=pid,
                ) from None
        os.ftruncate(fd, 0)
        holder = {
            "pid": os.getpid(),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
