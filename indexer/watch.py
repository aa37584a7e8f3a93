"""Keep a store in step with live folders: after the first sync, each burst of file-system
changes under the roots is followed, once it has settled, by a sync of what the events named.

A sync is `build_index` itself (same crash-safe transactions, size+mtime skips, renames
followed by content hash); the watcher decides *when* to sync and *where*: the folders and
subtrees its events named (a file's folder; a folder created, deleted, moved or changed in its
permissions: all under it), which build_index's `only` (indexer.scope) syncs as a whole sync
would. Events come from the OS (inotify on Linux: one watch per folder, not per file) through
watchdog. The whole tree is synced instead at start, after the OS dropped events (a queue
overflow) or lost a watch (a root deleted or moved), every FULL_RESCAN_SECONDS, and while the
tree holds symlinks the scan follows (a change then shows under two names, the event names one).
When the OS cannot watch the tree (watch limit, network filesystem) or `poll` is asked for, the
roots are rescanned whole every `poll` seconds instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .build import build_index, load_store_encoder, save_deferred
from .errors import VitsearchError
from .report import IndexReport
from .scan import is_within, normalize_roots
from .scope import Scope
from .store.vectors import DeferredSaves

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
ROOT_CHECK_SECONDS = 5.0  # how often each root is stat'ed: a root moved away leaves its watch on the moved folder


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
               log: Callable[[str], None] = print) -> int:
        """Sync after each settled change until `stop` is set (see watch_folders), then write the
        FAISS index kept in memory; returns the passes. A KeyboardInterrupt skips that write: the
        change log has it all."""
        if self.store is None:
            self.sync()
        if self.links:
            log(f"watch: the folders hold symlinks the scan follows ({self.links[0]}...): each sync rescans "
                "the whole tree")
        passes = watch_folders(self.roots, lambda scope: self.sync(only=scope), stop, settings, log=log,
                               ignore=(self.store,))
        save_deferred(self.store_dir, self._deferred)
        return passes


def watch_folders(roots: list[str], sync: Callable[[Scope | None], IndexReport], stop: threading.Event,
                  settings: WatchSettings | None = None, log: Callable[[str], None] = print,
                  ignore: tuple[str, ...] = ()) -> int:
    """Run `sync(scope)` whenever the roots changed and settled, until `stop` is set; returns
    passes. `scope` is what the events named, None for the whole tree (see the module). Events
    under `ignore` (the store's own folder) are not changes. A sync that fails (a root deleted,
    the store busy) is logged, and the tree is synced whole at the next change or after
    DEFAULT_POLL_SECONDS."""
    settings = settings or WatchSettings()
    changed = _Changes()
    watches = None if settings.poll else _Watches.start(roots, changed, log, ignore)
    if watches is None:
        interval = settings.poll or DEFAULT_POLL_SECONDS
        log(f"watch: rescanning every {interval:g} s")
    passes, last_whole, retry_at = 0, time.monotonic(), None
    try:
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


def named(event) -> tuple[list[str], list[str]]:
    """(folders, subtrees) an event says changed: a file's folder; a folder's own listing when
    it was modified (an entry added or removed); everything under a folder created, deleted,
    moved, or changed in its permissions."""
    paths = [os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
    if not event.is_directory:
        return [os.path.dirname(p) for p in paths], []
    if event.event_type == "modified":
        return paths, []
    return [], paths


class _Watches:
    """The OS watches of the roots (watchdog, one recursive watch per root) and what they lose:
    a root deleted or moved, or events the OS dropped, each logged and answered by a whole sync
    (and the root's watch set up again once it is back)."""

    def __init__(self, observer, roots: list[str], changed: _Changes, log: Callable[[str], None], handler):
        self.observer, self.roots, self.changed, self.log, self.handler = observer, roots, changed, log, handler
        self.watched: dict[str, tuple[object, tuple[int, int]]] = {}  # root -> (watch, (st_dev, st_ino))
        self.lost: set[str] = set()
        self.checked_at = time.monotonic()

    @classmethod
    def start(cls, roots: list[str], changed: _Changes, log: Callable[[str], None],
              ignore: tuple[str, ...]) -> _Watches | None:
        """Watches of every root, or None (with the reason logged) when the OS cannot give them."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            log("watch: watchdog is not installed; falling back to rescanning")
            return None

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                folders, subtrees = named(event)
                if all(any(is_within(p, folder) for folder in ignore) for p in folders + subtrees):
                    return
                if event.is_directory and event.event_type == "deleted" and os.fsdecode(event.src_path) in roots:
                    return  # the root itself: check() says it is lost
                changed.note(folders, subtrees)

        folders, allowed = _folders_under(roots), _watch_limit()
        if allowed is not None and folders >= allowed:
            # watchdog skips sub-folders it cannot watch without saying so: check the budget first
            log(f"watch: the OS cannot watch these folders ({folders} folders need {folders} watches, the limit is "
                f"{allowed}); falling back to rescanning. On Linux, raise fs.inotify.max_user_watches, or pass "
                "--poll SECONDS")
            return None
        watches = cls(Observer(), roots, changed, log, Handler())
        try:
            for root in roots:
                watches._watch(root)
            watches.observer.start()
        except OSError as e:  # ENOSPC: the inotify watch limit; others: a filesystem without events
            log(f"watch: the OS cannot watch these folders ({e.strerror or e}); falling back to rescanning. "
                "On Linux, raise fs.inotify.max_user_watches, or pass --poll SECONDS")
            try:
                watches.observer.stop()
            except RuntimeError:
                pass
            return None
        _DroppedEvents.attach(changed, log)
        return watches

    def _watch(self, root: str) -> None:
        st = os.stat(root)
        watch = self.observer.schedule(self.handler, root, recursive=True, event_filter=_change_events())
        self.watched[root] = (watch, (st.st_dev, st.st_ino))

    def check(self) -> None:
        """Notice a lost watch (its emitter ended: the root was deleted) at once, a root moved or
        replaced within ROOT_CHECK_SECONDS, and watch a lost root again once it is back."""
        dead = {e.watch.path for e in self.observer.emitters if not e.is_alive()}
        now = time.monotonic()
        if not dead and now - self.checked_at < ROOT_CHECK_SECONDS:
            return
        self.checked_at = now
        for root, (watch, identity) in list(self.watched.items()):
            if watch.path in dead or _identity(root) != identity:
                self.log(f"watch: lost the watch of {root} (deleted or moved); rescanning")
                self.observer.unschedule(watch)
                del self.watched[root]
                self.lost.add(root)
                self.changed.note(whole=True)
        for root in sorted(self.lost):
            if _identity(root) is not None:
                try:
                    self._watch(root)
                except OSError:
                    continue
                self.lost.discard(root)
                self.log(f"watch: watching {root} again; rescanning")
                self.changed.note(whole=True)

    def stop(self) -> None:
        _DroppedEvents.detach()
        self.observer.stop()
        self.observer.join(timeout=5)


class _DroppedEvents(logging.Handler):
    """watchdog says that the OS dropped events (inotify's queue overflowed: IN_Q_OVERFLOW) or that
    it could not set watches up again only in its log: this hears it and asks for a whole sync."""

    _installed: _DroppedEvents | None = None
    LOGGER = "watchdog.observers"

    def __init__(self, changed: _Changes, log: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self.changed, self.log = changed, log

    @classmethod
    def attach(cls, changed: _Changes, log: Callable[[str], None]) -> None:
        cls.detach()
        cls._installed = cls(changed, log)
        logging.getLogger(cls.LOGGER).addHandler(cls._installed)

    @classmethod
    def detach(cls) -> None:
        if cls._installed is not None:
            logging.getLogger(cls.LOGGER).removeHandler(cls._installed)
            cls._installed = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "overflow" in message.lower() or record.levelno >= logging.ERROR:
            self.log(f"watch: the OS dropped events ({message}); rescanning")
            self.changed.note(whole=True)


def _change_events() -> list[type]:
    """The events that say something changed. Reads are left out of the OS watches (inotify's
    IN_OPEN, IN_ACCESS, IN_CLOSE_NOWRITE), so that a sync reading files, or anyone listing the
    folders, costs the watcher nothing: with them, at 10k folders, the walk watchdog makes to set
    its watches queued more events than inotify holds (16,384), and each recovery from that
    overflow walked the tree again: a loop at 1.5 cores (measured with tests/bench/watch_scale.py)."""
    from watchdog import events as e

    return [e.FileCreatedEvent, e.DirCreatedEvent, e.FileDeletedEvent, e.DirDeletedEvent, e.FileMovedEvent,
            e.DirMovedEvent, e.FileModifiedEvent, e.DirModifiedEvent, e.FileClosedEvent, e.FileAttribEvent,
            e.DirAttribEvent]


def _identity(root: str) -> tuple[int, int] | None:
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(root) else None


def _merged(first: IndexReport, second: IndexReport) -> IndexReport:
    """A targeted sync's report followed by the whole sync it led to, as one for the log."""
    second.changes = first.changes + second.changes
    second.failures = first.failures + second.failures
    second.record_notes = first.record_notes + second.record_notes
    second.records_read += first.records_read
    return second


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
