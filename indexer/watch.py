"""Keep a store in step with live folders: after the first sync, each burst of file-system
changes under the roots is followed, once it has settled, by a sync of what the events named.

A sync is `build_index` itself (same crash-safe transactions, size+mtime skips, renames
followed by content hash); the watcher decides *when* to sync and *where*: the folders and
subtrees its events named (a file's folder; a folder created, deleted, moved or changed in its
permissions: all under it), which build_index's `only` (indexer.scope) syncs as a whole sync
would. Events come from the OS (inotify on Linux: one watch per folder, not per file) through
watchdog (indexer.watch_events). The whole tree is synced instead at start, after the OS dropped events (a queue
overflow) or lost a watch (a root deleted or moved), every FULL_RESCAN_SECONDS, and while the
tree holds symlinks the scan follows (a change then shows under two names, the event names one).
When the OS cannot watch the tree (watch limit, network filesystem) or `poll` is asked for, the
roots are rescanned whole every `poll` seconds instead.
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
from .scan import normalize_roots
from .scope import Scope
from .store.store import open_store
from .store.vectors import DeferredSaves
from .watch_events import RootWatches

__all__ = ["watch_index", "IndexWatcher", "watch_folders", "WatchSettings", "SETTLE_SECONDS", "MAX_DELAY_SECONDS",
           "FULL_RESCAN_SECONDS", "MAX_SCOPE"]

SETTLE_SECONDS = 1.5  # quiet this long after the last event: a file being copied is read once, whole
MAX_DELAY_SECONDS = 30.0  # a folder that never goes quiet is still synced this often
DEFAULT_POLL_SECONDS = 30.0
# Events cannot say everything: a write by another machine to a network mount, a write through a
# hard link whose other name is in another folder, a bind mount seen twice. A whole sync this often
# catches those; it costs one walk of the tree (~0.5 s of CPU at 100k files), nothing when idle
# in between.
FULL_RESCAN_SECONDS = 6 * 3600.0
# A burst naming more folders than this (a library restored, a tool touching everything) is
# synced whole: one walk costs less than a query naming each folder.
MAX_SCOPE = 256
TICK_SECONDS = 0.2  # how often the loop looks at what the events noted: a few dict reads, no I/O


@dataclass
class WatchSettings:
    poll: float | None = None  # seconds between rescans; None: OS events (falling back to polling)
    settle: float = SETTLE_SECONDS
    max_delay: float = MAX_DELAY_SECONDS
    full_rescan: float = FULL_RESCAN_SECONDS


def watch_index(roots: list[str], store_dir: str | os.PathLike | None = None, *, stop: threading.Event,
                settings: WatchSettings | None = None, progress=None, log: Callable[[str], None] = print,
                **options) -> int:
    """Index `roots` into the store, then follow their changes until `stop` is set; returns the
    syncs after the first. `options` are IndexWatcher's (weights, device, batch_size, exclude...)."""
    watcher = IndexWatcher(roots, store_dir, **options)
    return watcher.follow(stop, settings, log, first=lambda: watcher.sync(progress))


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
        self.links: list[str] = []  # symlinks the last whole sync followed: while any, every sync is whole

    def sync(self, progress=None, only: Scope | None = None) -> IndexReport:
        """One incremental sync (build_index) with the loaded model: of the whole tree, or of what
        `only` covers. A targeted sync that meets a symlink is followed by a whole one."""
        whole = only is None or bool(self.links)
        links: list[str] = []
        report = build_index(self.paths, self.store_dir, encoder=self._encoder, **self._model, **self._options,
                             progress=progress, deferred=self._deferred, only=None if whole else only, links=links)
        self.store = report.store
        if whole:
            self.links = links
        elif links:
            self.links = links
            report = _merged(report, self.sync(progress))
        return report

    def follow(self, stop: threading.Event, settings: WatchSettings | None = None,
               log: Callable[[str], None] = print, first: Callable[[], object] | None = None) -> int:
        """Sync after each settled change until `stop` is set (see watch_folders), then write the
        FAISS index kept in memory; returns the passes. `first`: the whole sync to run once the
        watches are set (by default one, unless this watcher has synced already). A
        KeyboardInterrupt skips that write: the change log has it all."""
        def start() -> None:
            if first is not None:
                first()
            elif self.store is None:
                self.sync()
            if self.links:
                log(f"watch: the folders hold symlinks the scan follows ({self.links[0]}...): each sync rescans "
                    "the whole tree")

        passes = watch_folders(self.roots, lambda scope: self.sync(only=scope), stop, settings, log=log,
                               ignore=(str(open_store(self.store_dir).dir),), first=start)
        save_deferred(self.store_dir, self._deferred)
        return passes


def watch_folders(roots: list[str], sync: Callable[[Scope | None], IndexReport], stop: threading.Event,
                  settings: WatchSettings | None = None, log: Callable[[str], None] = print,
                  ignore: tuple[str, ...] = (), first: Callable[[], object] | None = None) -> int:
    """Run `sync(scope)` whenever the roots changed and settled, until `stop` is set; returns
    passes. `scope` is what the events named, None for the whole tree (see the module). Events
    under `ignore` (the store's own folder) are not changes. `first` (the start's whole sync)
    runs once the watches are set: a change made while it runs is an event, synced after it. A
    sync that fails (a root deleted, the store busy) is logged, and the tree is synced whole at
    the next change or after DEFAULT_POLL_SECONDS."""
    settings = settings or WatchSettings()
    changed = _Changes()
    watches = None if settings.poll else RootWatches.start(roots, changed, log, ignore)
    if watches is None:
        interval = settings.poll or DEFAULT_POLL_SECONDS
        log(f"watch: rescanning every {interval:g} s")
    passes, last_whole, retry_at = 0, time.monotonic(), None
    try:
        if first is not None:
            first()
            last_whole = time.monotonic()
        while not stop.is_set():
            if watches is None:
                stop.wait(interval)
                if stop.is_set():
                    break
                scope = None
            else:
                stop.wait(TICK_SECONDS)
                watches.check()
                now = time.monotonic()
                if now - last_whole >= settings.full_rescan or (retry_at is not None and now >= retry_at):
                    changed.note(whole=True)
                    last_whole, retry_at = now, None
                if not changed.due(settings.settle, settings.max_delay):
                    continue
                scope = changed.take()
            if scope is None:
                last_whole = time.monotonic()
            try:
                _log_report(sync(scope), log)
            except VitsearchError as e:
                log(f"watch: sync failed: {e}")
                changed.owe_whole()  # what it was to cover is synced by the next, whole
                retry_at = time.monotonic() + DEFAULT_POLL_SECONDS
            passes += 1
    finally:
        if watches is not None:
            watches.stop()
    return passes


class _Changes:
    """What the events named since the last sync (folders, subtrees, or the whole tree) and
    when: the first since that sync, and the latest."""

    def __init__(self):
        self._lock = threading.Lock()
        self.first: float | None = None
        self.last: float | None = None
        self._folders: set[str] = set()
        self._subtrees: set[str] = set()
        self._whole = False

    def note(self, folders=(), subtrees=(), whole: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self.first = self.first or now
            self.last = now
            self._folders.update(folders)
            self._subtrees.update(subtrees)
            self._whole = self._whole or whole

    def due(self, settle: float, max_delay: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if self.first is None:
                return False
            return now - self.last >= settle or now - self.first >= max_delay

    def owe_whole(self) -> None:
        """Make the next sync whole, whenever it comes (a sync failed: its scope is not lost)."""
        with self._lock:
            self._whole = True

    def take(self) -> Scope | None:
        """What to sync now (None: the whole tree), forgetting it: events from here on are the next sync's."""
        with self._lock:
            scope = None if self._whole else Scope.of(self._folders, self._subtrees)
            self.first = self.last = None
            self._folders, self._subtrees, self._whole = set(), set(), False
        return None if scope is None or len(scope) > MAX_SCOPE else scope


def _merged(first: IndexReport, second: IndexReport) -> IndexReport:
    """A targeted sync's report followed by the whole sync it led to, as one for the log."""
    second.changes = first.changes + second.changes
    second.failures = first.failures + second.failures
    second.record_notes = first.record_notes + second.record_notes
    second.records_read += first.records_read
    return second


def _log_report(report: IndexReport, log: Callable[[str], None]) -> None:
    for kind, path in report.changes:
        log(f"{kind} {path}")
    if report.records_read:
        log(f"records: read the XMP of {report.records_read} images again (sidecars changed)")
    for path, why in report.record_notes:
        log(f"XMP of {path}: {why}")
    for failure in report.failures:
        log(f"skipping {failure.path}: {failure.reason} ({failure.detail})")
