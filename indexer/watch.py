"""Keep a store in step with live folders: after the first sync, each burst of file-system
changes under the roots is followed, once it has settled, by an incremental sync.

A sync is `build_index` itself (same crash-safe transactions, size+mtime skips, renames
followed by content hash), so the watcher only decides *when* to sync, never *what*. Events
come from the OS (inotify on Linux: one watch per folder, not per file) through watchdog; when
the OS cannot watch the tree (watch limit, network filesystem) or `poll` is asked for, the roots
are rescanned every `poll` seconds instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .build import build_index, load_store_encoder, save_deferred
from .errors import VitsearchError
from .report import IndexReport
from .scan import is_within, normalize_roots
from .store.vectors import DeferredSaves

__all__ = ["watch_index", "IndexWatcher", "watch_folders", "WatchSettings", "SETTLE_SECONDS", "MAX_DELAY_SECONDS"]

SETTLE_SECONDS = 1.5  # quiet this long after the last event: a file being copied is read once, whole
MAX_DELAY_SECONDS = 30.0  # a folder that never goes quiet is still synced this often
DEFAULT_POLL_SECONDS = 30.0


@dataclass
class WatchSettings:
    poll: float | None = None  # seconds between rescans; None: OS events (falling back to polling)
    settle: float = SETTLE_SECONDS
    max_delay: float = MAX_DELAY_SECONDS


def watch_index(roots: list[str], store_dir: str | os.PathLike | None = None, *, stop: threading.Event,
                settings: WatchSettings | None = None, progress=None, log: Callable[[str], None] = print,
                **options) -> int:
    """Index `roots` into the store, then follow their changes until `stop` is set; returns the
    syncs after the first. `options` are IndexWatcher's (weights, device, batch_size, exclude...)."""
    watcher = IndexWatcher(roots, store_dir, **options)
    watcher.sync(progress)
    return 0 if stop.is_set() else watcher.follow(stop, settings, log)


class IndexWatcher:
    """One process's many syncs of the same roots: the model loads once for all of them, and FAISS
    stays in memory between syncs, written at most once a minute and when the watch stops
    (DuckDB's change log carries the rest to readers and restarts)."""

    def __init__(self, roots: list[str], store_dir: str | os.PathLike | None = None, *,
                 weights: str | None = None, device: str = "auto", exact: bool = False, decode: str = "auto",
                 precision: str | None = None, compile_mode: str = "auto", batch_size: int | None = None,
                 exclude: list[str] | tuple[str, ...] = (), include_hidden: bool = False):
        self.paths = list(roots)
        self.roots = [str(r) for r in normalize_roots(self.paths)]  # a missing folder is said before the model loads
        self.store_dir = store_dir
        self.store: str | None = None  # the store's folder, known from the first sync
        self._model = {"weights": weights, "device": device, "exact": exact, "decode": decode,
                       "precision": precision, "compile_mode": compile_mode}
        self._options = {"batch_size": batch_size, "exclude": exclude, "include_hidden": include_hidden}
        self._encoder = load_store_encoder(store_dir, **self._model)
        self._deferred = DeferredSaves()

    def sync(self, progress=None) -> IndexReport:
        """One incremental sync (build_index) with the loaded model."""
        report = build_index(self.paths, self.store_dir, encoder=self._encoder, **self._model, **self._options,
                             progress=progress, deferred=self._deferred)
        self.store = report.store
        return report

    def follow(self, stop: threading.Event, settings: WatchSettings | None = None,
               log: Callable[[str], None] = print) -> int:
        """Sync after each settled change until `stop` is set (see watch_folders), then write the
        FAISS index kept in memory; returns the passes. A KeyboardInterrupt skips that write: the
        change log has it all."""
        if self.store is None:
            self.sync()
        passes = watch_folders(self.roots, self.sync, stop, settings, log=log, ignore=(self.store,))
        save_deferred(self.store_dir, self._deferred)
        return passes


def watch_folders(roots: list[str], sync: Callable[[], IndexReport], stop: threading.Event,
                  settings: WatchSettings | None = None, log: Callable[[str], None] = print,
                  ignore: tuple[str, ...] = ()) -> int:
    """Run `sync` whenever the roots changed and settled, until `stop` is set; returns passes.
    Events under `ignore` (the store's own folder) are not changes. A sync that fails (a root
    deleted, the store busy) is logged and tried again at the next change or rescan."""
    settings = settings or WatchSettings()
    changed = _Changes()
    observer = None if settings.poll else _start_observer(roots, changed, log, ignore)
    interval = settings.poll or DEFAULT_POLL_SECONDS
    if observer is None:
        log(f"watch: rescanning every {interval:g} s")
    passes = 0
    try:
        while not stop.is_set():
            if observer is None:
                stop.wait(interval)
                due = not stop.is_set()
            else:
                stop.wait(0.2)
                due = changed.due(settings.settle, settings.max_delay)
            if due:
                changed.clear()
                try:
                    _log_report(sync(), log)
                except VitsearchError as e:
                    log(f"watch: sync failed: {e}")
                passes += 1
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
    return passes


class _Changes:
    """When events arrived: the first since the last sync, and the latest."""

    def __init__(self):
        self._lock = threading.Lock()
        self.first: float | None = None
        self.last: float | None = None

    def note(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.first = self.first or now
            self.last = now

    def due(self, settle: float, max_delay: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if self.first is None:
                return False
            return now - self.last >= settle or now - self.first >= max_delay

    def clear(self) -> None:
        with self._lock:
            self.first = self.last = None


def _start_observer(roots: list[str], changed: _Changes, log: Callable[[str], None], ignore: tuple[str, ...]):
    """An OS-event observer of every root, or None (with the reason logged) when it cannot run."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        log("watch: watchdog is not installed; falling back to rescanning")
        return None

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in ("opened", "closed_no_write"):  # reads change nothing
                return
            paths = [p for p in (event.src_path, getattr(event, "dest_path", "")) if p]
            if any(not any(is_within(os.fsdecode(p), folder) for folder in ignore) for p in paths):
                changed.note()

    folders, allowed = _folders_under(roots), _watch_limit()
    if allowed is not None and folders >= allowed:
        # watchdog skips sub-folders it cannot watch without saying so: check the budget first
        log(f"watch: the OS cannot watch these folders ({folders} folders need {folders} watches, the limit is "
            f"{allowed}); falling back to rescanning. On Linux, raise fs.inotify.max_user_watches, or pass "
            "--poll SECONDS")
        return None
    observer = Observer()
    try:
        for root in roots:
            observer.schedule(Handler(), root, recursive=True)
        observer.start()
    except OSError as e:  # ENOSPC: the inotify watch limit; others: a filesystem without events
        log(f"watch: the OS cannot watch these folders ({e.strerror or e}); falling back to rescanning. "
            "On Linux, raise fs.inotify.max_user_watches, or pass --poll SECONDS")
        try:
            observer.stop()
        except RuntimeError:
            pass
        return None
    return observer


def _folders_under(roots: list[str]) -> int:
    """Folders a recursive watch needs one inotify watch each for (os.walk visits each once)."""
    return sum(1 for root in roots for _ in os.walk(root))


def _watch_limit() -> int | None:
    """The inotify watches this user may hold (the smaller of the global and the namespace limit)."""
    limits = []
    for path in ("/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches"):
        try:
            with open(path) as f:
                limits.append(int(f.read().strip()))
        except (OSError, ValueError):
            pass
    return min(limits) if limits else None


def _log_report(report: IndexReport, log: Callable[[str], None]) -> None:
    for kind, path in report.changes:
        log(f"{kind} {path}")
    if report.records_read:
        log(f"records: read the XMP of {report.records_read} images again (sidecars changed)")
    for path, why in report.record_notes:
        log(f"XMP of {path}: {why}")
    for failure in report.failures:
        log(f"skipping {failure.path}: {failure.reason} ({failure.detail})")
