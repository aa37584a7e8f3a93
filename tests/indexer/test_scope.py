"""Targeted syncs (build_index's `only`, the watcher's): what a scope covers, how the plan keeps to
it, and random churn synced folder by folder ending as a whole sync does (fake encoder)."""

from __future__ import annotations

import logging
import os
import random
import time

import duckdb
import numpy as np

from tests.indexer.churn import Churn, seed_tree, small_photo
from vitsearch.indexer import build_index
from vitsearch.indexer.plan import _SETTLED_SQL, TRANSIENT_ERRORS, _settled, plan_sync
from vitsearch.indexer.scan import ScannedFile
from vitsearch.indexer.scope import Scope
from vitsearch.indexer.store.store import RowState, Store, encode_path
from vitsearch.indexer.watch import MAX_SCOPE, _Changes
from vitsearch.indexer.watch_events import DroppedEvents, named


def stored(store) -> dict[str, tuple]:
    with Store(store).connect() as con:
        found = con.execute("SELECT path, status, error, content_hash, embedding FROM images").fetchall()
    return {p: (s, e, h, None if v is None else np.asarray(v, np.float32)) for p, s, e, h, v in found}


def assert_same_store(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for path, (status, error, digest, vector) in want.items():
        assert got[path][:3] == (status, error, digest), path
        if vector is not None:
            assert float(got[path][3] @ vector) > 0.9999, path


def test_a_scope_is_minimal_and_covers_files_by_folder_or_subtree():
    scope = Scope.of(folders=["/r/a", "/r/b/c", "/r/a"], subtrees=["/r/b", "/r/b/x", "/r/d"])
    assert scope == Scope(folders=("/r/a",), subtrees=("/r/b", "/r/d"))
    assert scope.covers("/r/a/1.jpg") and not scope.covers("/r/a/sub/1.jpg")
    assert scope.covers("/r/b/c/deep/1.jpg") and scope.covers("/r/d/1.jpg") and not scope.covers("/r/dd/1.jpg")
    assert not scope.covers("/r/1.jpg")
    assert len(scope | Scope.of(folders=["/r"])) == 4 and not Scope()


def test_the_sql_of_a_scope_selects_the_rows_it_covers():
    odd = os.fsdecode(b"/r/caf\xe9")  # a folder whose name is not UTF-8
    paths = ["/r/a/1.jpg", "/r/a/sub/2.jpg", "/r/ab/3.jpg", "/r/b/4.jpg", "/r/b/deep/er/5.jpg", "/r/6.jpg",
             "/r/it's/7.jpg", "/r/100%_/8.jpg", odd + "/9.jpg", odd + "/x/10.jpg", os.fsdecode(b"/r/a/\xff.jpg")]
    keys = [encode_path(p)[0] for p in paths]
    con = duckdb.connect()
    con.execute("CREATE TABLE images (path VARCHAR)")
    con.executemany("INSERT INTO images VALUES (?)", [[k] for k in keys])
    for scope in [Scope.of(folders=["/r/a"]), Scope.of(subtrees=["/r/b"]), Scope.of(folders=["/r"]),
                  Scope.of(folders=["/r/it's", "/r/100%_"]), Scope.of(subtrees=[odd]), Scope.of(folders=[odd]),
                  Scope.of(folders=["/r/a"], subtrees=["/r/ab", "/r/b/deep"]), Scope()]:
        where, params = scope.sql()
        selected = {r[0] for r in con.execute(f"SELECT path FROM images WHERE {where}", params).fetchall()}
        assert selected == {k for k in keys if scope.covers(k)}, scope


def test_settled_is_spelled_alike_in_python_and_sql():
    con = duckdb.connect()
    for status in ("ok", "failed", "quarantined"):
        for error in [None, "unidentified", "truncated", *sorted(TRANSIENT_ERRORS)]:
            (in_sql,) = con.execute(f"SELECT {_SETTLED_SQL} FROM (SELECT ?::VARCHAR AS status, ?::VARCHAR AS error)",
                                    [status, error]).fetchone()
            assert in_sql == _settled(status, error), (status, error)


def test_the_plain_records_key_is_the_companions_one():
    from vitsearch.indexer.records import records_key
    from vitsearch.indexer.store.companions import records_key as companion_records_key

    for size, mtime in [(0, 0), (10, 5), (123_456_789, 1_700_000_000_123_456_789), (1, -1)]:
        assert records_key(ScannedFile("/r/a.jpg", "/r", size, mtime)) == companion_records_key(size, mtime, ())
    with_sidecar = ScannedFile("/r/a.jpg", "/r", 10, 5, companions=(("a.xmp", 3, 4),))
    assert records_key(with_sidecar) == companion_records_key(10, 5, with_sidecar.companions)


def test_the_plan_of_a_scope_removes_only_rows_it_covers():
    def row(i, path):
        return RowState(i, path, "/r", 10, 5, f"h{i}", "ok", None)

    rows = {r.path: r for r in [row(1, "/r/a/1.jpg"), row(2, "/r/a/gone.jpg"), row(3, "/r/a/sub/3.jpg"),
                                row(4, "/r/b/4.jpg"), row(5, "/r/c/d/5.jpg")]}
    scanned = [ScannedFile("/r/a/1.jpg", "/r", 10, 5)]
    plan = plan_sync(scanned, rows, ["/r"], scope=Scope.of(folders=["/r/a"], subtrees=["/r/c"]))
    assert plan.unchanged == 1 and not plan.to_read
    assert sorted(plan.missing) == [2, 5], "the folder's own file and the subtree's, not /r/a/sub or /r/b"


def test_targeted_syncs_after_random_churn_end_as_a_whole_sync(tmp_path, fake_encoder):
    """Creates, overwrites, renames and moves across folders, copies, deletes of files and folders,
    folders made, renamed and moved: each burst synced by the folders it names equals a fresh
    index, and a whole sync of the same store then finds nothing to do."""
    rng = random.Random(34)
    folder, store = tmp_path / "photos", tmp_path / "store"
    seed_tree(folder)
    build_index([folder], store, encoder=fake_encoder, batch_size=8)
    churn = Churn(folder, rng)
    for burst in range(30):
        folders, subtrees, done = [], [], []
        for _ in range(rng.randint(1, 4)):
            what, named_folders, named_subtrees = churn.step()
            done.append(what)
            folders += named_folders
            subtrees += named_subtrees
        build_index([folder], store, encoder=fake_encoder, batch_size=8, only=Scope.of(folders, subtrees))
        if burst % 10 == 9:
            fresh = tmp_path / f"fresh-{burst}"
            build_index([folder], fresh, encoder=fake_encoder, batch_size=8)
            assert_same_store(stored(store), stored(fresh))
    whole = build_index([folder], store, encoder=fake_encoder, batch_size=8)
    assert (whole.added, whole.updated, whole.moved, whole.removed, whole.failed) == (0, 0, 0, 0, 0), done


def test_a_moved_folder_keeps_its_rows_and_a_targeted_sync_sees_only_its_scope(tmp_path, fake_encoder):
    """A folder moved is followed by content hash (the same ids, nothing embedded again); a change
    outside the scope waits for a sync that covers it (the watcher's whole syncs: at start, after
    lost events, every FULL_RESCAN_SECONDS)."""
    folder, store = tmp_path / "photos", tmp_path / "store"
    seed_tree(folder)
    build_index([folder], store, encoder=fake_encoder, batch_size=8)
    ids = {os.path.basename(p): r for p, r in _ids(store).items() if "/album-0/" in p}
    calls = fake_encoder.calls
    (folder / "album-2").mkdir(exist_ok=True)
    (folder / "album-0").rename(folder / "album-2" / "moved")
    (folder / "s13.jpg").write_bytes(small_photo(99))  # not named below
    report = build_index([folder], store, encoder=fake_encoder, batch_size=8,
                         only=Scope.of(subtrees=[folder / "album-0", folder / "album-2" / "moved"]))
    assert fake_encoder.calls == calls and report.moved == len(ids) > 0
    assert {os.path.basename(p): r for p, r in _ids(store).items() if "/moved/" in p} == ids
    assert report.updated == 0, "s13.jpg lies outside the scope"
    assert build_index([folder], store, encoder=fake_encoder, batch_size=8).updated == 1


def test_a_scope_under_a_hidden_or_excluded_folder_finds_what_a_whole_scan_finds(tmp_path, fake_encoder):
    folder, store = tmp_path / "photos", tmp_path / "store"
    seed_tree(folder)
    build_index([folder], store, encoder=fake_encoder, batch_size=8, exclude=["raw"])
    for hidden in (folder / ".cache", folder / "album-0" / "raw"):
        hidden.mkdir()
        (hidden / "x.jpg").write_bytes(small_photo(50))
    links: list[str] = []
    os.symlink(folder / "album-0", folder / "album-2" / "link")
    report = build_index([folder], store, encoder=fake_encoder, batch_size=8, exclude=["raw"], links=links,
                         only=Scope.of(subtrees=[folder / ".cache", folder / "album-0" / "raw"],
                                       folders=[folder / "album-2"]))
    assert report.added == 0 and links == [str(folder / "album-2" / "link")]


def _ids(store) -> dict[str, int]:
    with Store(store).connect() as con:
        return dict(con.execute("SELECT path, id FROM images").fetchall())


def test_events_name_a_files_folder_or_a_folders_subtree():
    from watchdog.events import (
        DirAttribEvent,
        DirCreatedEvent,
        DirDeletedEvent,
        DirModifiedEvent,
        DirMovedEvent,
        FileClosedEvent,
        FileCreatedEvent,
        FileDeletedEvent,
        FileMovedEvent,
    )

    assert named(FileCreatedEvent("/r/a/1.jpg")) == (["/r/a"], [])
    assert named(FileClosedEvent("/r/a/1.jpg")) == (["/r/a"], [])
    assert named(FileDeletedEvent("/r/a/1.jpg")) == (["/r/a"], [])
    assert named(FileMovedEvent("/r/a/1.jpg", "/r/b/2.jpg")) == (["/r/a", "/r/b"], [])
    assert named(DirModifiedEvent("/r/a")) == (["/r/a"], [])
    assert named(DirCreatedEvent("/r/new")) == ([], ["/r/new"])
    assert named(DirDeletedEvent("/r/old")) == ([], ["/r/old"])
    assert named(DirAttribEvent("/r/locked")) == ([], ["/r/locked"])
    assert named(DirMovedEvent("/r/a", "/r/b/a")) == ([], ["/r/a", "/r/b/a"])


def test_too_many_folders_or_dropped_events_make_a_whole_sync():
    changed = _Changes()
    changed.note(["/r/a"], ["/r/b"])
    assert changed.take() == Scope.of(["/r/a"], ["/r/b"]) and changed.first is None
    changed.note([f"/r/{n}" for n in range(MAX_SCOPE + 1)])
    assert changed.take() is None
    said = []
    DroppedEvents.attach(changed, said.append)
    try:
        changed.note(["/r/a"])
        logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; events were lost")
        assert changed.take() is None and "dropped events" in said[0]
    finally:
        DroppedEvents.detach()


def follow(root, sync, full_rescan: float = 3600):
    """watch_folders on a thread (settle 0.3 s): (stop, thread)."""
    import threading

    from vitsearch.indexer.watch import WatchSettings, watch_folders

    stop = threading.Event()
    settings = WatchSettings(settle=0.3, full_rescan=full_rescan)
    thread = threading.Thread(target=watch_folders, args=([str(root)], sync, stop, settings, lambda _: None))
    thread.start()
    time.sleep(0.5)
    return stop, thread


def test_the_watch_loop_syncs_what_events_name_and_the_whole_tree_on_its_period(tmp_path):
    from vitsearch.indexer.report import IndexReport

    (tmp_path / "a").mkdir()
    calls: list[Scope | None] = []
    stop, thread = follow(tmp_path, lambda s: calls.append(s) or IndexReport())
    try:
        (tmp_path / "a" / "1.jpg").write_bytes(b"x")
        wait_for(lambda: calls)
        assert calls == [Scope.of(folders=[tmp_path / "a"])]
        (tmp_path / "new").mkdir()
        (tmp_path / "new" / "2.jpg").write_bytes(b"x")
        wait_for(lambda: len(calls) == 2)
        assert calls[1] == Scope.of(folders=[tmp_path], subtrees=[tmp_path / "new"]), "and the listing it joined"
    finally:
        stop.set()
        thread.join()
    calls.clear()
    stop, thread = follow(tmp_path, lambda s: calls.append(s) or IndexReport(), full_rescan=0.5)
    try:
        wait_for(lambda: len(calls) >= 2)
        assert calls[:2] == [None, None], "idle, the tree is still synced whole every period"
    finally:
        stop.set()
        thread.join()


def test_after_a_failed_sync_the_next_is_whole(tmp_path):
    from vitsearch.indexer.errors import StoreInUseError
    from vitsearch.indexer.report import IndexReport

    calls: list[Scope | None] = []

    def sync(scope):
        calls.append(scope)
        if len(calls) == 1:
            raise StoreInUseError("the store is busy", pid=1)
        return IndexReport()

    stop, thread = follow(tmp_path, sync)
    try:
        (tmp_path / "1.jpg").write_bytes(b"x")
        wait_for(lambda: calls)
        (tmp_path / "2.jpg").write_bytes(b"x")
        wait_for(lambda: len(calls) == 2)
        assert calls == [Scope.of(folders=[tmp_path]), None], "the failed sync's change is not lost"
    finally:
        stop.set()
        thread.join()


def wait_for(condition, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_change_made_during_the_first_whole_sync_is_synced_after_it(tmp_path):
    """The watches are set before the start's whole sync: what changes while it runs (it may
    embed for hours) is an event, not a change left for the 6-hour rescan."""
    import threading

    from vitsearch.indexer.report import IndexReport
    from vitsearch.indexer.watch import WatchSettings, watch_folders

    (tmp_path / "a").mkdir()
    calls: list[Scope | None] = []

    def first_sync():
        calls.append("first")
        (tmp_path / "a" / "late.jpg").write_bytes(b"x")  # written after the scan, before the sync ends

    stop = threading.Event()
    thread = threading.Thread(target=watch_folders, args=([str(tmp_path)], lambda s: calls.append(s) or IndexReport(),
                                                         stop, WatchSettings(settle=0.3), lambda _: None),
                              kwargs={"first": first_sync})
    thread.start()
    try:
        wait_for(lambda: len(calls) == 2)
        assert calls == ["first", Scope.of(folders=[tmp_path / "a"])]
    finally:
        stop.set()
        thread.join()
