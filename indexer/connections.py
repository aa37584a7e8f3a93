"""DuckDB connections to a store, shared fairly between one writer and many readers.

DuckDB lets one process write a file, or any number read it, never both at once; and inside
one process it refuses a read-only and a read-write connection to the same file. So:
- within a process, connections to a file are taken one at a time (they are short);
- readers reuse one connection for up to LEASE_SECONDS (opening costs ~20 ms), then close it;
- a writer kept out by another process leaves a flag naming itself; readers that see a live
  flag close their connection and wait for it, so a busy reader cannot starve the writer.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import StoreError

__all__ = ["connection", "close_lease"]

LOCK_RETRY_SECONDS = 60.0
# DuckDB would cache up to 80% of RAM while scanning embeddings; a store never needs that.
MEMORY_LIMIT = os.environ.get("VITSEARCH_DUCKDB_MEMORY", "1GB")
LEASE_SECONDS = 1.0
WRITER_WAIT_SECONDS = 5.0
WAITING_SUFFIX = ".writer-waiting"

_GUARD = threading.Lock()
_LOCKS: dict[str, threading.RLock] = {}
_LEASES: dict[str, tuple[object, float, threading.Timer]] = {}  # path -> (connection, opened, closer)


def _lock(path: str) -> threading.RLock:
    with _GUARD:
        return _LOCKS.setdefault(path, threading.RLock())


@contextlib.contextmanager
def connection(db_path: Path, *, read_only: bool) -> Iterator:
    path = str(db_path)
    with _lock(path):
        if read_only:
            cursor = _leased(path).cursor()  # a clean cursor: no results left over from others
            try:
                yield cursor
            finally:
                cursor.close()
            return
        close_lease(path)
        con = _open(path, read_only=False)
        try:
            yield con
        finally:
            con.close()


def close_lease(path: str) -> None:
    with _lock(path):
        lease = _LEASES.pop(path, None)
        if lease is not None:
            lease[2].cancel()
            lease[0].close()
            del lease  # the connection's C++ teardown happens here, under the lock


@atexit.register
def _close_all_leases() -> None:
    """Close leases before the interpreter goes away. Taking each path's lock also waits for a
    closer thread that is inside DuckDB's close: a daemon thread still there when Python
    finalizes aborts the whole process ("terminate called ... exception not rethrown")."""
    for path in list(_LOCKS):
        close_lease(path)


def _leased(path: str):
    lease = _LEASES.get(path)
    now = time.monotonic()
    waiting = _writer_waiting(path)
    if lease is not None and (waiting or now - lease[1] > LEASE_SECONDS):
        close_lease(path)
        lease = None
    if lease is None:
        if waiting:
            _wait_for_writer(path)
        timer = threading.Timer(LEASE_SECONDS, _expire, args=(path, now))
        timer.daemon = True
        _LEASES[path] = lease = (_open(path, read_only=True), now, timer)
        timer.start()
    return lease[0]


def _expire(path: str, opened: float) -> None:
    with _lock(path):
        if _LEASES.get(path, (None, None))[1] == opened:  # holds no reference to the connection
            close_lease(path)


def _open(path: str, *, read_only: bool):
    import duckdb

    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    delay = 0.01
    flagged = False
    try:
        while True:
            try:
                return duckdb.connect(path, read_only=read_only, config={"memory_limit": MEMORY_LIMIT})
            except duckdb.IOException as e:  # another process holds the file
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise StoreError(f"cannot open {path}: {e}") from e
                if not read_only and not flagged:
                    Path(path + WAITING_SUFFIX).write_text(str(os.getpid()))
                    flagged = True
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
    finally:
        if flagged:
            Path(path + WAITING_SUFFIX).unlink(missing_ok=True)


def _writer_waiting(path: str) -> bool:
    try:
        pid = int(Path(path + WAITING_SUFFIX).read_text() or 0)
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # a flag left by a killed writer means nothing
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _wait_for_writer(path: str) -> None:
    deadline = time.monotonic() + WRITER_WAIT_SECONDS
    while _writer_waiting(path) and time.monotonic() < deadline:
        time.sleep(0.02)
