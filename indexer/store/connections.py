"""DuckDB connections to a store, shared fairly between one writer and many readers.

DuckDB lets one process write a file, or any number read it, never both at once; and inside
one process it refuses a read-only and a read-write connection to the same file. So:
- within a process, connections to a file are taken one at a time (they are short);
- readers reuse one connection for up to LEASE_SECONDS (opening costs ~20 ms), then close it;
- a writer reuses its read-write connection for back-to-back work (a one-photo run makes 17
  reads and transactions) for up to WRITER_LEASE_SECONDS only: while it is open, another
  process can neither read nor write the file. A failed write drops it: DuckDB may have
  invalidated it, and the next transaction starts from a fresh open;
- a writer kept out by another process leaves a flag naming itself; readers that see a live
  flag close their connection and wait for it, so a busy reader cannot starve the writer;
- a sandboxed reader (what every query on user input uses) has file access switched off from the
  moment it opens. DuckDB cannot switch it back on, nor hold two configurations of one file in a
  process, so a lease remembers its mode and a reader asking for the other mode gets a fresh one;
- user SQL runs `bounded`: a smaller memory limit, no spilling to disk and a time-out, set for
  that one query and restored after, so other reads, the writer and `dupes` never feel them;
- a writer's close does not checkpoint. DuckDB would otherwise fold its write-ahead log into
  the data file at every close, rewriting whole column segments (1-3 MB at 200k-1M rows) for a
  one-photo change, as the watcher makes. The log is fsynced at each commit, replayed by every
  open (readers included), and folded by DuckDB itself once it passes checkpoint_threshold
  (16 MB: thousands of single changes).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError

__all__ = ["connection", "close_lease", "bounded"]

LOCK_RETRY_SECONDS = 60.0
# DuckDB would cache up to 80% of RAM while scanning embeddings; a store never needs that.
MEMORY_LIMIT = os.environ.get("VITSEARCH_DUCKDB_MEMORY", "1GB")
LEASE_SECONDS = 1.0
WRITER_LEASE_SECONDS = 0.25
WRITER_WAIT_SECONDS = 5.0
WAITING_SUFFIX = ".writer-waiting"

_GUARD = threading.Lock()
_LOCKS: dict[str, threading.RLock] = {}
_LEASES: dict[str, _Lease] = {}


@dataclass
class _Lease:
    connection: object
    opened: float
    closer: threading.Timer
    sandboxed: bool
    read_only: bool = True


def _lock(path: str) -> threading.RLock:
    with _GUARD:
        return _LOCKS.setdefault(path, threading.RLock())


@contextlib.contextmanager
def connection(db_path: Path, *, read_only: bool, sandboxed: bool = False) -> Iterator:
    """A connection for one read or one transaction. `sandboxed` (read-only only): no file
    access, for queries that embed user input such as `where` filters."""
    path = str(db_path)
    with _lock(path):
        # A clean cursor: no results left over from others; closing it rolls back what it left open.
        cursor = _leased(path, read_only, sandboxed).cursor()
        failed = False
        try:
            yield cursor
        except BaseException:
            failed = True
            raise
        finally:
            cursor.close()
            if not read_only and (failed or _writer_waiting(path)):
                close_lease(path)  # a writer of another process goes next


@contextlib.contextmanager
def bounded(cursor, *, seconds: float, memory: str) -> Iterator:
    """Run queries on `cursor` (of a `connection` block) with at most `memory` and no spilling,
    interrupted after `seconds`: DuckDB has no statement time-out, so a timer calls interrupt()
    and the query raises duckdb.InterruptException (or OutOfMemoryException past the memory).
    The limits are the database's, not the cursor's: they hold while the block holds the path's
    lock, and the values every connection opens with come back after."""
    cursor.execute(f"SET memory_limit = '{memory}'")
    cursor.execute("SET max_temp_directory_size = '0B'")
    guard = threading.Lock()
    running = [True]

    def interrupt() -> None:
        with guard:  # never once the query is over: it would stop the next one
            if running[0]:
                cursor.interrupt()

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield cursor
    finally:
        with guard:
            running[0] = False
        timer.cancel()
        cursor.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")  # what _open sets (read back, it rounds)
        cursor.execute("RESET max_temp_directory_size")


def close_lease(path: str) -> None:
    with _lock(path):
        lease = _LEASES.pop(path, None)
        if lease is not None:
            lease.closer.cancel()
            lease.connection.close()
            del lease  # the connection's C++ teardown happens here, under the lock


@atexit.register
def _close_all_leases() -> None:
    """Close leases before the interpreter goes away. Taking each path's lock also waits for a
    closer thread that is inside DuckDB's close: a daemon thread still there when Python
    finalizes aborts the whole process ("terminate called ... exception not rethrown")."""
    for path in list(_LOCKS):
        close_lease(path)


def _leased(path: str, read_only: bool, sandboxed: bool):
    lease = _LEASES.get(path)
    now = time.monotonic()
    waiting = _writer_waiting(path)
    seconds = LEASE_SECONDS if read_only else WRITER_LEASE_SECONDS
    if lease is not None and (waiting or now - lease.opened > seconds
                              or (lease.read_only, lease.sandboxed) != (read_only, sandboxed)):
        close_lease(path)
        lease = None
    if lease is None:
        if waiting and read_only:
            _wait_for_writer(path)
        timer = threading.Timer(seconds, _expire, args=(path, now))
        timer.daemon = True
        lease = _Lease(_open(path, read_only=read_only, sandboxed=sandboxed), now, timer, sandboxed, read_only)
        _LEASES[path] = lease
        timer.start()
    return lease.connection


def _expire(path: str, opened: float) -> None:
    with _lock(path):
        lease = _LEASES.get(path)
        if lease is not None and lease.opened == opened:
            del lease  # hold no reference to the connection: close_lease tears it down
            close_lease(path)


def _open(path: str, *, read_only: bool, sandboxed: bool = False):
    import duckdb

    config = {"memory_limit": MEMORY_LIMIT}
    if sandboxed:
        config["enable_external_access"] = False
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    delay = 0.01
    flagged = False
    try:
        while True:
            try:
                con = duckdb.connect(path, read_only=read_only, config=config)
                break
            except duckdb.IOException as e:  # another process holds the file
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise StoreError(f"cannot open {path}: {e}{_wal_hint(e, path)}") from e
                if not read_only and not flagged:
                    Path(path + WAITING_SUFFIX).write_text(str(os.getpid()))
                    flagged = True
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
    finally:
        if flagged:
            Path(path + WAITING_SUFFIX).unlink(missing_ok=True)
    if not read_only:
        try:
            con.execute("PRAGMA disable_checkpoint_on_shutdown")
        except BaseException:
            con.close()
            raise
    return con


def _wal_hint(error: Exception, path: str) -> str:
    """What to do when DuckDB cannot replay the write-ahead log beside the file."""
    if "WAL" not in str(error):
        return ""
    return (f". Its write-ahead log {Path(path).name}.wal does not fit it: were the two copied or restored "
            "apart? They are one store: restore or copy both, or neither")


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
