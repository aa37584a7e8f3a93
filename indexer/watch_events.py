"""What the OS says changed under the roots (indexer.watch decides when and what to sync from
it): watchdog's recursive watch of each root, without read events; the folders and subtrees each
event names; and what the watches lose (a root deleted or moved, events the OS dropped), each
logged and answered by a whole sync, a lost root watched again once it is back."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Protocol

from .scan import is_within

__all__ = ["RootWatches", "named", "DroppedEvents", "ROOT_CHECK_SECONDS"]

ROOT_CHECK_SECONDS = 5.0  # how often each root is stat'ed: a root moved away leaves its watch on the moved folder


class Changes(Protocol):
    def note(self, folders=(), subtrees=(), whole: bool = False) -> None: ...


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


class RootWatches:
    """The OS watches of the roots (watchdog, one recursive watch per root) and what they lose:
    a root deleted or moved, or events the OS dropped, each logged and answered by a whole sync
    (and the root's watch set up again once it is back)."""

    def __init__(self, observer, roots: list[str], changed: Changes, log: Callable[[str], None], handler):
        self.observer, self.roots, self.changed, self.log, self.handler = observer, roots, changed, log, handler
        self.watched: dict[str, tuple[object, tuple[int, int]]] = {}  # root -> (watch, (st_dev, st_ino))
        self.lost: set[str] = set()
        self.checked_at = time.monotonic()

    @classmethod
    def start(cls, roots: list[str], changed: Changes, log: Callable[[str], None],
              ignore: tuple[str, ...]) -> RootWatches | None:
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
        DroppedEvents.attach(changed, log)
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
        DroppedEvents.detach()
        self.observer.stop()
        self.observer.join(timeout=5)


class DroppedEvents(logging.Handler):
    """watchdog says that the OS dropped events (inotify's queue overflowed: IN_Q_OVERFLOW) or that
    it could not set watches up again only in its log: this hears it and asks for a whole sync."""

    _installed: DroppedEvents | None = None
    LOGGER = "watchdog.observers"

    def __init__(self, changed: Changes, log: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self.changed, self.log = changed, log

    @classmethod
    def attach(cls, changed: Changes, log: Callable[[str], None]) -> None:
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
